"""Fixtures shared by the integration tests; the pieces themselves are in harness.py."""

import pytest

from harness import Fleet


def _fleet():
    fleet = Fleet()
    try:
        yield fleet
    finally:
        fleet.close()


@pytest.fixture
def fleet():
    """Upstreams and proxies for one test, all stopped and removed afterwards."""
    yield from _fleet()


@pytest.fixture(scope="module")
def module_fleet():
    """Like `fleet`, shared by the tests of one file."""
    yield from _fleet()
