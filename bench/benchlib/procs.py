"""Processes the benchmark starts, and what /proc says about them.

Every process runs in its own process group (its own session), so one
killpg stops it together with any children it forked (nginx's worker), and
the group's members are exactly "the proxy's processes" when CPU time and
memory are summed.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

LOCALHOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Listening ports come from below the kernel's ephemeral range, so the many
# outgoing connections of a run (which take ephemeral source ports) never take
# one of them.
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()


class BenchError(Exception):
    """A failure that ends the run with a message for the user."""


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now (checked by binding it)."""
    for _ in range(500):
        port = random.randrange(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind((LOCALHOST, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise BenchError("no free port found on 127.0.0.1")


def port_accepts(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def pinned(core: int, argv: list[str]) -> list[str]:
    """argv run on one CPU core (taskset execs it: the pid stays the same)."""
    return ["taskset", "-c", str(core), *argv]


class Workspace:
    """A temporary directory and every process started in it.

    close() kills every process group and removes the directory; it is safe
    to call more than once and runs on any way out of the benchmark.
    """

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="trellis-bench-"))
        self._procs: list[subprocess.Popen] = []

    def subdir(self, name: str) -> Path:
        path = self.dir / name
        (path / "tmp").mkdir(parents=True, exist_ok=True)
        return path

    def start(self, name: str, argv: list[str], cwd: Path) -> "Service":
        out = open(cwd / f"{name}.out", "wb")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, cwd=cwd,
                                    start_new_session=True)
        finally:
            out.close()
        self._procs.append(proc)
        return Service(name, proc, cwd / f"{name}.out")

    def close(self) -> None:
        for proc in reversed(self._procs):
            kill_group(proc)
        self._procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


class Service:
    """One started process group; its leader is `pid`."""

    def __init__(self, name: str, proc: subprocess.Popen, log: Path):
        self.name = name
        self.proc = proc
        self.log = log

    @property
    def pid(self) -> int:
        return self.proc.pid

    def running(self) -> bool:
        return self.proc.poll() is None

    def output(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_listening(self, port: int, timeout: float = 10) -> None:
        if not wait_until(lambda: not self.running() or port_accepts(port), timeout):
            raise BenchError(f"{self.name} did not listen on port {port} within {timeout:.0f} s\n"
                             f"{self.output()}")
        if not self.running():
            raise BenchError(f"{self.name} exited with status {self.proc.returncode}\n"
                             f"{self.output()}")

    def wait_processes(self, count: int, timeout: float = 10) -> None:
        if not wait_until(lambda: len(self.pids()) >= count, timeout):
            raise BenchError(f"{self.name} did not start its {count} processes\n{self.output()}")

    def pin(self, cores: set[int]) -> None:
        """Moves every thread of every process of the group to these cores."""
        for pid in self.pids():
            for tid in os.listdir(f"/proc/{pid}/task"):
                try:
                    os.sched_setaffinity(int(tid), cores)
                except (ProcessLookupError, PermissionError):
                    pass

    @contextlib.contextmanager
    def moved_to(self, core: int | None) -> Iterator[None]:
        """The group runs on `core` inside the block, then back where it was."""
        if core is None:
            yield
            return
        home = os.sched_getaffinity(self.pid)
        self.pin({core})
        try:
            yield
        finally:
            self.pin(home)

    def pids(self) -> list[int]:
        """The live processes of the group: the leader and whatever it forked."""
        return group_members(self.pid)

    def cpu_us(self) -> float:
        """utime + stime of all the group's processes, in microseconds."""
        ticks = sum(_stat_fields(pid, (14, 15)) for pid in self.pids())
        return ticks * 1e6 / CLOCK_TICKS

    def rss_kib(self, pids: list[int] | None = None) -> int:
        """VmRSS summed over the group's processes (nginx: master and worker).
        Given `pids` (an earlier pids()), reads only those: no walk of /proc."""
        return sum(_status_kib(pid, "VmRSS") for pid in (self.pids() if pids is None else pids))

    def rss_by_process(self) -> list[dict]:
        """Each process of the group with its VmRSS, to see what the sum is made of."""
        return [{"pid": pid, "name": _status_text(pid, "Name"), "rss_kib": _status_kib(pid, "VmRSS")}
                for pid in self.pids()]


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_after_comm(int(entry))
        except OSError:
            continue
        # Fields after "(comm)": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


def _stat_after_comm(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    # comm may contain spaces and parentheses; it ends at the last ')'.
    return text[text.rindex(")") + 2:].split()


def _stat_fields(pid: int, numbers: tuple[int, ...]) -> int:
    """Sum of /proc/PID/stat fields given by their 1-based number in proc(5)."""
    try:
        fields = _stat_after_comm(pid)
    except OSError:
        return 0
    return sum(int(fields[n - 3]) for n in numbers)


def _status_text(pid: int, key: str) -> str:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _status_kib(pid: int, key: str) -> int:
    value = _status_text(pid, key).split()
    return int(value[0]) if value else 0


def core_times() -> dict[int, tuple[int, int]]:
    """Per CPU core: (busy, total) jiffies since boot, from /proc/stat."""
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            v = [int(x) for x in values]
            idle = v[3] + v[4]  # idle + iowait
            times[int(name[3:])] = (sum(v) - idle, sum(v))
    return times


def core_busy(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> dict[int, float]:
    """Fraction of the time each core was busy between two core_times()."""
    busy = {}
    for core, (b1, t1) in after.items():
        b0, t0 = before.get(core, (0, 0))
        busy[core] = (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
    return busy


class RssSampler:
    """Samples a service's RSS in the background and keeps the maximum."""

    def __init__(self, service: Service, interval: float = 0.05):
        self._service = service
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.max_kib = 0

    def _run(self) -> None:
        while True:
            self.max_kib = max(self.max_kib, self._service.rss_kib())
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.max_kib = max(self.max_kib, self._service.rss_kib())


def run_tool(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    """Runs a client to completion; its output is returned, not shown."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"{' '.join(argv)} did not finish within {timeout:.0f} s") from e
