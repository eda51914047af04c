"""Building blocks for the Trellis integration tests.

Everything a test starts lives in a Fleet: a temporary directory plus the
processes, sockets and threads started in it (nginx, websocketd, scripted raw
upstreams, the proxy itself). Closing the fleet stops all of them and removes
the directory. Everything binds to 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import urllib.error
import urllib.request
import os
import random
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIR = Path(os.environ.get("TRELLIS_SOURCE_DIR") or REPO_ROOT)
BIN_DIR = Path(os.environ.get("TRELLIS_BIN_DIR") or REPO_ROOT / "build" / "src")
# Set by scripts/sanitize.sh: the binaries run under ASan or TSan, whose
# allocators hold freed memory (quarantine, shadow): RSS then says nothing
# about what the proxy buffers, and memory bounds are not checked.
SANITIZED = os.environ.get("TRELLIS_SANITIZE", "")
PROXY_BIN = BIN_DIR / "trellis-proxy"
CONTROL_BIN = BIN_DIR / "trellis-control"

LOCALHOST = "127.0.0.1"
MiB = 1024 * 1024


# ---------------------------------------------------------------- small utilities


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05):
    """Calls `predicate` until it returns something truthy or `timeout` passes.
    Returns the last value, so a test can assert on it and show it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 * MiB):
            digest.update(block)
    return digest.hexdigest()


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- ports

# Listening ports are picked below the kernel's ephemeral range so that outgoing
# connections (which take ephemeral source ports) never collide with them, and
# never handed out twice in one test session.
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    for _ in range(200):
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
    raise RuntimeError("no free port found")


def bind_listener(backlog: int = 128) -> socket.socket:
    """A listening socket on a fresh port (retries on bind conflicts)."""
    for _ in range(20):
        s = socket.socket()
        try:
            s.bind((LOCALHOST, free_port()))
        except OSError:
            s.close()
            continue
        s.listen(backlog)
        return s
    raise RuntimeError("could not bind a listening socket")


def port_accepts(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=timeout):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------------ processes


class Service:
    """A child process in its own process group, output captured to files."""

    def __init__(self, name: str, argv: list[str], workdir: Path):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.workdir = workdir
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Service":
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=self.workdir, start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        if self.running():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if still running after `timeout`."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """Stops the whole process group for good."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""


def run(argv: list[str], timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], capture_output=True, timeout=timeout, **kwargs)


def curl(*args, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """curl with no proxy from the environment, silent but showing errors."""
    return run(["curl", "-sS", "--noproxy", "*", *args], timeout=timeout, **kwargs)


# ----------------------------------------------------------- HTTP/1.1 wire format


class Incomplete(Exception):
    """The bytes ended before the message did."""


class ProtocolError(Exception):
    """The bytes are not a well-formed HTTP/1.1 message."""


class Stream:
    """A byte buffer read from the front; `fill` supplies more bytes (b"" at end)."""

    def __init__(self, data: bytes = b"", fill: Callable[[], bytes] | None = None):
        self.buf = bytearray(data)
        self.pos = 0
        self.fill = fill

    def _more(self) -> None:
        chunk = self.fill() if self.fill else b""
        if not chunk:
            raise Incomplete(bytes(self.buf[self.pos:]))
        if self.pos > 1 << 20:
            del self.buf[:self.pos]
            self.pos = 0
        self.buf += chunk

    def pending(self) -> bytes:
        return bytes(self.buf[self.pos:])

    def read_line(self, limit: int = 1 << 20) -> bytes:
        """One line without its CRLF; a bare LF is not a line end."""
        while True:
            i = self.buf.find(b"\r\n", self.pos)
            if i >= 0:
                line = bytes(self.buf[self.pos:i])
                self.pos = i + 2
                return line
            if len(self.buf) - self.pos > limit:
                raise ProtocolError("line too long")
            self._more()

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) - self.pos < n:
            self._more()
        data = bytes(self.buf[self.pos:self.pos + n])
        self.pos += n
        return data

    def read_to_end(self) -> bytes:
        while True:
            try:
                self._more()
            except Incomplete:
                data = bytes(self.buf[self.pos:])
                self.pos = len(self.buf)
                return data


Headers = list[tuple[str, str]]


def _find(headers: Headers, name: str) -> list[str]:
    name = name.lower()
    return [v for n, v in headers if n.lower() == name]


@dataclass
class Message:
    start_line: str
    headers: Headers
    body: bytes = b""
    trailers: Headers = field(default_factory=list)
    raw_head: bytes = b""

    def header(self, name: str) -> str | None:
        """The first value of a field (any case), or None."""
        values = _find(self.headers, name)
        return values[0] if values else None

    def header_values(self, name: str) -> list[str]:
        return _find(self.headers, name)

    def trailer(self, name: str) -> str | None:
        values = _find(self.trailers, name)
        return values[0] if values else None

    def names(self) -> set[str]:
        return {n.lower() for n, _ in self.headers}


@dataclass
class Request(Message):
    method: str = ""
    target: str = ""
    version: str = ""
    chunked: bool = False


@dataclass
class Response(Message):
    version: str = ""
    status: int = 0
    reason: str = ""

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def __str__(self) -> str:
        body = self.body if len(self.body) < 300 else self.body[:300] + b"..."
        return f"{self.status} {self.reason} headers={self.headers} body={body!r}"


def read_head(stream: Stream) -> tuple[str, Headers, bytes]:
    start = stream.pos
    first = stream.read_line()
    headers: Headers = []
    while True:
        line = stream.read_line()
        if not line:
            break
        name, sep, value = line.partition(b":")
        if not sep or not name:
            raise ProtocolError(f"bad header line {line!r}")
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    raw = bytes(stream.buf[start:stream.pos])
    return first.decode("latin-1"), headers, raw


_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(r"[0-9]{1,18}")


def read_chunked(stream: Stream) -> tuple[bytes, Headers]:
    body = bytearray()
    while True:
        line = stream.read_line()
        size_text = line.split(b";", 1)[0]
        if not _HEX.fullmatch(size_text):
            raise ProtocolError(f"bad chunk size line {line!r}")
        size = int(size_text, 16)
        if size == 0:
            break
        body += stream.read_exact(size)
        if stream.read_line() != b"":
            raise ProtocolError("chunk data not followed by CRLF")
    trailers: Headers = []
    while line := stream.read_line():
        name, _, value = line.partition(b":")
        trailers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return bytes(body), trailers


def _framing(headers: Headers) -> tuple[bool, int | None]:
    """(chunked, content_length) of a message head."""
    te = _find(headers, "transfer-encoding")
    if te:
        return te[-1].split(",")[-1].strip().lower() == "chunked", None
    cl = _find(headers, "content-length")
    if cl:
        if len(set(cl)) != 1 or not _DIGITS.fullmatch(cl[0]):
            raise ProtocolError(f"bad Content-Length {cl}")
        return False, int(cl[0])
    return False, None


