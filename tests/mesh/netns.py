"""Hosts made of network namespaces, for the mesh tests.

A Network is one private /24 (10.203.X.0/24, X at random) joined by a bridge
that lives in its own "switch" namespace; each Host is a namespace with
loopback and one veth (eth0) plugged into that bridge. Nothing here touches
the root namespace's interfaces, routes or firewall: links are created inside
the switch namespace with their far end moved straight into the host's.

Processes run inside a host through `ip netns exec` (which execs, so the pid
we hold is the process itself and can be stopped or killed as such). The test
itself stays in the root namespace and talks to a host's loopback with a
socket made inside that host's namespace (setns(2) in a short-lived thread:
a socket belongs to the namespace it was created in), so polling an admin
endpoint costs no process.

Network.close() kills every process started in the network, SIGCONT first
for stopped ones, then whatever else is left in its namespaces, and deletes
the namespaces: a failed test leaves nothing behind.
"""

from __future__ import annotations

import ctypes
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

from harness import Service, tail

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/var/run/netns")
TOOLS = ("ip", "iptables", "nginx")


def _run(argv: list, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, timeout=timeout, text=True)


def _must(argv: list, timeout: float = 10) -> str:
    result = _run(argv, timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({result.returncode}): "
                           f"{result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def namespaces_unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed"
    if os.geteuid() != 0:
        return "not root: making network namespaces needs CAP_NET_ADMIN"
    probe = f"trellis-{secrets.token_hex(3)}-probe"
    made = _run(["ip", "netns", "add", probe])
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip()}"
    try:
        for argv in (["ip", "-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1"],
                     ["ip", "netns", "exec", probe, "iptables", "-L", "-n"]):
            r = _run(argv)
            if r.returncode != 0:
                return f"`{' '.join(argv)}` failed: {r.stderr.strip()}"
    finally:
        _run(["ip", "netns", "del", probe])
    return None


# ------------------------------------------------------------ sockets in a namespace

_libc = ctypes.CDLL(None, use_errno=True)


