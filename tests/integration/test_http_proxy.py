"""HTTP/1.1 proxying: routing, forwarded headers, keep-alive and pooling, bodies
and trailers, 100-continue, upstream failures, round robin, access log."""

import hashlib
import json
import os
import re
import threading

import pytest

from harness import (
    HttpClient, Incomplete, build_request, chunked_body, chunked_response, cluster, curl, free_port,
    get, http_listener, http_responder, proxy_config, read_head, route, silent, simple_config,
    vhost, wait_until,
)

UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")




def fields(resp) -> dict[str, str]:
    """The "key=value" lines of an nginx /echo-headers (or catch-all) answer."""
    return dict(line.split("=", 1) for line in resp.text().splitlines() if "=" in line)


def served_port(resp) -> int:
    assert resp.status == 200, f"expected 200, got {resp}"
    return int(fields(resp)["port"])


def assert_hello(resp, what: str = "response") -> None:
    assert resp.status == 200 and resp.body == b"hello world\n", f"{what}: got {resp}"


# ------------------------------------------------------------------ basics


def test_get_is_proxied(proxy):
    resp = get(proxy.port(), "/hello")
    assert_hello(resp)
    assert resp.header("content-length") == "12", f"got {resp}"


def test_client_keep_alive_connection_serves_many_requests(proxy):
    with HttpClient(proxy.port()) as client:
        for i in range(20):
            resp = client.request("GET", "/hello")
            assert_hello(resp, f"request {i}")
            assert "close" not in (resp.header("connection") or "").lower(), f"request {i}: {resp}"
        assert client.is_open(), "the proxy closed a keep-alive connection after 20 requests"


def test_http10_client_gets_its_response_then_close(proxy):
    with HttpClient(proxy.port()) as client:
        client.send(build_request("GET", "/hello", version="HTTP/1.0"))
        assert_hello(client.read_response())
        assert client.wait_closed(5) == b"", "connection of an HTTP/1.0 client not closed"


def test_head_response_has_no_body_and_connection_goes_on(proxy):
    with HttpClient(proxy.port()) as client:
        resp = client.request("HEAD", "/hello")
        assert resp.status == 200 and resp.header("content-length") == "12", f"got {resp}"
        assert_hello(client.request("GET", "/hello"), "GET after HEAD")


def test_pipelined_requests_are_answered_in_order(proxy):
    with HttpClient(proxy.port()) as client:
        client.send(b"".join(build_request("GET", f"/pipelined/{i}") for i in range(5)))
        uris = [fields(client.read_response()).get("uri") for _ in range(5)]
    assert uris == [f"/pipelined/{i}" for i in range(5)], f"got {uris}"


def test_upstream_connections_are_pooled(nginx, proxy):
    for i in range(50):
        assert_hello(get(proxy.port(), "/hello"), f"fresh connection {i}")
    with HttpClient(proxy.port()) as client:
        for i in range(50):
            assert_hello(client.request("GET", "/hello"), f"keep-alive request {i}")
    entries = wait_until(lambda: len(nginx.access_log()) >= 100 and nginx.access_log(), 5)
    assert entries and len(entries) == 100, f"nginx logged {len(entries or [])} requests, expected 100"
    connections = {e["connection"] for e in entries}
    # Two workers, each with its own pool: a handful of connections, not one per request.
    assert len(connections) <= 10, (
        f"100 requests used {len(connections)} upstream connections: "
        f"{sorted(connections)}")


# ----------------------------------------------------------------- routing


@pytest.fixture
def three(fleet):
    return fleet.nginx(ports=3)


def three_clusters(nginx) -> list[dict]:
    return [cluster(name, nginx.address(i)) for i, name in enumerate("abc")]


def test_routing_by_host(fleet, three):
    vhosts = [vhost([route("a")], ["a.example"], "a"),
              vhost([route("b")], ["*.wild.example"], "b"),
              vhost([route("c")], ["*"], "c")]
    proxy = fleet.proxy(proxy_config([http_listener("web", vhosts=vhosts)], three_clusters(three)))
    a, b, c = three.ports
    cases = {"a.example": a, "A.Example": a, "a.example:8080": a, "x.wild.example": b,
             "wild.example": c, "other.example": c}
    got = {host: served_port(get(proxy.port(), "/", host=host)) for host in cases}
    assert got == cases, f"host -> port served: got {got}, expected {cases}"