def read_request(stream: Stream, on_head: Callable[[Request], None] | None = None) -> Request:
    """Reads one whole request (head, body, trailers) from `stream`."""
    start, headers, raw = read_head(stream)
    parts = start.split(" ")
    if len(parts) != 3:
        raise ProtocolError(f"bad request line {start!r}")
    req = Request(start_line=start, headers=headers, raw_head=raw,
                  method=parts[0], target=parts[1], version=parts[2])
    if on_head:
        on_head(req)
    req.chunked, length = _framing(headers)
    if req.chunked:
        req.body, req.trailers = read_chunked(stream)
    elif length:
        req.body = stream.read_exact(length)
    return req


def read_response(stream: Stream, method: str = "GET") -> Response:
    """Reads one response; 1xx responses are returned as they are (no body)."""
    start, headers, raw = read_head(stream)
    parts = start.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ProtocolError(f"bad status line {start!r}")
    resp = Response(start_line=start, headers=headers, raw_head=raw, version=parts[0],
                    status=int(parts[1]), reason=parts[2] if len(parts) > 2 else "")
    if resp.status < 200 or resp.status in (204, 304) or method == "HEAD":
        return resp
    chunked, length = _framing(headers)
    if chunked:
        resp.body, resp.trailers = read_chunked(stream)
    elif length is not None:
        resp.body = stream.read_exact(length)
    else:
        resp.body = stream.read_to_end()
    return resp


def parse_requests(data: bytes) -> tuple[list[Request], bytes]:
    """Splits a byte stream into whole requests; returns them and what is left
    over (an incomplete or unparseable tail)."""
    stream = Stream(data)
    requests = []
    while stream.pos < len(stream.buf):
        mark = stream.pos
        try:
            requests.append(read_request(stream))
        except (Incomplete, ProtocolError):
            return requests, bytes(stream.buf[mark:])
    return requests, b""


def build_request(method: str = "GET", target: str = "/", headers: Iterable[tuple[str, str]] = (),
                  body: bytes | None = None, host: str | None = "localhost",
                  version: str = "HTTP/1.1") -> bytes:
    """A request with Host first; a bytes body gets a Content-Length unless the
    headers already frame it."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    headers = list(headers)
    names = {n.lower() for n, _ in headers}
    lines += [f"{n}: {v}" for n, v in headers]
    if body is not None and not names & {"content-length", "transfer-encoding"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def chunked_body(chunks: Iterable[bytes], trailers: Iterable[tuple[str, str]] = ()) -> bytes:
    out = bytearray()
    for chunk in chunks:
        if chunk:
            out += b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    out += b"0\r\n"
    for name, value in trailers:
        out += f"{name}: {value}\r\n".encode("latin-1")
    return bytes(out + b"\r\n")


def http_response(status: int = 200, body: bytes = b"ok", headers: Iterable[tuple[str, str]] = (),
                  reason: str = "OK") -> bytes:
    head = [f"HTTP/1.1 {status} {reason}", *(f"{n}: {v}" for n, v in headers),
            f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def chunked_response(chunks: Iterable[bytes], trailers: Iterable[tuple[str, str]] = (),
                     status: int = 200, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    head = [f"HTTP/1.1 {status} OK", *(f"{n}: {v}" for n, v in headers),
            "Transfer-Encoding: chunked"]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + chunked_body(chunks, trailers)


# ------------------------------------------------------------------- HTTP client


class HttpClient:
    """A raw HTTP/1.1 client connection: send any bytes, read whole responses."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((LOCALHOST, port), timeout=timeout)
        self.timeout = timeout
        self.stream = Stream(fill=self._recv)

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(256 * 1024)
        except ConnectionResetError:
            return b""  # for these tests a reset is a close

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_response(self, method: str = "GET", interim: bool = False,
                      timeout: float | None = None) -> Response:
        """The next response, skipping 1xx unless `interim`. Raises Incomplete if
        the connection closes first."""
        self.sock.settimeout(timeout or self.timeout)
        while True:
            resp = read_response(self.stream, method)
            if interim or resp.status >= 200 or resp.status == 101:
                return resp

    def try_read_response(self, method: str = "GET", timeout: float | None = None) -> Response | None:
        """The next response, or None if the connection closed (or was reset) first."""
        try:
            return self.read_response(method, timeout=timeout)
        except Incomplete:
            return None

    def request(self, method: str = "GET", target: str = "/", headers=(), body: bytes | None = None,
                host: str | None = "localhost", version: str = "HTTP/1.1") -> Response:
        self.send(build_request(method, target, headers, body, host, version))
        return self.read_response(method)

    def wait_closed(self, timeout: float = 5.0) -> bytes | None:
        """Reads until the peer closes; returns what arrived meanwhile (b"" for a
        clean close), or None if the connection is still open after `timeout`."""
        extra = self.stream.pending()
        self.stream.pos = len(self.stream.buf)
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                data = self._recv()
                if not data:
                    return extra
                extra += data
        except (socket.timeout, TimeoutError):
            pass
        return None

    def is_open(self, wait: float = 0.2) -> bool:
        """False once the peer has closed or reset the connection."""
        if self.stream.pending():
            return True
        readable, _, _ = select.select([self.sock], [], [], wait)
        if not readable:
            return True
        try:
            return self.sock.recv(1, socket.MSG_PEEK) != b""
        except OSError:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "HttpClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def get(port: int, target: str = "/", headers=(), host: str = "localhost",
        method: str = "GET", body: bytes | None = None, timeout: float = 10.0) -> Response:
    """One request on a fresh connection."""
    with HttpClient(port, timeout) as client:
        return client.request(method, target, headers, body, host)


def call(port: int, path: str = "/", method: str = "GET", host: str = "localhost",
         headers: dict | None = None, timeout: float = 5) -> tuple[int, bytes]:
    """(status, body) of one request on a fresh connection; (0, b"") when no
    answer came (refused, reset, closed)."""
    try:
        conn = http.client.HTTPConnection(LOCALHOST, port, timeout=timeout)
        conn.request(method, path, headers={"Host": host, **(headers or {})})
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        return resp.status, body
    except (OSError, http.client.HTTPException):
        return 0, b""


def plain_http_answer(port: int, host: str = LOCALHOST) -> bytes:
    """The first bytes a server answers a plain-text HTTP request with (b""
    when it closes or resets): what a TLS-only listener gives a client
    without TLS."""
    with socket.create_connection((host, port), timeout=5) as plain:
        plain.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        plain.settimeout(5)
        try:
            return plain.recv(100)
        except OSError:
            return b""