def socket_in(ns: str, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A socket of network namespace `ns`, made by a thread that joined it."""
    out: dict = {}

    def make() -> None:
        try:
            fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({ns}): {os.strerror(err)}")
                out["sock"] = socket.socket(family, kind)
            finally:
                os.close(fd)
        except BaseException as e:  # handed to the caller
            out["error"] = e

    t = threading.Thread(target=make, name=f"setns-{ns}")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["sock"]


class NetnsHTTPConnection(http.client.HTTPConnection):
    """http.client connection whose socket lives in a given namespace."""

    def __init__(self, ns: str, host: str, port: int, timeout: float = 5, tls: ssl.SSLContext | None = None):
        super().__init__(host, port, timeout=timeout)
        self.ns = ns
        self.tls = tls

    def connect(self) -> None:
        sock = socket_in(self.ns)
        sock.settimeout(self.timeout)
        try:
            sock.connect((self.host, self.port))
        except OSError:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host) if self.tls else sock


# ---------------------------------------------------------------------- hosts


class Host:
    """One namespace on the network: `ip` on eth0, and loopback."""

    def __init__(self, network: "Network", name: str, ns: str, ip: str):
        self.network = network
        self.name = name
        self.ns = ns
        self.ip = ip
        self.dir = network.dir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cut_off = False

    def argv(self, argv: list) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *[str(a) for a in argv]]

    def spawn(self, name: str, argv: list, workdir: Path | None = None) -> Service:
        """A long-running process on this host, killed by Network.close()."""
        service = Service(name, self.argv(argv), workdir or self.dir)
        self.network.services.append(service)
        return service.start()

    def run(self, argv: list, timeout: float = 30) -> subprocess.CompletedProcess:
        return _run(self.argv(argv), timeout)

    def http(self, method: str, host: str, port: int, path: str, body=None,
             headers: dict | None = None, timeout: float = 5,
             tls: ssl.SSLContext | None = None) -> tuple[int, bytes]:
        """(status, body) of one request made from this host (over TLS with
        `tls`); (0, b"") when no answer came."""
        conn = NetnsHTTPConnection(self.ns, host, port, timeout, tls)
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        hdrs = dict(headers or {})
        if isinstance(body, (dict, list)):
            hdrs.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return resp.status, resp.read()
        except (OSError, http.client.HTTPException):
            return 0, b""
        finally:
            conn.close()

    # -- faults on the host's link, made inside its own namespace

    def cut(self) -> None:
        """Drops everything in and out of eth0 (loopback keeps working)."""
        for rule in (["INPUT", "-i", "eth0"], ["OUTPUT", "-o", "eth0"]):
            _must(self.argv(["iptables", "-w", "-I", rule[0], *rule[1:], "-j", "DROP"]))
        self.cut_off = True

    def reconnect(self) -> None:
        if not self.cut_off:
            return
        for rule in (["INPUT", "-i", "eth0"], ["OUTPUT", "-o", "eth0"]):
            _run(self.argv(["iptables", "-w", "-D", rule[0], *rule[1:], "-j", "DROP"]))
        self.cut_off = False


class Network:
    """A switch namespace with a bridge, and hosts plugged into it."""

    def __init__(self, workdir: Path, host_names: list[str]):
        self.dir = workdir
        self.tag = f"trellis-{secrets.token_hex(3)}"
        self.subnet = f"10.203.{random.randrange(256)}"
        self.switch = f"{self.tag}-switch"
        self.hosts: dict[str, Host] = {}
        self.services: list[Service] = []
        self.namespaces: list[str] = []
        try:
            self._add_ns(self.switch)
            _must(["ip", "-n", self.switch, "link", "add", "br0", "type", "bridge"])
            _must(["ip", "-n", self.switch, "link", "set", "br0", "up"])
            for i, name in enumerate(host_names):
                self._add_host(name, f"{self.subnet}.{i + 1}", f"p{i}")
        except BaseException:
            self.close()
            raise

    def _add_ns(self, ns: str) -> None:
        _must(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        _must(["ip", "-n", ns, "link", "set", "lo", "up"])

    def _add_host(self, name: str, ip: str, port_name: str) -> None:
        ns = f"{self.tag}-{name}"
        self._add_ns(ns)
        # Both ends are made in the switch namespace, one moved at once into
        # the host's: no interface ever appears in the root namespace.
        _must(["ip", "-n", self.switch, "link", "add", port_name, "type", "veth",
               "peer", "name", "eth0", "netns", ns])
        _must(["ip", "-n", self.switch, "link", "set", port_name, "master", "br0", "up"])
        _must(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
        _must(["ip", "-n", ns, "link", "set", "eth0", "up"])
        self.hosts[name] = Host(self, name, ns, ip)

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def logs(self, lines: int = 25) -> str:
        """The tail of every process's output, for a failure report."""
        parts = []
        for s in self.services:
            out = (s.stdout() + s.stderr()).strip()
            state = "running" if s.running() else f"exited {s.returncode}"
            parts.append(f"--- {s.workdir.name}/{s.name} ({state}) {s.stderr_path}\n{tail(out, lines) if out else '(no output)'}")
        return "\n".join(parts)

    def close(self) -> None:
        for s in reversed(self.services):
            if s.proc is not None and s.proc.poll() is None:
                try:
                    os.killpg(s.proc.pid, signal.SIGCONT)  # a frozen process dies as well, but let it run first
                except (ProcessLookupError, PermissionError):
                    pass
            s.kill()
        # Anything else still inside our namespaces was started by us too.
        for ns in self.namespaces:
            pids = _run(["ip", "netns", "pids", ns]).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for ns in reversed(self.namespaces):
            for _ in range(20):
                if _run(["ip", "netns", "del", ns]).returncode == 0:
                    break
                time.sleep(0.1)
        self.namespaces.clear()
