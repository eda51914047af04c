"""Other work on the machine: waiting for it to pass before a measurement, and
telling how much of it ran during one, so that a disturbed run can be
measured again instead of being reported."""

from __future__ import annotations

import resource
import time
from typing import Callable, TypeVar

from .procs import CLOCK_TICKS, Service, core_busy, core_times
from .targets import CLIENT_CORE, PROXY_CORE

BENCH_CORES = (PROXY_CORE, CLIENT_CORE)
QUIET_BUSY = 0.10      # a core this busy with nothing of ours running is not quiet
FOREIGN_LIMIT = 0.15   # cores' worth of other work during a run that makes it disturbed

T = TypeVar("T")


def busy_now(seconds: float = 0.5) -> dict[int, float]:
    """How busy each of the benchmark's cores is over the next `seconds`."""
    before = core_times()
    time.sleep(seconds)
    busy = core_busy(before, core_times())
    return {c: round(busy.get(c, 0.0), 3) for c in BENCH_CORES}


def wait_for_quiet(max_wait_s: float) -> float:
    """Waits (up to max_wait_s) until the cores are idle while everything of
    ours is idle too; returns how long it waited."""
    if max_wait_s <= 0:
        return 0.0
    start = time.monotonic()
    while max(busy_now().values()) > QUIET_BUSY and time.monotonic() - start < max_wait_s:
        time.sleep(1.0)
    return time.monotonic() - start


class CpuWatch:
    """Across a block: the CPU time the benchmark's cores spent on anything
    but the benchmark's own processes (the services, the load generator that
    ran and was waited for, and this harness), in cores."""

    def __init__(self, services: list[Service]):
        self._services = services
        self.foreign_cores = 0.0

    def _own_us(self) -> float:
        own = sum(s.cpu_us() for s in self._services)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            own += (usage.ru_utime + usage.ru_stime) * 1e6
        return own

    def __enter__(self) -> "CpuWatch":
        self._cores, self._own, self._start = core_times(), self._own_us(), time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        wall_us = (time.monotonic() - self._start) * 1e6
        after = core_times()
        busy_us = sum(after[c][0] - self._cores[c][0] for c in BENCH_CORES) * 1e6 / CLOCK_TICKS
        own_us = self._own_us() - self._own
        self.foreign_cores = max(0.0, (busy_us - own_us) / wall_us) if wall_us > 0 else 0.0


class Patience:
    """How much time a whole run may spend waiting for quiet and measuring
    again; once spent, measurements run once, disturbed or not."""

    def __init__(self, attempts: int, quiet_wait_s: float, budget_s: float):
        self.attempts = attempts
        self.quiet_wait_s = quiet_wait_s
        self.left_s = budget_s

    def undisturbed(self, measure: Callable[[], T], services: list[Service],
                    on_retry: Callable[[float], None]) -> tuple[T, float]:
        """Runs `measure` on quiet cores; while other work disturbed it, runs
        it again (up to `attempts` in all). Returns the last result and the
        other work it saw, in cores."""
        attempt = 0
        while True:
            attempt += 1
            self.left_s -= wait_for_quiet(min(self.quiet_wait_s, max(self.left_s, 0)))
            start = time.monotonic()
            with CpuWatch(services) as watch:
                result = measure()
            if (watch.foreign_cores <= FOREIGN_LIMIT or attempt >= self.attempts
                    or self.left_s <= 0):
                return result, watch.foreign_cores
            self.left_s -= time.monotonic() - start
            on_retry(watch.foreign_cores)