def test_routing_by_path_first_match_wins(fleet, three):
    routes = [route("a", exact="/exact"), route("b", prefix="/api"),
              route("a", prefix="/api/special"), route("c", prefix="/")]
    proxy = fleet.proxy(proxy_config([http_listener("web", routes)], three_clusters(three)))
    a, b, c = three.ports
    cases = {"/exact": a, "/exact?q=1": a, "/exact/more": c, "/exactly": c, "/api": b,
             "/api/x": b, "/api/special": b, "/other": c}
    got = {path: served_port(get(proxy.port(), path)) for path in cases}
    assert got == cases, f"path -> port served: got {got}, expected {cases}"


def test_no_matching_route_is_404(fleet, nginx):
    vhosts = [vhost([route("web", prefix="/api")], ["only.example"], "only")]
    proxy = fleet.proxy(proxy_config([http_listener("web", vhosts=vhosts)], [cluster("web", nginx)]))
    with HttpClient(proxy.port()) as client:
        resp = client.request("GET", "/api/x", host="elsewhere.example")
        assert resp.status == 404, f"unknown host: got {resp}"
        resp = client.request("GET", "/other", host="only.example")
        assert resp.status == 404, f"unrouted path: got {resp}"
        resp = client.request("GET", "/api/x", host="only.example")
        assert resp.status == 200, f"routed request after two 404s: got {resp}"
    # nginx writes its log line after the response: give it a moment.
    wait_until(lambda: nginx.access_log(), 2)
    seen = [e["request"] for e in nginx.access_log()]
    assert seen == ["GET /api/x HTTP/1.1"], f"upstream saw {seen}, expected only the routed request"


# ----------------------------------------------------------------- headers


def test_x_forwarded_for_gets_client_address(proxy):
    got = fields(get(proxy.port(), "/echo-headers"))["xff"]
    assert got == "127.0.0.1", f"x-forwarded-for without one from the client: {got!r}"
    got = fields(get(proxy.port(), "/echo-headers", [("X-Forwarded-For", "10.1.2.3")]))["xff"]
    assert [p.strip() for p in got.split(",")] == ["10.1.2.3", "127.0.0.1"], \
        f"x-forwarded-for after 10.1.2.3: {got!r}"


def test_x_request_id_added_when_absent_and_kept_when_present(proxy):
    first = fields(get(proxy.port(), "/echo-headers"))["rid"]
    second = fields(get(proxy.port(), "/echo-headers"))["rid"]
    assert UUID.fullmatch(first) and UUID.fullmatch(second), f"generated ids: {first!r}, {second!r}"
    assert first != second, f"two requests got the same id {first!r}"
    kept = fields(get(proxy.port(), "/echo-headers", [("X-Request-Id", "client-id-42")]))["rid"]
    assert kept == "client-id-42", f"client's x-request-id replaced by {kept!r}"


def test_hop_by_hop_headers_are_not_forwarded(fleet):
    upstream = fleet.upstream()
    proxy = fleet.proxy(simple_config(upstream))
    resp = get(proxy.port(), "/", [
        ("Connection", "keep-alive, X-Secret"), ("X-Secret", "1"), ("Keep-Alive", "timeout=5"),
        ("Proxy-Connection", "keep-alive"), ("TE", "deflate"), ("Upgrade", "h2c"),
        ("X-Kept", "yes")])
    assert resp.status == 200, f"got {resp}"
    [req] = upstream.requests()
    leaked = req.names() & {"keep-alive", "proxy-connection", "x-secret", "upgrade"}
    assert not leaked, f"hop-by-hop headers forwarded: {leaked} in {req.headers}"
    assert "deflate" not in (req.header("te") or ""), f"client's TE forwarded: {req.headers}"
    assert "x-secret" not in (req.header("connection") or "").lower(), f"got {req.headers}"
    assert req.header("x-kept") == "yes", f"end-to-end header lost: {req.headers}"


HEADER_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+: (?:[!-~\x80-\xff](?:[ \t!-~\x80-\xff]*[!-~\x80-\xff])?)?")


def test_request_is_reserialised_canonically(fleet):
    upstream = fleet.upstream()
    proxy = fleet.proxy(simple_config(upstream))
    with HttpClient(proxy.port()) as client:
        client.send(b"GET /path?q=1 HTTP/1.1\r\nHost: canon.example\r\nX-Padded:   x  \r\n"
                    b"X-MiXeD-CaSe: v\r\nX-Tab:\tt\t\r\n\r\n")
        resp = client.read_response()
    assert resp.status == 200, f"got {resp}"
    [req] = upstream.requests()
    assert req.start_line == "GET /path?q=1 HTTP/1.1", f"request line {req.start_line!r}"
    head = req.raw_head
    for wanted in (b"\r\nX-Padded: x\r\n", b"\r\nX-MiXeD-CaSe: v\r\n", b"\r\nX-Tab: t\r\n"):
        assert wanted in head, f"{wanted!r} not in upstream head {head!r}"
    # Host is rebuilt from the request's authority (names are case-insensitive).
    assert b"\r\nhost: canon.example\r\n" in head.lower(), f"no Host in upstream head {head!r}"
    for line in head.split(b"\r\n")[1:-2]:
        assert HEADER_LINE.fullmatch(line), f"non-canonical header line {line!r} in {head!r}"


