"""The shared upstream and the four targets measured in front of it.

A target is where the load generator sends its requests: straight to the
upstream ("direct"), or through one proxy. Configs are the templates in
bench/peers/, filled with this run's ports and directories.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .procs import LOCALHOST, BenchError, Service, Workspace, free_port, pinned

PEERS_DIR = Path(__file__).resolve().parents[1] / "peers"

# Cores: every proxy on one, the upstream and the load generators on the other.
PROXY_CORE = 0
CLIENT_CORE = 1


def _body_1k() -> bytes:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    lines = [(f"{i:02d} " + alphabet)[:63] + "\n" for i in range(16)]
    return "".join(lines).encode()


@dataclass(frozen=True)
class Size:
    key: str
    label: str
    path: str
    body: bytes


SIZES = {
    "12b": Size("12b", "12 B", "/12b", b"hello world\n"),
    "1k": Size("1k", "1 KiB", "/1k", _body_1k()),
}
assert len(SIZES["1k"].body) == 1024

IDLE_SETTLE_S = 0.5

TARGET_KEYS = ("direct", "haproxy", "nginx", "trellis")
PROXY_KEYS = ("haproxy", "nginx", "trellis")
PEER_KEYS = ("haproxy", "nginx")


def target_labels(versions: dict[str, str]) -> dict[str, str]:
    """Column labels, with the peers' versions as major.minor."""
    def short(v: str) -> str:
        return ".".join(v.split(".")[:2])
    return {"direct": "direct", "haproxy": f"HAProxy {short(versions['haproxy'])}",
            "nginx": f"nginx {short(versions['nginx'])}", "trellis": "Trellis"}


def fill_template(name: str, values: dict[str, object]) -> str:
    """bench/peers/NAME with every {{key}} replaced; a key left unfilled is an error."""
    text = (PEERS_DIR / name).read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", str(value))
    leftover = re.findall(r"\{\{(\w+)\}\}", text)
    if leftover:
        raise BenchError(f"peers/{name}: no value for {', '.join(sorted(set(leftover)))}")
    return text


def _nginx_quoted(body: bytes) -> str:
    """A body as the inside of an nginx double-quoted string."""
    text = body.decode()
    if re.search(r'["\\$]', text.replace("\n", "")):
        raise ValueError("body must not need escaping beyond newlines")
    return text.replace("\n", "\\n")


def start_nginx(ws: Workspace, name: str, template: str, values: dict,
                core: int) -> tuple[Service, int]:
    """nginx from peers/TEMPLATE on a free port, pinned to `core`."""
    home = ws.subdir(name)
    port = free_port()
    conf = home / "nginx.conf"
    conf.write_text(fill_template(template, {"dir": home, "port": port, **values}))
    argv = ["nginx", "-p", str(home), "-c", str(conf), "-e", str(home / "error.log")]
    service = ws.start(name, pinned(core, argv), home)
    service.wait_listening(port)
    # The master listens before it forks its worker.
    service.wait_processes(2)
    return service, port


def start_haproxy(ws: Workspace, name: str, template: str, values: dict,
                  core: int) -> tuple[Service, int]:
    """HAProxy from peers/TEMPLATE on a free port, pinned to `core`."""
    home = ws.subdir(name)
    port = free_port()
    conf = home / "haproxy.cfg"
    conf.write_text(fill_template(template, {"dir": home, "port": port, **values}))
    # -db: stay in the foreground as one process (no master).
    service = ws.start(name, pinned(core, ["haproxy", "-db", "-f", str(conf)]), home)
    service.wait_listening(port)
    return service, port


def start_trellis(ws: Workspace, name: str, template: str, values: dict, binaries: dict,
                  core: int) -> tuple[Service, int]:
    """trellis-proxy with one worker from peers/TEMPLATE on a free port, pinned to `core`."""
    home = ws.subdir(name)
    port = free_port()
    conf = home / "trellis.yaml"
    conf.write_text(fill_template(template, {"port": port, "admin_port": free_port(), **values}))
    argv = [str(binaries["trellis-proxy"]), "--config", str(conf), "--workers", "1",
            "--log-level", "warn"]
    service = ws.start(name, pinned(core, argv), home)
    service.wait_listening(port)
    return service, port


def start_upstream(ws: Workspace) -> tuple[Service, int]:
    bodies = {f"body_{key}": _nginx_quoted(size.body) for key, size in SIZES.items()}
    return start_nginx(ws, "upstream", "upstream.conf", bodies, CLIENT_CORE)


def _start_haproxy(ws: Workspace, upstream_port: int, binaries: dict, h2: bool) -> tuple[Service, int]:
    # HTTP/2 from clients: h2c with prior knowledge on the same port.
    return start_haproxy(ws, "haproxy", "haproxy.cfg",
                         {"upstream_port": upstream_port, "bind_options": " proto h2" if h2 else ""},
                         PROXY_CORE)


def _start_nginx_proxy(ws: Workspace, upstream_port: int, binaries: dict, h2: bool) -> tuple[Service, int]:
    return start_nginx(ws, "nginx-proxy", "nginx-proxy.conf",
                       {"upstream_port": upstream_port, "listen_options": " http2" if h2 else ""}, PROXY_CORE)


def _start_trellis(ws: Workspace, upstream_port: int, binaries: dict, h2: bool) -> tuple[Service, int]:
    # An http listener serves HTTP/1.1 and h2c alike.
    return start_trellis(ws, "trellis-proxy", "trellis.yaml", {"upstream_port": upstream_port},
                         binaries, PROXY_CORE)


_STARTERS = {
    "haproxy": _start_haproxy,
    "nginx": _start_nginx_proxy,
    "trellis": _start_trellis,
}


@dataclass
class Target:
    key: str
    label: str
    port: int
    service: Service | None  # None for direct: there is no proxy to measure
    rss_idle_kib: int | None = None
    rss_idle_processes: list[dict] | None = None

    def url(self, size: Size) -> str:
        return f"http://{LOCALHOST}:{self.port}{size.path}"


def start_target(ws: Workspace, key: str, label: str, upstream_port: int,
                 binaries: dict, h2: bool = False) -> Target:
    """`h2`: the proxy serves its clients h2c (prior knowledge) instead of HTTP/1.1."""
    if key == "direct":
        return Target(key, label, upstream_port, None)
    service, port = _STARTERS[key](ws, upstream_port, binaries, h2)
    # Idle memory: after start has settled, before any request went through.
    time.sleep(IDLE_SETTLE_S)
    return Target(key, label, port, service, rss_idle_kib=service.rss_kib(),
                  rss_idle_processes=service.rss_by_process())


def verify(target: Target, size: Size, h2: bool = False) -> None:
    """The target answers 200 with exactly the expected body (checked with curl)."""
    argv = ["curl", "-sS", "--noproxy", "*", "--max-time", "5", "-o", "-",
            *(["--http2-prior-knowledge"] if h2 else []),
            "-w", "\n%{http_code}", target.url(size)]
    result = subprocess.run(argv, capture_output=True, timeout=15)
    body, _, status = result.stdout.rpartition(b"\n")
    if result.returncode != 0 or status != b"200" or body != size.body:
        detail = result.stderr.decode(errors="replace").strip() or \
            f"status {status.decode(errors='replace')}, {len(body)}-byte body"
        log = f"\n{target.service.output()}" if target.service else ""
        raise BenchError(f"{target.label} does not serve {size.path} as expected: {detail}{log}")
