"""Fixtures of the mesh tests: a fresh network of namespaces per test, torn
down whatever happens; its logs are kept and shown when a test fails. The
figures of every load run are printed at the end of the session."""

import shutil
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "integration")]

from mesh import FIGURES, HOSTS  # noqa: E402
from netns import Network, namespaces_unavailable  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)
    net = item.funcargs.get("network") if hasattr(item, "funcargs") else None
    if report.failed and net is not None:
        report.sections.append(("mesh processes", f"namespaces {net.tag}-*, subnet {net.subnet}.0/24, "
                                                  f"files in {net.dir} (kept)\n{net.logs()}"))


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("mesh load figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def can_make_namespaces():
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(f"mesh tests need network namespaces: {reason}")


@pytest.fixture
def network(request, can_make_namespaces):
    """control, client, up1..up3 on one bridge; everything in it is killed and
    its namespaces deleted afterwards. Logs stay in the temp dir on failure."""
    workdir = Path(tempfile.mkdtemp(prefix="trellis-mesh-"))
    net = Network(workdir, HOSTS)
    try:
        yield net
    finally:
        failed = any(getattr(request.node, f"rep_{when}", None) is not None
                     and getattr(request.node, f"rep_{when}").failed for when in ("setup", "call"))
        net.close()
        if not failed:
            shutil.rmtree(workdir, ignore_errors=True)