def test_http10_request_goes_upstream_as_http11(fleet):
    upstream = fleet.upstream()
    proxy = fleet.proxy(simple_config(upstream))
    with HttpClient(proxy.port()) as client:
        client.send(build_request("GET", "/old", version="HTTP/1.0"))
        resp = client.read_response()
    assert resp.status == 200, f"got {resp}"
    [req] = upstream.requests()
    assert req.start_line == "GET /old HTTP/1.1", f"request line {req.start_line!r}"


def test_http10_request_without_host_gets_one_upstream(fleet):
    upstream = fleet.upstream()
    proxy = fleet.proxy(simple_config(upstream))
    with HttpClient(proxy.port()) as client:
        client.send(b"GET /nohost HTTP/1.0\r\n\r\n")
        resp = client.read_response()
    assert resp.status == 200, f"got {resp}"
    [req] = upstream.requests()
    host = b"\r\nhost: 127.0.0.1:%d\r\n" % upstream.port
    assert host in req.raw_head.lower(), f"an HTTP/1.1 request needs a Host: {req.raw_head!r}"


# ------------------------------------------------------------------ bodies


def test_content_length_body_round_trip(nginx, proxy):
    data = os.urandom(256 * 1024)
    with HttpClient(proxy.port()) as client:
        resp = client.request("PUT", "/dav/cl.bin", body=data)
        assert resp.status in (201, 204), f"PUT: got {resp}"
        resp = client.request("GET", "/dav/cl.bin")
    assert resp.status == 200 and resp.body == data, \
        f"GET back: status {resp.status}, {len(resp.body)} bytes, expected {len(data)}"
    assert (nginx.dav_dir / "cl.bin").read_bytes() == data, "stored file differs"


def test_chunked_request_body_reaches_nginx(nginx, proxy):
    chunks = [os.urandom(n) for n in (1, 1000, 65536, 3, 100_000)]
    with HttpClient(proxy.port()) as client:
        client.send(build_request("PUT", "/dav/chunked.bin", [("Transfer-Encoding", "chunked")])
                    + chunked_body(chunks))
        resp = client.read_response()
    assert resp.status in (201, 204), f"got {resp}"
    stored = (nginx.dav_dir / "chunked.bin").read_bytes()
    assert stored == b"".join(chunks), f"stored {len(stored)} bytes, expected {sum(map(len, chunks))}"


def test_request_trailers_are_forwarded(fleet):
    upstream = fleet.upstream()
    proxy = fleet.proxy(simple_config(upstream))
    with HttpClient(proxy.port()) as client:
        client.send(build_request("POST", "/upload", [("Transfer-Encoding", "chunked")])
                    + chunked_body([b"hello ", b"world"], [("X-Checksum", "abc"), ("X-Other", "1")]))
        resp = client.read_response()
    assert resp.status == 200, f"got {resp}"
    [req] = upstream.requests()
    assert req.chunked and req.body == b"hello world", f"upstream got {req.raw_head!r} {req.body!r}"
    assert (req.trailer("x-checksum"), req.trailer("x-other")) == ("abc", "1"), \
        f"upstream trailers: {req.trailers}"


def test_request_body_is_streamed(fleet):
    upstream = fleet.upstream()
    proxy = fleet.proxy(simple_config(upstream))
    with HttpClient(proxy.port()) as client:
        client.send(build_request("POST", "/stream", [("Content-Length", "10")]) + b"first")
        arrived = wait_until(lambda: b"first" in upstream.received(), 5)
        assert arrived, f"first half of the body not forwarded; upstream got {upstream.received()!r}"
        client.send(b"-half")
        resp = client.read_response()
    assert resp.status == 200, f"got {resp}"
    [req] = upstream.requests()
    assert req.body == b"first-half", f"upstream body {req.body!r}"