def write_private_file(path: Path, text: str) -> Path:
    """Creates `path` readable by its owner only (0600) from its first moment."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def self_signed_certificate(directory: Path, name: str, dns: str | None = None) -> tuple[str, str]:
    """(certificate, key) files of a self-signed P-256 certificate with CN
    `name` and the DNS name `dns` (default: `name`); the key is mode 0600."""
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    result = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}",
                             "-addext", f"subjectAltName=DNS:{dns or name}"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    os.chmod(key, 0o600)
    return str(cert), str(key)


class Pki:
    """A CA made with the openssl command line, and certificates from it."""

    def __init__(self, directory: Path, name: str = "root"):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = self.dir / f"{name}.key"
        self.cert = self.dir / f"{name}.crt"
        self._openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", self.key)
        self._openssl("req", "-x509", "-new", "-key", self.key, "-out", self.cert, "-days", "30", "-subj",
                      f"/O=test/CN={name}", "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        (self.dir / "index.txt").write_text("")
        (self.dir / "serial").write_text("1000\n")
        self.ca_conf = self.dir / "ca.cnf"
        self.ca_conf.write_text(
            "[ca]\ndefault_ca = c\n[c]\n"
            f"database = {self.dir}/index.txt\nserial = {self.dir}/serial\nnew_certs_dir = {self.dir}\n"
            "default_md = sha256\npolicy = p\nunique_subject = no\ncopy_extensions = none\n"
            "[p]\n[leaf]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n"
            "extendedKeyUsage = serverAuth,clientAuth\nsubjectAltName = critical,@sans\n[sans]\nURI.1 = $ENV::SAN\n")

    def _openssl(self, *args, env=None):
        result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, env=env, timeout=30)
        assert result.returncode == 0, f"openssl {args[0]}: {result.stderr}"

    def issue(self, name: str, identity: str, start: str | None = None, end: str | None = None) -> dict:
        """Key (0600), certificate and bundle files for `identity`."""
        key, csr, cert = self.dir / f"{name}.key", self.dir / f"{name}.csr", self.dir / f"{name}.crt"
        self._openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
        os.chmod(key, 0o600)
        self._openssl("req", "-new", "-key", key, "-out", csr, "-subj", "/O=test")
        dates = ["-startdate", start, "-enddate", end] if start else ["-days", "2"]
        self._openssl("ca", "-batch", "-config", self.ca_conf, "-extensions", "leaf", "-in", csr, "-out", cert,
                      "-cert", self.cert, "-keyfile", self.key, "-notext", *dates,
                      env={**os.environ, "SAN": identity})
        return {"certificate_chain": str(cert), "private_key": str(key), "trust_bundle": str(self.cert)}


def mesh_config(**mtls) -> dict:
    """A MeshConfig resource with these mtls fields (mode, certificateLifetime, ...)."""
    return {"apiVersion": "trellis.dev/v1alpha1", "kind": "MeshConfig", "metadata": {"name": "default"},
            "spec": {"mtls": mtls}}


# --------------------------------------------------------------- raw upstreams


class Peer:
    """One connection accepted by a RawUpstream; records every byte it receives."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.received = bytearray()
        self.eof = threading.Event()
        self.finished = threading.Event()

    def recv(self, n: int = 256 * 1024) -> bytes:
        try:
            data = self.sock.recv(n)
        except OSError:
            data = b""
        if data:
            self.received += data
        else:
            self.eof.set()
        return data

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def read_until_eof(self) -> bytes:
        while self.recv():
            pass
        return bytes(self.received)


Handler = Callable[[Peer], None]


