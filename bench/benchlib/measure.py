"""The measurements: saturation with h2load, latency with `trellis load`.

Load generators run on the client core; the proxy's CPU time and memory are
read from /proc around and during each run.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .procs import BenchError, RssSampler, core_busy, core_times, pinned, run_tool
from .targets import CLIENT_CORE, PROXY_CORE, Size, Target

SATURATION_CONNECTIONS = 50
PERCENTILES = ("p50", "p90", "p99", "p999", "max")


@dataclass
class Scenario:
    """One latency measurement: an open-loop rate, or rate 0 = closed loop.
    proxy_core, when set, moves the proxy to that core for the measurement."""
    key: str
    label: str
    rate: int
    connections: int
    proxy_core: int | None = None


@dataclass
class SaturationRun:
    requests: int
    succeeded: int
    failed: int
    elapsed_s: float
    rps: float
    cpu_us_per_req: float | None  # None for direct
    proxy_core_busy: float | None  # CPU time ÷ elapsed: below 1, the proxy was not the limit
    rss_max_kib: int | None
    # How busy each core was, whoever used it: shows what limited req/s, and
    # whether something outside the benchmark was running.
    proxy_core_total_busy: float = 0.0
    client_core_busy: float = 0.0
    foreign_cores: float = 0.0  # other work on the machine during the run

    def as_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ h2load

_FINISHED = re.compile(r"finished in ([\d.]+)(us|ms|s)")
_REQUESTS = re.compile(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored")
_STATUS = re.compile(r"status codes: (\d+) 2xx")
_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def _h2load(url: str, requests: int, connections: int, streams: int | None = None) -> tuple[dict, str]:
    """`streams`: HTTP/2 (h2c) with that many requests in flight per connection; None: HTTP/1.1."""
    protocol = ["--h1"] if streams is None else ["-m", str(streams)]
    argv = pinned(CLIENT_CORE, ["h2load", *protocol, "-c", str(connections), "-n", str(requests),
                                "-t", "1", url])
    result = run_tool(argv, timeout=600)
    out = result.stdout
    finished, counts, status = _FINISHED.search(out), _REQUESTS.search(out), _STATUS.search(out)
    if result.returncode != 0 or not (finished and counts and status):
        raise BenchError(f"h2load against {url} failed (exit {result.returncode}):\n"
                         f"{out[-2000:]}{result.stderr[-2000:]}")
    succeeded_2xx = int(status.group(1))
    parsed = {
        "elapsed_s": float(finished.group(1)) * _UNIT[finished.group(2)],
        "requests": int(counts.group(1)),
        "succeeded": succeeded_2xx,
        "failed": int(counts.group(1)) - succeeded_2xx,
    }
    return parsed, out


def warm_up(target: Target, size: Size, requests: int, connections: int, streams: int | None = None) -> None:
    """A few thousand requests first, so every run meets warm caches and open pools."""
    if requests <= 0:
        return
    parsed, out = _h2load(target.url(size), max(requests, connections), connections, streams)
    if parsed["failed"]:
        raise BenchError(f"{target.label}: {parsed['failed']} requests failed during warm-up\n"
                         f"{out[-1500:]}")


def saturate(target: Target, size: Size, requests: int, connections: int = SATURATION_CONNECTIONS,
             streams: int | None = None) -> SaturationRun:
    """A fixed number of keep-alive requests as fast as the connections go
    (HTTP/2 with `streams` each, when given): req/s, the proxy's CPU time per
    request and its largest RSS while it ran."""
    url = target.url(size)
    cores_before = core_times()
    if target.service is None:
        parsed, _ = _h2load(url, requests, connections, streams)
        run = SaturationRun(**parsed, rps=parsed["requests"] / parsed["elapsed_s"],
                            cpu_us_per_req=None, proxy_core_busy=None, rss_max_kib=None)
    else:
        cpu_before = target.service.cpu_us()
        with RssSampler(target.service) as rss:
            parsed, _ = _h2load(url, requests, connections, streams)
        cpu_used = target.service.cpu_us() - cpu_before
        run = SaturationRun(**parsed, rps=parsed["requests"] / parsed["elapsed_s"],
                            cpu_us_per_req=cpu_used / parsed["requests"],
                            proxy_core_busy=cpu_used / (parsed["elapsed_s"] * 1e6),
                            rss_max_kib=rss.max_kib)
    busy = core_busy(cores_before, core_times())
    run.proxy_core_total_busy = busy.get(PROXY_CORE, 0.0)
    run.client_core_busy = busy.get(CLIENT_CORE, 0.0)
    return run


# ------------------------------------------------------------ trellis load

def _duration_arg(seconds: float) -> str:
    if seconds >= 1 and float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def latency(trellis: Path, target: Target, size: Size, scenario: Scenario,
            duration_s: float) -> dict:
    """The JSON report of one `trellis load` run, with a `failed` count added
    (transport errors plus answers other than 2xx)."""
    argv = pinned(CLIENT_CORE, [str(trellis), "load", target.url(size),
                                "--rate", str(scenario.rate),
                                "--duration", _duration_arg(duration_s),
                                "--connections", str(scenario.connections), "--json"])
    result = run_tool(argv, timeout=duration_s + 120)
    try:
        report = json.loads(result.stdout)
        report["requests"]["completed"], report["latency_us"]["p50"]
    except (ValueError, KeyError, TypeError):
        raise BenchError(f"trellis load against {target.label} gave no JSON report "
                         f"(exit {result.returncode}):\n{result.stdout[-1500:]}"
                         f"{result.stderr[-1500:]}") from None
    report["failed"] = _failed_requests(report)
    return report


def _failed_requests(report: dict) -> int:
    requests = report.get("requests", {})
    failed = int(requests.get("errors", 0))
    for status, count in report.get("status", {}).items():
        if not str(status).startswith("2"):
            failed += int(count)
    if int(requests.get("completed", 0)) == 0:
        failed = max(failed, 1)
    return failed