def test_response_body_is_streamed(fleet):
    release = threading.Event()

    def handler(peer):
        peer.recv()
        peer.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        release.wait(10)
        peer.send(b"5\r\nlater\r\n0\r\n\r\n")
        peer.read_until_eof()

    upstream = fleet.upstream(handler)
    proxy = fleet.proxy(simple_config(upstream))
    with HttpClient(proxy.port(), timeout=5) as client:
        client.send(build_request("GET", "/stream"))
        try:
            read_head(client.stream)
            seen = bytearray()
            while b"first" not in seen:
                seen += client.stream.read_exact(1)
        except TimeoutError:
            pytest.fail(f"first chunk not passed on while the upstream holds the rest; "
                        f"client got {client.stream.pending()!r}")
        finally:
            release.set()
        while not seen.endswith(b"0\r\n\r\n"):
            seen += client.stream.read_exact(1)
    assert b"later" in seen, f"rest of the body missing: {bytes(seen)!r}"


def test_chunked_response_and_trailers_reach_client(fleet):
    chunks = [os.urandom(n) for n in (10, 70_000, 1)]
    upstream = fleet.upstream(http_responder(chunked_response(chunks, [("X-Trailer", "t1")])))
    proxy = fleet.proxy(simple_config(upstream))
    resp = get(proxy.port(), "/", [("TE", "trailers")])
    assert resp.status == 200 and resp.body == b"".join(chunks), \
        f"status {resp.status}, {len(resp.body)} bytes of {sum(map(len, chunks))}"
    assert resp.trailer("x-trailer") == "t1", f"trailers {resp.trailers}, head {resp.raw_head!r}"


def test_nginx_response_trailers_reach_client(proxy):
    resp = get(proxy.port(), "/trailers", [("TE", "trailers")])
    assert resp.status == 200 and resp.body == b"trailer body\n", f"got {resp}"
    assert resp.trailer("x-checksum") == "abc123", f"trailers {resp.trailers}, head {resp.raw_head!r}"


def test_large_download_with_content_length(nginx, proxy):
    resp = get(proxy.port(), "/big", timeout=30)
    assert resp.status == 200 and len(resp.body) == nginx.BIG_SIZE, \
        f"status {resp.status}, {len(resp.body)} bytes"
    assert hashlib.sha256(resp.body).hexdigest() == nginx.big_sha256, "body differs from the file"


# ----------------------------------------------------------- 100-continue


def test_expect_100_continue_with_curl(fleet, nginx, proxy):
    data = os.urandom(64 * 1024)
    source = fleet.subdir("files") / "expect.bin"
    source.write_bytes(data)
    try:
        result = curl("-v", "-o", os.devnull, "-w", "%{http_code}", "-T", source,
                      "-H", "Expect: 100-continue", "--expect100-timeout", "30",
                      proxy.url("/dav/expect.bin"), timeout=20)
    except Exception as e:  # subprocess.TimeoutExpired: curl waited for 100 Continue
        pytest.fail(f"curl did not complete: {e}")
    assert result.returncode == 0 and result.stdout in (b"201", b"204"), \
        f"curl rc={result.returncode} code={result.stdout!r} stderr={result.stderr[-800:]!r}"
    assert b"< HTTP/1.1 100 Continue" in result.stderr, f"no 100 Continue: {result.stderr[-800:]!r}"
    assert (nginx.dav_dir / "expect.bin").read_bytes() == data, "stored file differs"


def test_expect_100_continue_raw(nginx, proxy):
    with HttpClient(proxy.port()) as client:
        client.send(build_request("PUT", "/dav/raw-expect.txt",
                                  [("Expect", "100-continue"), ("Content-Length", "5")]))
        interim = client.read_response(interim=True, timeout=5)
        assert interim.status == 100, f"expected 100 Continue before sending the body, got {interim}"
        client.send(b"hello")
        resp = client.read_response()
    assert resp.status in (201, 204), f"got {resp}"
    assert (nginx.dav_dir / "raw-expect.txt").read_bytes() == b"hello"


# ------------------------------------------------------- upstream failures


def test_connection_refused_is_503(fleet):
    proxy = fleet.proxy(simple_config(free_port()))
    resp = get(proxy.port(), "/")
    assert resp.status == 503, f"got {resp}"
    assert "connect" in resp.text().lower(), f"body does not say what failed: {resp.body!r}"


def test_connect_timeout_is_503_or_504(fleet):
    hole = fleet.blackhole()
    config = proxy_config([http_listener("web", [route("web")])],
                          [cluster("web", hole, connect_timeout="200ms")])
    proxy = fleet.proxy(config)
    resp = get(proxy.port(), "/", timeout=10)
    assert resp.status in (503, 504), f"got {resp}"
    assert resp.body.strip(), f"empty error body: {resp}"