class RawUpstream:
    """A scripted TCP server on 127.0.0.1: each connection is handed to `handler`
    in its own thread, and everything received is kept for the test to inspect."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.listener = bind_listener()
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.address = f"{LOCALHOST}:{self.port}"
        self.peers: list[Peer] = []
        self._marks: dict[int, int] = {}  # id(peer) -> bytes received before the last reset
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError:
                return
            sock.settimeout(None)
            peer = Peer(sock)
            with self._lock:
                self.peers.append(peer)
            threading.Thread(target=self._serve, args=(peer,), daemon=True).start()

    def _serve(self, peer: Peer) -> None:
        try:
            self.handler(peer)
        except (OSError, Incomplete, ProtocolError):
            pass
        finally:
            peer.finished.set()
            try:
                peer.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            peer.sock.close()

    def _since_reset(self) -> list[bytes]:
        with self._lock:
            return [bytes(p.received[self._marks.get(id(p), 0):]) for p in self.peers]

    def connections(self) -> int:
        """Connections accepted since the last reset."""
        with self._lock:
            return sum(1 for p in self.peers if id(p) not in self._marks)

    def received(self) -> bytes:
        """Every byte received since the last reset, connection after connection."""
        return b"".join(self._since_reset())

    def requests(self) -> list[Request]:
        """The whole requests received since the last reset, over all connections."""
        return [r for data in self._since_reset() for r in parse_requests(data)[0]]

    def reset(self) -> None:
        """Forgets what was received so far (connections stay open)."""
        with self._lock:
            self._marks = {id(p): len(p.received) for p in self.peers}

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(5)
        with self._lock:
            peers = list(self.peers)
        for peer in peers:
            try:
                peer.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# Connection handlers for RawUpstream.

def echo(peer: Peer) -> None:
    while data := peer.recv():
        if not peer.send(data):
            return


def silent(peer: Peer) -> None:
    """Reads everything, never answers."""
    peer.read_until_eof()


def reply_after_eof(peer: Peer) -> None:
    """Reads until the client half-closes, then says how much it got."""
    n = len(peer.read_until_eof())
    peer.send(b"got %d bytes\n" % n)


def blast(total: int, block: int = MiB) -> Handler:
    """Sends `total` bytes as fast as the socket takes them, then closes."""
    payload = bytes(range(256)) * (block // 256)

    def handler(peer: Peer) -> None:
        left = total
        while left > 0:
            n = min(left, len(payload))
            if not peer.send(payload[:n]):
                return
            left -= n
    return handler


def http_responder(respond: bytes | Callable[[Request], bytes | None] = http_response(),
                   close: bool = False) -> Handler:
    """Answers each request with `respond` (bytes, or a function of the request;
    None means never answer). Sends 100 Continue when asked to. `close`: close
    the connection after the first answer."""

    def handler(peer: Peer) -> None:
        stream = Stream(fill=peer.recv)

        def on_head(req: Request) -> None:
            if (req.header("expect") or "").lower() == "100-continue":
                peer.send(b"HTTP/1.1 100 Continue\r\n\r\n")

        while True:
            req = read_request(stream, on_head)
            answer = respond(req) if callable(respond) else respond
            if answer is None:
                peer.read_until_eof()
                return
            if not peer.send(answer) or close:
                return
    return handler


class Blackhole:
    """A listening socket whose accept queue is full, so that new connection
    attempts to it hang (their SYNs are dropped) instead of being refused."""

    def __init__(self):
        self.listener = bind_listener(backlog=0)
        self.port = self.listener.getsockname()[1]
        self.address = f"{LOCALHOST}:{self.port}"
        self.fillers: list[socket.socket] = []
        for _ in range(16):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((LOCALHOST, self.port))
            self.fillers.append(s)
            _, writable, _ = select.select([], [s], [], 0.3)
            if not writable:
                return
        raise RuntimeError("could not fill the accept queue")

    def close(self) -> None:
        for s in self.fillers:
            s.close()
        self.listener.close()


# ------------------------------------------------------------------------- nginx

_NGINX_CONF = r"""
master_process off;
worker_processes 1;
pid @DIR@/nginx.pid;
error_log @DIR@/error.log warn;
events { worker_connections 4096; }
http {
  default_type text/plain;
  log_format trellis '$server_port $connection $connection_requests "$request" $status';
  access_log @DIR@/access.log trellis;
  client_body_temp_path @DIR@/tmp/body;
  proxy_temp_path @DIR@/tmp/proxy;
  fastcgi_temp_path @DIR@/tmp/fastcgi;
  uwsgi_temp_path @DIR@/tmp/uwsgi;
  scgi_temp_path @DIR@/tmp/scgi;
  client_max_body_size 0;
  keepalive_requests 100000;
  keepalive_timeout 120s;
  sendfile on;
  server {
@LISTEN@
    root @DIR@/www;
    location = /hello { return 200 "hello world\n"; }
    location = /port { return 200 "$server_port\n"; }
    location = /echo-headers {
      return 200 "xff=$http_x_forwarded_for\nrid=$http_x_request_id\nconn=$http_connection\nka=$http_keep_alive\nte=$http_te\nup=$http_upgrade\npc=$http_proxy_connection\nsecret=$http_x_secret\nhost=$http_host\nport=$server_port\nuri=$request_uri\nproto=$server_protocol\n";
    }
    location /dav/ {
      root @DIR@;
      dav_methods PUT DELETE;
      create_full_put_path on;
    }
    location = /big { alias @DIR@/www/big.bin; }
    # The same file written in 32 KiB pieces, as most applications do.
    location = /big-buffered { sendfile off; output_buffers 1 32k; alias @DIR@/www/big.bin; }
    location = /slow { limit_rate 300k; alias @DIR@/www/slow.bin; }
    location = /slower { limit_rate 16k; alias @DIR@/www/slow.bin; }
    location = /trailers {
      # The sub filter drops Content-Length, so the response goes out chunked
      # and nginx can append the trailer.
      sub_filter_types *;
      sub_filter 'no-such-text' 'no-such-text';
      add_trailer X-Checksum "abc123" always;
      return 200 "trailer body\n";
    }
    location / { return 200 "port=$server_port\nuri=$request_uri\n"; }
  }
}
"""


class Nginx:
    """nginx as an upstream, listening on `nports` ports of 127.0.0.1.

    /hello -> "hello world\\n"; /port -> the port that answered; /echo-headers ->
    request headers of interest; /dav/... -> PUT storage under dav_dir, GET serves
    it; /big -> 8 MiB random file (big_sha256), /big-buffered the same in 32 KiB
    writes; /slow -> 1 MB at 300 KB/s; /slower
    -> the same at 16 KB/s; /trailers -> chunked response with an X-Checksum
    trailer; anything else -> "port=P\\nuri=U\\n".

    With http2, every port speaks HTTP/2 with prior knowledge (h2c) only,
    and a connection serves at most `max_requests` requests before GOAWAY.
    With tls (certificate and key files), every port speaks TLS, offering
    "h2" by ALPN when http2 is set."""

    BIG_SIZE = 8 * MiB
    SLOW_SIZE = 1_000_000
    PROBE = "/hello?startup-probe"  # left out of access_log()

    def __init__(self, workdir: Path, nports: int = 1, http2: bool = False, max_requests: int = 100000,
                 tls: tuple[str, str] | None = None):
        self.dir = workdir
        self.nports = nports
        self.http2 = http2
        self.tls = tls
        self.max_requests = max_requests
        self.dav_dir = workdir / "dav"
        www = workdir / "www"
        for d in (www, self.dav_dir, workdir / "tmp"):
            d.mkdir(parents=True, exist_ok=True)
        big = os.urandom(self.BIG_SIZE)
        (www / "big.bin").write_bytes(big)
        self.big_sha256 = hashlib.sha256(big).hexdigest()
        self.slow_body = os.urandom(self.SLOW_SIZE)
        (www / "slow.bin").write_bytes(self.slow_body)
        self.ports: list[int] = []
        self.service: Service | None = None

    @property
    def port(self) -> int:
        return self.ports[0]

    def address(self, i: int = 0) -> str:
        return f"{LOCALHOST}:{self.ports[i]}"

    def start(self) -> "Nginx":
        for attempt in range(3):
            self.ports = [free_port() for _ in range(self.nports)]
            mode = (" ssl" if self.tls else "") + (" http2" if self.http2 else "")
            listen = "\n".join(f"    listen {LOCALHOST}:{p}{mode};" for p in self.ports)
            if self.tls:
                listen += f"\n    ssl_certificate {self.tls[0]};\n    ssl_certificate_key {self.tls[1]};"
            conf = (_NGINX_CONF.replace("@LISTEN@", listen).replace("@DIR@", str(self.dir))
                    .replace("keepalive_requests 100000;", f"keepalive_requests {self.max_requests};"))
            (self.dir / "nginx.conf").write_text(conf)
            self.service = Service("nginx", ["nginx", "-p", self.dir, "-c", self.dir / "nginx.conf",
                                             "-g", "daemon off;"], self.dir).start()
            if wait_until(self._answers, 10) and self.service.running():
                return self
            self.service.kill()
            log = self.log()
            if "in use" not in log or attempt == 2:
                raise RuntimeError(f"nginx did not start:\n{tail(log)}")
        return self

    def _answers(self) -> bool:
        if not self.service.running():
            return True  # reported by start()
        for port in self.ports:
            if self.http2 or self.tls:
                scheme = "https" if self.tls else "http"
                mode = "--http2" if self.tls else "--http2-prior-knowledge"
                probe = run(["curl", "-s", "-k", "-o", "/dev/null", "-w", "%{http_code}", mode,
                             "--max-time", "1", f"{scheme}://{LOCALHOST}:{port}{self.PROBE}"], timeout=5)
                if probe.stdout != b"200":
                    return False
                continue
            try:
                conn = http.client.HTTPConnection(LOCALHOST, port, timeout=1)
                conn.request("GET", self.PROBE)
                if conn.getresponse().status != 200:
                    return False
                conn.close()
            except OSError:
                return False
        return True

    def log(self) -> str:
        error_log = self.dir / "error.log"
        return self.service.stderr() + (error_log.read_text(errors="replace") if error_log.exists() else "")

    def access_log(self) -> list[dict]:
        """One entry per request served: port, connection (serial number),
        connection_requests, request line, status."""
        path = self.dir / "access.log"
        entries = []
        for line in path.read_text().splitlines() if path.exists() else []:
            m = re.fullmatch(r'(\d+) (\d+) (\d+) "(.*)" (\d+)', line)
            if m and self.PROBE not in m[4]:
                entries.append({"port": int(m[1]), "connection": int(m[2]),
                                "connection_requests": int(m[3]), "request": m[4],
                                "status": int(m[5])})
        return entries

    def stop(self) -> None:
        if self.service:
            self.service.kill()


# -------------------------------------------------------------------- websocketd


class Websocketd:
    """websocketd running `cat`: every text message comes back as it was sent."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.port = 0
        self.service: Service | None = None

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.port}"

    def start(self) -> "Websocketd":
        for _ in range(3):
            self.port = free_port()
            self.service = Service("websocketd", [
                "websocketd", f"--port={self.port}", f"--address={LOCALHOST}",
                "--loglevel=error", "cat"], self.dir).start()
            if wait_until(lambda: not self.service.running() or port_accepts(self.port), 10):
                if self.service.running():
                    return self
            self.service.kill()
        raise RuntimeError(f"websocketd did not start:\n{tail(self.service.stderr())}")

    def stop(self) -> None:
        if self.service:
            self.service.kill()


