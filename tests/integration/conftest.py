"""Fixtures shared by the integration tests; the pieces themselves are in harness.py."""

import pytest

from harness import Fleet, simple_config


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


@pytest.fixture
def nginx(fleet):
    """One nginx upstream (see harness.Nginx for its locations)."""
    return fleet.nginx()


@pytest.fixture
def proxy(fleet, nginx):
    """Listener "web": everything to cluster "web" = nginx."""
    return fleet.proxy(simple_config(nginx))