def test_upstream_that_never_answers_is_504(fleet):
    upstream = fleet.upstream(silent)
    config = proxy_config([http_listener("web", [route("web", timeout="500ms")])],
                          [cluster("web", upstream)])
    proxy = fleet.proxy(config)
    resp = get(proxy.port(), "/", timeout=10)
    assert resp.status == 504, f"got {resp}"
    assert resp.body.strip(), f"empty error body: {resp}"


MALFORMED_RESPONSES = {
    "garbage": b"garbage\r\n\r\n",
    "bad_status_code": b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
    "duplicate_content_length": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    "bare_lf": b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",
    "obs_fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
    "closed_without_response": b"",
}


@pytest.mark.parametrize("answer", MALFORMED_RESPONSES.values(), ids=MALFORMED_RESPONSES.keys())
def test_malformed_upstream_response_is_502(fleet, answer):
    upstream = fleet.upstream(http_responder(answer, close=True))
    proxy = fleet.proxy(simple_config(upstream))
    with HttpClient(proxy.port()) as client:
        client.send(build_request("GET", "/"))
        resp = client.try_read_response()
    assert resp is not None and resp.status == 502, f"got {resp}"
    assert resp.body.strip(), f"empty error body: {resp}"


def test_101_without_upgrade_header_is_a_bad_gateway(fleet):
    upstream = fleet.upstream(http_responder(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\n\r\n"))
    proxy = fleet.proxy(simple_config(upstream))
    with HttpClient(proxy.port()) as client:
        client.send(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        resp = client.read_response()
    assert resp.status == 502, f"a 101 that names no protocol passed as {resp}"


def test_bad_chunk_in_upstream_response_cuts_the_response(fleet):
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n"
    upstream = fleet.upstream(http_responder(answer, close=True))
    proxy = fleet.proxy(simple_config(upstream))
    with HttpClient(proxy.port()) as client:
        client.send(build_request("GET", "/"))
        try:
            resp = client.read_response()
        except Incomplete:
            return  # the head was already passed on, then the response was cut: fine
    assert resp.status == 502, f"a response with a broken chunk passed as {resp}"


# ------------------------------------------------------------ load balancing


def test_round_robin_spreads_requests_evenly(fleet, three):
    proxy = fleet.proxy(proxy_config([http_listener("web", [route("rr")])],
                                     [cluster("rr", *(three.address(i) for i in range(3)),
                                              lb_policy="round_robin")]))
    counts = dict.fromkeys(three.ports, 0)
    for _ in range(150):
        counts[served_port(get(proxy.port(), "/port-check"))] += 1
    with HttpClient(proxy.port()) as client:
        for _ in range(150):
            counts[served_port(client.request("GET", "/port-check"))] += 1
    assert all(n > 75 for n in counts.values()), f"requests per endpoint out of 300: {counts}"


# ---------------------------------------------------------------- access log


ACCESS_LOG_FIELDS = {"time", "listener", "client", "method", "path", "host", "status",
                     "bytes_received", "bytes_sent", "duration_ms", "upstream", "cluster",
                     "request_id"}


def test_access_log_has_one_json_line_per_request(fleet, nginx):
    log = fleet.subdir("logs") / "access.log"
    proxy = fleet.proxy(simple_config(nginx, access_log=log))
    assert_hello(get(proxy.port(), "/hello", [("X-Request-Id", "log-rid-1")], host="log.example"))
    resp = get(proxy.port(), "/dav/logged.bin", method="PUT", body=b"x" * 1000)
    assert resp.status in (201, 204), f"got {resp}"

    def lines():
        return [l for l in log.read_text().splitlines() if l.strip()] if log.exists() else []
    wait_until(lambda: len(lines()) >= 2, 5)
    got = lines()
    assert len(got) == 2, f"expected 2 access log lines, got {got}"
    first, second = (json.loads(line) for line in got)
    for entry in (first, second):
        missing = ACCESS_LOG_FIELDS - entry.keys()
        assert not missing, f"access log entry lacks {missing}: {entry}"
    assert (first["listener"], first["method"], first["path"], first["host"]) == \
        ("web", "GET", "/hello", "log.example"), f"got {first}"
    assert int(first["status"]) == 200 and first["bytes_sent"] >= 12, f"got {first}"
    assert "127.0.0.1" in first["client"], f"got {first}"
    assert first["cluster"] == "web" and first["upstream"] == nginx.address(), f"got {first}"
    assert first["request_id"] == "log-rid-1", f"got {first}"
    assert isinstance(first["duration_ms"], (int, float)) and first["duration_ms"] >= 0, f"got {first}"
    assert second["method"] == "PUT" and second["bytes_received"] >= 1000, f"got {second}"
    assert UUID.fullmatch(second["request_id"]), f"generated request id in {second}"