# ------------------------------------------------------------------ proxy config


def _yaml_scalar(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return json.dumps(str(value))  # a JSON string is a valid double-quoted YAML scalar


def _yaml_lines(value, indent: int, out: list[str]) -> None:
    pad = "  " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                out.append(f"{pad}{key}:")
                _yaml_lines(item, indent + 1, out)
            else:
                out.append(f"{pad}{key}: {_yaml_scalar(item)}")
    else:
        for item in value:
            if isinstance(item, (dict, list)) and item:
                nested: list[str] = []
                _yaml_lines(item, indent + 1, nested)
                out.append(f"{pad}- {nested[0].lstrip()}")
                out.extend(nested[1:])
            else:
                out.append(f"{pad}- {_yaml_scalar(item)}")


def to_yaml(value: dict) -> str:
    """Block-style YAML for plain dicts, lists and scalars."""
    out: list[str] = []
    _yaml_lines(value, 0, out)
    return "\n".join(out) + "\n"


def _endpoint(e) -> dict:
    if isinstance(e, int):
        e = f"{LOCALHOST}:{e}"
    elif not isinstance(e, str):
        e = f"{LOCALHOST}:{e.port}"
    return {"address": e}


def cluster(name: str, *endpoints, connect_timeout: str | None = None, **fields) -> dict:
    """A cluster; endpoints are ports, "ip:port" strings, servers with a .port
    (nginx: its first port) or endpoint dicts. Other cluster fields
    (lb_policy, retry, ...) pass through as given."""
    c: dict = {"name": name}
    if connect_timeout:
        c["connect_timeout"] = connect_timeout
    c.update(fields)
    c["endpoints"] = [e if isinstance(e, dict) else _endpoint(e) for e in endpoints]
    return c


def route(cluster_name: str | None, prefix: str | None = "/", exact: str | None = None,
          timeout: str | None = None, match: dict | None = None, **fields) -> dict:
    """A route to one cluster (or, with cluster_name None, whatever `fields`
    say: backends, redirect...). `match` replaces the prefix/exact shorthand."""
    r: dict = {"match": match if match is not None else ({"exact": exact} if exact else {"prefix": prefix})}
    if cluster_name is not None:
        r["cluster"] = cluster_name
    if timeout:
        r["timeout"] = timeout
    r.update(fields)
    return r


def vhost(routes: list[dict], domains=("*",), name: str = "default") -> dict:
    return {"name": name, "domains": list(domains), "routes": routes}


def http_listener(name: str = "web", routes: list[dict] | None = None,
                  vhosts: list[dict] | None = None, idle_timeout: str | None = None) -> dict:
    """An HTTP listener; its address is filled in when the proxy starts."""
    listener: dict = {"name": name, "address": None, "protocol": "http"}
    if idle_timeout:
        listener["idle_timeout"] = idle_timeout
    listener["virtual_hosts"] = vhosts if vhosts is not None else [vhost(routes or [])]
    return listener


def tcp_listener(name: str, cluster_name: str) -> dict:
    return {"name": name, "address": None, "protocol": "tcp", "cluster": cluster_name}


def proxy_config(listeners: list[dict], clusters: list[dict], access_log: str | Path | None = None,
                 drain_timeout: str | None = None) -> dict:
    cfg: dict = {"admin": {"address": None}}
    if access_log:
        cfg["access_log"] = {"path": str(access_log)}
    if drain_timeout:
        cfg["drain_timeout"] = drain_timeout
    cfg["listeners"] = listeners
    cfg["clusters"] = clusters
    return cfg


def simple_config(upstream, cluster_name: str = "web", **kwargs) -> dict:
    """One HTTP listener "web" routing everything to one endpoint."""
    return proxy_config([http_listener("web", [route(cluster_name)])],
                        [cluster(cluster_name, upstream)], **kwargs)


def config_summary(cfg: dict) -> dict:
    """The parts of a config (as written, or as /config_dump shows it) that two
    renderings must agree on: names, addresses, domains, routes, endpoints."""
    def route_view(r):
        return {"match": {k: v for k, v in r["match"].items() if k in ("prefix", "exact") and v is not None},
                "cluster": r["cluster"]}

    def listener_view(l):
        view = {"name": l["name"], "address": l["address"],
                "protocol": str(l.get("protocol", "http")).lower()}
        if view["protocol"] == "tcp":
            view["cluster"] = l["cluster"]
        else:
            view["virtual_hosts"] = [
                {"name": v["name"], "domains": v["domains"], "routes": [route_view(r) for r in v["routes"]]}
                for v in l["virtual_hosts"]]
        return view

    return {
        "admin": cfg["admin"]["address"],
        "listeners": [listener_view(l) for l in cfg["listeners"]],
        "clusters": [{"name": c["name"], "endpoints": [e["address"] for e in c["endpoints"]]}
                     for c in cfg["clusters"]],
    }


# --------------------------------------------------------------------- the proxy


_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_prometheus(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text format 0.0.4 -> {(name, frozenset(labels.items())): value}."""
    samples = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.fullmatch(line)
        if not m:
            raise ValueError(f"bad sample line {line!r}")
        labels = {}
        if m[2]:
            pos = 0
            while pos < len(m[2]):
                lm = _LABEL.match(m[2], pos)
                if not lm or lm.end() == pos:
                    raise ValueError(f"bad labels in {line!r}")
                labels[lm[1]] = re.sub(r"\\(.)", lambda e: "\n" if e[1] == "n" else e[1], lm[2])
                pos = lm.end()
        samples[(m[1], frozenset(labels.items()))] = float(m[3])
    return samples


def metric(stats: dict, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in stats.items() if n == name and want <= ls)


def metric_samples(stats: dict, name: str, **labels: str) -> dict[frozenset, float]:
    want = set(labels.items())
    return {ls: v for (n, ls), v in stats.items() if n == name and want <= ls}


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


def _status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


class Proxy:
    """trellis-proxy run with a config written from a dict. Listener and admin
    addresses left as None are given fresh ports (kept across reloads)."""

    def __init__(self, workdir: Path, config: dict, workers: int = 2, log_level: str | None = None):
        self.dir = workdir
        self.config = config
        self.workers = workers
        self.log_level = log_level
        self.config_path = workdir / "trellis.yaml"
        self.service: Service | None = None
        self.ports: dict[str, int] = {}
        self.admin_port = 0
        self.exit_expected = False

    # -- lifecycle

    def _fill_addresses(self, config: dict) -> dict:
        config = json.loads(json.dumps(config))
        if config["admin"].get("address") is None:
            config["admin"]["address"] = f"{LOCALHOST}:{self.admin_port}"
        for listener in config["listeners"]:
            if listener.get("address") is None:
                port = self.ports.setdefault(listener["name"], free_port())
                listener["address"] = f"{LOCALHOST}:{port}"
            else:
                self.ports[listener["name"]] = int(listener["address"].rsplit(":", 1)[1])
        self.admin_port = int(config["admin"]["address"].rsplit(":", 1)[1])
        return config

    def write_config(self, config: dict | str) -> None:
        """Writes the file atomically, so the proxy never reads half of it."""
        text = config if isinstance(config, str) else to_yaml(config)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)

    def argv(self) -> list:
        argv = [PROXY_BIN, "--config", self.config_path, "--workers", str(self.workers)]
        if self.log_level:
            argv += ["--log-level", self.log_level]
        return argv

    def launch(self) -> "Proxy":
        """Starts the process without waiting for /ready: a proxy that may
        never be ready (one the control plane refuses, say)."""
        self.admin_port = free_port()
        self.config = self._fill_addresses(self.config)
        self.write_config(self.config)
        self.service = Service("proxy", self.argv(), self.dir).start()
        return self

    def start(self, ready_timeout: float = 10) -> "Proxy":
        if not PROXY_BIN.exists():
            pytest.fail(f"{PROXY_BIN} does not exist: build trellis-proxy first "
                        f"(or point TRELLIS_BIN_DIR at its folder)")
        for attempt in range(3):
            if attempt:
                self.ports.clear()
            self.admin_port = free_port()
            self.config = self._fill_addresses(self.config)
            self.write_config(self.config)
            self.service = Service("proxy", self.argv(), self.dir).start()
            wait_until(lambda: not self.service.running() or self.ready_status() == 200, ready_timeout)
            exited = self.service.returncode
            if exited is None and self.ready_status() == 200:
                return self
            self.service.kill()
            output = self.output()
            if exited is not None and "in use" in output.lower() and attempt < 2:
                continue
            how = (f"exited with {exited}" if exited is not None
                   else f"did not answer /ready with 200 within {ready_timeout}s")
            pytest.fail(f"trellis-proxy {how}; output:\n{tail(output)}")
        return self

    @property
    def pid(self) -> int:
        return self.service.pid

    def running(self) -> bool:
        return self.service is not None and self.service.running()

    def signal(self, sig: int) -> None:
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
            self.exit_expected = True
        self.service.send_signal(sig)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then the exit code (None if still running after `timeout`)."""
        self.signal(signal.SIGTERM)
        return self.service.wait(timeout)

    def kill(self) -> None:
        self.exit_expected = True
        if self.service:
            self.service.kill()

    def crash_report(self) -> str | None:
        """Says so if the proxy exited without being asked to."""
        if self.service and not self.exit_expected and not self.service.running():
            return (f"trellis-proxy exited unexpectedly with {self.service.returncode}; "
                    f"output:\n{tail(self.output())}")
        return None

    def reload(self, config: dict | str, wait: bool = True, timeout: float = 10) -> None:
        """Rewrites the config file and sends SIGHUP. With `wait`, returns once
        /config_dump shows the new config."""
        if isinstance(config, dict):
            config = self._fill_addresses(config)
        self.write_config(config)
        self.service.send_signal(signal.SIGHUP)
        if wait and isinstance(config, dict):
            want = config_summary(config)
            if not wait_until(lambda: self._dump_summary() == want, timeout, 0.05):
                pytest.fail(f"reload not applied within {timeout}s; /config_dump: "
                            f"{self._dump_summary()}\nwanted: {want}\noutput:\n{tail(self.output())}")
            self.config = config

    def _dump_summary(self):
        try:
            return config_summary(self.config_dump())
        except (OSError, ValueError, KeyError, TypeError, AssertionError):
            return None

    def stderr(self) -> str:
        return self.service.stderr() if self.service else ""

    def output(self) -> str:
        """Everything the proxy wrote, stdout then stderr."""
        return (self.service.stdout() + self.service.stderr()) if self.service else ""

    # -- addresses

    def port(self, listener: str = "web") -> int:
        return self.ports[listener]

    def url(self, path: str = "/", listener: str = "web") -> str:
        return f"http://{LOCALHOST}:{self.ports[listener]}{path}"

    @property
    def admin_url(self) -> str:
        return f"http://{LOCALHOST}:{self.admin_port}"

    # -- admin interface

    def admin(self, path: str, method: str = "GET", timeout: float = 5,
              headers: dict | None = None) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection(LOCALHOST, self.admin_port, timeout=timeout)
        try:
            conn.request(method, path, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def ready_status(self) -> int | None:
        try:
            return self.admin("/ready", timeout=1)[0]
        except (OSError, http.client.HTTPException):
            return None

    def stats(self) -> dict[tuple[str, frozenset], float]:
        status, _, body = self.admin("/stats")
        assert status == 200, f"/stats answered {status}: {body[:300]!r}"
        return parse_prometheus(body.decode())

    def config_dump(self) -> dict:
        status, _, body = self.admin("/config_dump")
        assert status == 200, f"/config_dump answered {status}: {body[:300]!r}"
        return json.loads(body)

    # -- memory

    def _memory_kb(self, key: str) -> int:
        """Summed over the proxy's processes (its session), should it fork workers."""
        total = 0
        for pid in _session_pids(self.pid) or [self.pid]:
            try:
                total += _status_kb(pid, key)
            except OSError:
                pass
        return total

    def rss_kb(self) -> int:
        return self._memory_kb("VmRSS")

    def hwm_kb(self) -> int:
        return self._memory_kb("VmHWM")


# ------------------------------------------------------------------------- fleet


# ControlPlane.request()'s default: the admin token trellis-control wrote.
ADMIN_TOKEN = object()


class ControlPlane:
    """trellis-control on fresh loopback ports with its data in `workdir`
    (kept across restart(), so state survival can be checked). Its API calls
    carry the admin token it wrote to <data dir>/admin-token."""

    def __init__(self, workdir: Path, extra_args: Iterable[str] = ()):
        self.dir = workdir
        self.data_dir = workdir / "data"
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.extra_args = list(extra_args)
        self.service: Service | None = None

    @property
    def grpc_address(self) -> str:
        return f"{LOCALHOST}:{self.grpc_port}"

    @property
    def api(self) -> str:
        return f"https://{LOCALHOST}:{self.http_port}"

    def tls(self):
        """An SSL context that checks the API's certificate against the mesh's roots."""
        return ssl.create_default_context(cafile=str(self.trust_bundle))

    def start(self, timeout: float = 10) -> "ControlPlane":
        if not CONTROL_BIN.exists():
            pytest.fail(f"{CONTROL_BIN} does not exist: build trellis-control first")
        self.service = Service("control", [CONTROL_BIN, "--data-dir", self.data_dir, "--grpc-address",
                                           self.grpc_address, "--http-address", f"{LOCALHOST}:{self.http_port}",
                                           *self.extra_args],
                               self.dir).start()
        if not wait_until(lambda: not self.service.running() or self.request("GET", "/healthz")[0] == 200, timeout):
            pytest.fail(f"trellis-control did not come up; output:\n{tail(self.service.stderr())}")
        if not self.service.running():
            pytest.fail(f"trellis-control exited; output:\n{tail(self.service.stderr())}")
        return self

    @property
    def admin_token_path(self) -> Path:
        return self.data_dir / "admin-token"

    @property
    def admin_token(self) -> str:
        return self.admin_token_path.read_text().strip()

    def request(self, method: str, path: str, body=None, timeout: float = 5, token=ADMIN_TOKEN,
                headers: dict | None = None) -> tuple[int, object]:
        """(status, parsed JSON or text); status 0 when it cannot be reached.
        Sends the admin token unless `token` names another (None: no token)."""
        data = json.dumps(body).encode() if body is not None else None
        if token is ADMIN_TOKEN:
            token = self.admin_token if self.admin_token_path.exists() else None
        all_headers = {"Content-Type": "application/json"}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        all_headers.update(headers or {})
        req = urllib.request.Request(self.api + path, data=data, method=method, headers=all_headers)
        if not self.trust_bundle.exists():
            return 0, None  # not started yet: the bundle is written before the API listens
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.tls()) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (urllib.error.URLError, OSError):
            return 0, None
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def apply(self, resource: dict) -> tuple[int, object]:
        return self.request("PUT", "/v1/resources", resource)

    def register(self, service: str, address: str, **fields) -> dict:
        status, body = self.request("POST", "/v1/registry/instances", {"service": service, "address": address, **fields})
        assert status == 201, f"register {service} at {address}: {status} {body}"
        return body

    def status(self) -> dict:
        return self.request("GET", "/v1/status")[1]

    @property
    def trust_bundle(self) -> Path:
        """The roots trellis-control's certificates chain to (written on start)."""
        return self.data_dir / "trust-bundle.pem"

    def join_token_file(self, service: str, namespace: str = "default", ttl: str = "1h") -> Path:
        """A file (mode 0600) holding a new join token for `service` in `namespace`."""
        status, body = self.request("POST", "/v1/tokens", {"kind": "join", "namespace": namespace,
                                                           "serviceAccount": service, "ttl": ttl})
        assert status == 201, f"join token for {namespace}/{service}: {status} {body}"
        return write_private_file(self.dir / f"join-{namespace}-{service}-{body['token']['id']}",
                                  body["secret"] + "\n")

    def proxy_status(self, node_id: str) -> dict | None:
        for p in (self.status() or {}).get("proxies", []):
            if p["node_id"] == node_id:
                return p
        return None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int | None:
        if self.service is None or not self.service.running():
            return self.service.returncode if self.service else None
        self.service.send_signal(sig)
        return self.service.wait(timeout)

    def restart(self) -> "ControlPlane":
        self.stop()
        return self.start()

    def close(self) -> None:
        if self.service:
            self.service.kill()


def sidecar_config(control: "ControlPlane", service: str, node_id: str | None = None,
                   instance: dict | None = None, outbound_port: int | None = None,
                   upstream_services: list[str] | None = None, namespace: str | None = None,
                   join_token_file: Path | None = None, **kwargs) -> dict:
    """A proxy driven by `control`: no static listeners, its own instance
    (address and app_address) and/or an outbound listener; it joins with a
    new join token for its service (or the one in `join_token_file`)."""
    node = {"id": node_id or f"{service}-1", "service": service}
    if namespace:
        node["namespace"] = namespace
    token_file = join_token_file or control.join_token_file(service, namespace or "default")
    cp = {"address": control.grpc_address, "node": node, "trust_bundle": str(control.trust_bundle),
          "join_token_file": str(token_file)}
    if instance:
        cp["instance"] = instance
    if outbound_port:
        cp["outbound_address"] = f"{LOCALHOST}:{outbound_port}"
    if upstream_services:
        cp["upstream_services"] = upstream_services
    config = proxy_config([], [], **kwargs)
    config["control_plane"] = cp
    return config


def details_and_caller(fleet: "Fleet", control: "ControlPlane", app_address: str) -> tuple["Proxy", "Proxy", int]:
    """details' sidecar in front of `app_address`, and productpage's calling
    it: (details, productpage, productpage's outbound port), once a request
    has gone through."""
    inbound = free_port()
    details = fleet.proxy(sidecar_config(control, "details", instance={"address": f"{LOCALHOST}:{inbound}",
                                                                       "app_address": app_address}))
    outbound = free_port()
    productpage = fleet.proxy(sidecar_config(control, "productpage", outbound_port=outbound,
                                             upstream_services=["details"]))
    assert wait_until(lambda: call(outbound, "/ready", host="details")[0] == 200, 10), "no traffic through the mesh"
    return details, productpage, outbound


class Fleet:
    """A temporary directory and everything started in it; close() undoes all."""

    def __init__(self, prefix: str = "trellis-it-"):
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self._closers: list[Callable[[], None]] = []
        self._proxies: list[Proxy] = []
        self._count = 0

    def subdir(self, name: str) -> Path:
        self._count += 1
        path = self.dir / f"{name}-{self._count}"
        path.mkdir()
        return path

    def _own(self, thing, closer: Callable[[], None]):
        self._closers.append(closer)
        return thing

    def nginx(self, ports: int = 1, **options) -> Nginx:
        server = self._own(Nginx(self.subdir("nginx"), ports, **options), lambda: server.stop())
        return server.start()

    def upstream(self, handler: Handler = http_responder()) -> RawUpstream:
        server = RawUpstream(handler)
        return self._own(server, server.close)

    def blackhole(self) -> Blackhole:
        hole = Blackhole()
        return self._own(hole, hole.close)

    def websocketd(self) -> Websocketd:
        server = self._own(Websocketd(self.subdir("websocketd")), lambda: server.stop())
        return server.start()

    def proxy(self, config: dict, workers: int = 2, log_level: str | None = None,
              start: bool = True) -> Proxy:
        proxy = Proxy(self.subdir("proxy"), config, workers, log_level)
        self._proxies.append(proxy)
        self._own(proxy, proxy.kill)
        return proxy.start() if start else proxy

    def control_plane(self, extra_args: Iterable[str] = ()) -> ControlPlane:
        control = ControlPlane(self.subdir("control"), extra_args)
        self._own(control, control.close)
        return control.start()

    def spawn(self, name: str, argv: list) -> Service:
        """Any other process (curl, h2load, ...), stopped at the end if still running."""
        service = Service(name, argv, self.subdir(name))
        self._own(service, service.kill)
        return service.start()

    def crash_reports(self) -> list[str]:
        return [r for p in self._proxies if (r := p.crash_report())]

    def close(self) -> None:
        """Stops everything (last started first) and removes the directory.
        Raises if a proxy died on its own along the way."""
        crashes = self.crash_reports()
        try:
            for closer in reversed(self._closers):
                try:
                    closer()
                except Exception:  # keep stopping the rest
                    pass
        finally:
            if not os.environ.get("TRELLIS_KEEP_TEST_DIR"):
                shutil.rmtree(self.dir, ignore_errors=True)
        if crashes:
            raise AssertionError("\n\n".join(crashes))


# ------------------------------------------------------ traffic management aids


def named_responder(name: str, delay: float = 0.0, status: int = 200,
                    headers: Iterable[tuple[str, str]] = ()) -> Handler:
    """Answers every request with `name` as the body (after `delay` seconds), so
    a test can tell which upstream served it."""
    answer = http_response(status, name.encode(), headers)

    def respond(req: Request) -> bytes:
        if delay:
            time.sleep(delay)
        return answer
    return http_responder(respond)


def request_echo(req: Request) -> bytes:
    """For http_responder: a 200 whose body is the request body as received."""
    return http_response(200, req.body, [("X-Echo-Target", req.target), ("X-Echo-Method", req.method)])


class ScriptedResponder:
    """A RawUpstream handler that answers the requests it receives, over all its
    connections, by a script taken in order; after the script, `then`. A step is
    bytes (sent as the answer), "close" (close the connection without
    answering), "reset" (abort it with a RST), "silent" (never answer), or a
    function of the request returning one of these. `answered` counts requests."""

    def __init__(self, *steps, then=http_response()):
        self.steps = list(steps)
        self.then = then
        self.answered = 0
        self._lock = threading.Lock()

    def _next(self, req: Request):
        with self._lock:
            step = self.steps[self.answered] if self.answered < len(self.steps) else self.then
            self.answered += 1
        return step(req) if callable(step) else step

    def __call__(self, peer: Peer) -> None:
        stream = Stream(fill=peer.recv)
        while True:
            step = self._next(read_request(stream))
            if step == "close":
                return
            if step == "reset":
                import struct  # linger on, 0 s: close() sends a RST
                peer.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                peer.sock.close()
                return
            if step == "silent":
                peer.read_until_eof()
                return
            if not peer.send(step):
                return


def pipelined(client: HttpClient, requests: list[bytes], batch: int = 100) -> list[Response]:
    """Sends GET-like requests in pipelined batches on one connection and
    returns the responses in order: many requests, few round trips."""
    responses: list[Response] = []
    for i in range(0, len(requests), batch):
        chunk = requests[i:i + batch]
        client.send(b"".join(chunk))
        responses += [client.read_response() for _ in chunk]
    return responses


def concurrent_requests(port: int, clients: int, total: int, target: str = "/",
                        headers=(), timeout: float = 30.0) -> list[Response]:
    """`clients` keep-alive connections in parallel threads sending sequential
    GETs, drawn from a shared count of `total` (so all stay busy until the
    end); every response, or the first error raised."""
    results: list[Response] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    left = [total]

    def take() -> bool:
        with lock:
            if left[0] <= 0 or errors:
                return False
            left[0] -= 1
            return True

    def one_client() -> None:
        try:
            with HttpClient(port, timeout) as client:
                while take():
                    resp = client.request("GET", target, headers)
                    with lock:
                        results.append(resp)
        except BaseException as e:  # reported to the caller below
            with lock:
                errors.append(e)

    threads = [threading.Thread(target=one_client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    if errors:
        raise errors[0]
    return results


def validate_config(workdir: Path, config: dict | str) -> subprocess.CompletedProcess:
    """`trellis-proxy --validate` on a config (addresses must be filled in)."""
    path = workdir / "validate.yaml"
    path.write_text(config if isinstance(config, str) else to_yaml(config))
    return run([PROXY_BIN, "--config", path, "--validate"], timeout=20)


# ---- WebSocket frames (RFC 6455)

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_accept(key: str) -> str:
    """The Sec-WebSocket-Accept that answers `key` (RFC 6455 section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def ws_frame(opcode: int, payload: bytes, masked: bool = False, fin: bool = True) -> bytes:
    """One frame; a client's frames are masked, a server's are not."""
    n = len(payload)
    bit = 0x80 if masked else 0
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_ws_frame(stream: Stream) -> tuple[int, bool, bytes, bool]:
    """The next frame: (opcode, fin, payload unmasked, whether it was masked)."""
    first, second = stream.read_exact(2)
    n = second & 0x7F
    if n == 126:
        n = struct.unpack("!H", stream.read_exact(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", stream.read_exact(8))[0]
    key = stream.read_exact(4) if second & 0x80 else b""
    payload = stream.read_exact(n)
    if key:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return first & 0x0F, bool(first & 0x80), payload, bool(key)
