"""Request smuggling and malformed requests: anything ambiguous is refused with
400 (431 for oversized heads), the connection is closed, and nothing of it
reaches the upstream; well-framed requests reach it exactly as intended."""


import pytest

from harness import HttpClient, build_request, chunked_body, metric, simple_config, wait_until

# Sent right behind every bad request: if the proxy ever answers it or forwards
# it, the bad request's framing was read in a way the client did not intend.
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"


def req(*header_lines: bytes, body: bytes = b"", start: bytes = b"POST / HTTP/1.1") -> bytes:
    return b"\r\n".join([start, *header_lines]) + b"\r\n\r\n" + body


HOST = b"Host: h"
CHUNKED = b"Transfer-Encoding: chunked"

# name -> (request bytes, accepted statuses)
BAD_HEADS = {
    # Framing conflicts: the classic CL.TE / TE.CL / TE.TE desync payloads.
    "cl_te": req(HOST, b"Content-Length: 13", CHUNKED, body=b"0\r\n\r\nSMUGGLED"),
    "te_cl": req(HOST, CHUNKED, b"Content-Length: 4",
                 body=b"5c\r\nGPOST / HTTP/1.1\r\nContent-Length: 15\r\n\r\nx=1\r\n0\r\n\r\n"),
    "te_te_second_garbage": req(HOST, CHUNKED, b"Transfer-Encoding: x", body=b"0\r\n\r\n"),
    "te_twice": req(HOST, CHUNKED, CHUNKED, body=b"0\r\n\r\n"),
    # Content-Length.
    "cl_duplicate_equal": req(HOST, b"Content-Length: 5", b"Content-Length: 5", body=b"hello"),
    "cl_duplicate_different": req(HOST, b"Content-Length: 5", b"Content-Length: 6", body=b"hello!"),
    "cl_list": req(HOST, b"Content-Length: 5, 5", body=b"hello"),
    "cl_not_a_number": req(HOST, b"Content-Length: abc", body=b"hello"),
    "cl_negative": req(HOST, b"Content-Length: -5", body=b"hello"),
    "cl_plus_sign": req(HOST, b"Content-Length: +5", body=b"hello"),
    "cl_hex": req(HOST, b"Content-Length: 0x5", body=b"hello"),
    "cl_empty": req(HOST, b"Content-Length: ", body=b"hello"),
    "cl_inner_space": req(HOST, b"Content-Length: 5 5", body=b"hello"),
    "cl_overflow": req(HOST, b"Content-Length: 18446744073709551621", body=b"hello"),
    # Obfuscated Transfer-Encoding.
    "te_xchunked": req(HOST, b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n"),
    "te_chunked_junk": req(HOST, b"Transfer-Encoding: chunked x", body=b"0\r\n\r\n"),
    "te_chunked_vtab": req(HOST, b"Transfer-Encoding: chunked\x0b", body=b"0\r\n\r\n"),
    "te_vtab_chunked": req(HOST, b"Transfer-Encoding: \x0bchunked", body=b"0\r\n\r\n"),
    "te_chunked_comma": req(HOST, b"Transfer-Encoding: chunked,", body=b"0\r\n\r\n"),
    "te_chunked_chunked": req(HOST, b"Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n"),
    "te_gzip_chunked": req(HOST, b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"),
    "te_identity": req(HOST, b"Transfer-Encoding: identity", body=b"hello"),
    "te_quoted": req(HOST, b'Transfer-Encoding: "chunked"', body=b"0\r\n\r\n"),
    "te_space_before_colon": req(HOST, b"Transfer-Encoding : chunked", body=b"0\r\n\r\n"),
    "te_in_obs_fold": req(HOST, b"X-A: a", b" Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
    "te_on_http10": req(HOST, CHUNKED, body=b"0\r\n\r\n", start=b"POST / HTTP/1.0"),
    # Header syntax.
    "nul_in_value": req(HOST, b"X-A: a\x00b"),
    "cr_in_value": req(HOST, b"X-A: a\rb"),
    "lf_in_value": req(HOST, b"X-A: a\nb"),
    "control_in_value": req(HOST, b"X-A: a\x01b"),
    "space_before_colon": req(HOST, b"X-A : b"),
    "tab_before_colon": req(HOST, b"X-A\t: b"),
    "cl_space_before_colon": req(HOST, b"Content-Length : 5", body=b"hello"),
    "obs_fold": req(HOST, b"X-A: a", b"  b"),
    "empty_header_name": req(HOST, b": b"),
    "bad_header_name": req(HOST, b"X(A: b"),
    "missing_host": req(start=b"GET / HTTP/1.1"),
    "duplicate_host": req(HOST, b"Host: other", start=b"GET / HTTP/1.1"),
    # Request line.
    "invalid_method": req(HOST, start=b"G(ET / HTTP/1.1"),
    "empty_method": req(HOST, start=b" / HTTP/1.1"),
    "target_with_space": req(HOST, start=b"GET /a b HTTP/1.1"),
    "target_with_control": req(HOST, start=b"GET /a\x01b HTTP/1.1"),
    "target_non_ascii": req(HOST, start=b"GET /caf\xc3\xa9 HTTP/1.1"),
    "target_relative": req(HOST, start=b"GET a/b HTTP/1.1"),
    "double_space": req(HOST, start=b"GET  / HTTP/1.1"),
    "bad_version": req(HOST, start=b"GET / HTTP/1.x"),
    # Line ends.
    "bare_lf_everywhere": b"GET / HTTP/1.1\nHost: h\n\n",
    "bare_lf_after_request_line": b"GET / HTTP/1.1\nHost: h\r\n\r\n",
    "bare_lf_after_header": b"GET / HTTP/1.1\r\nHost: h\nX-A: b\r\n\r\n",
    "bare_lf_ending_head": b"GET / HTTP/1.1\r\nHost: h\r\n\n",
    "bare_cr": b"GET / HTTP/1.1\rHost: h\r\n\r\n",
}


@pytest.fixture(scope="module")
def setup(module_fleet):
    upstream = module_fleet.upstream()
    proxy = module_fleet.proxy(simple_config(upstream))
    return proxy, upstream


@pytest.fixture
def proxy_and_upstream(setup, module_fleet):
    """The shared proxy and upstream, with the upstream's record emptied; the
    proxy must still be alive after the test."""
    proxy, upstream = setup
    upstream.reset()
    yield proxy, upstream
    crashes = module_fleet.crash_reports()
    assert not crashes, crashes[0]


def forwarded(proxy) -> tuple[float, float]:
    """What the proxy sent upstream so far: (requests, bytes), from /stats."""
    stats = proxy.stats()
    return (metric(stats, "trellis_upstream_requests_total", cluster="web"),
            metric(stats, "trellis_upstream_bytes_sent_total", cluster="web"))


def settle(proxy, upstream, before: tuple[float, float]) -> float:
    """Once the proxy has closed the client's connection, whatever it forwarded
    for it is counted in /stats; waits until the upstream received all of it,
    and returns how many requests that was."""
    requests, sent = forwarded(proxy)
    assert wait_until(lambda: len(upstream.received()) >= sent - before[1], 5), \
        f"the proxy counts {sent - before[1]:.0f} bytes sent, the upstream has {len(upstream.received())}"
    return requests - before[0]


def assert_refused(proxy, upstream, data: bytes, statuses=(400,)) -> None:
    before = forwarded(proxy)
    with HttpClient(proxy.port()) as client:
        client.send(data)
        resp = client.try_read_response()
        assert resp is not None, f"connection closed without a response to {data!r}"
        assert resp.status in statuses, f"expected {statuses} for {data!r}, got {resp}"
        extra = client.wait_closed(5)
        assert extra == b"", (f"connection not closed after {resp.status}: "
                              f"{'still open' if extra is None else extra!r}")
    assert settle(proxy, upstream, before) == 0, f"upstream received {upstream.received()!r}"
    assert upstream.received() == b"", f"upstream received {upstream.received()!r}"


@pytest.mark.parametrize("data", BAD_HEADS.values(), ids=BAD_HEADS.keys())
def test_malformed_request_is_refused_and_not_forwarded(proxy_and_upstream, data):
    assert_refused(*proxy_and_upstream, data + SMUGGLED)


def test_invalid_http_version_is_refused(proxy_and_upstream):
    assert_refused(*proxy_and_upstream, req(HOST, start=b"GET / HTTP/2.0") + SMUGGLED, (400, 505))


def test_too_large_head_is_431(proxy_and_upstream):
    data = build_request("GET", "/", [("X-Big", "a" * (61 * 1024))])
    assert_refused(*proxy_and_upstream, data, (431,))


def test_too_many_header_fields_is_431(proxy_and_upstream):
    data = build_request("GET", "/", [(f"X-F{i}", "v") for i in range(100)])  # 101 with Host
    assert_refused(*proxy_and_upstream, data, (431,))


def test_head_just_within_limits_is_forwarded(proxy_and_upstream):
    proxy, upstream = proxy_and_upstream
    many = [(f"X-F{i}", "v") for i in range(98)]  # 100 fields with Host and X-Big
    with HttpClient(proxy.port()) as client:
        resp = client.request("GET", "/", [*many, ("X-Big", "b" * (50 * 1024))])
    assert resp.status == 200, f"got {resp}"
    [got] = upstream.requests()
    assert got.header("x-big") == "b" * (50 * 1024) and got.header("x-f97") == "v", \
        f"upstream head was {len(got.raw_head)} bytes: {got.raw_head[:200]!r}..."


# Bad chunked framing: the head may already be forwarded (bodies are streamed),
# but the client must get 400 or a closed connection, and the upstream must
# never see the request hidden behind the broken chunk.
BAD_CHUNKS = {
    "size_not_hex": b"zz\r\nhello\r\n0\r\n\r\n",
    "size_negative": b"-1\r\nhello\r\n0\r\n\r\n",
    "size_0x_prefix": b"0x5\r\nhello\r\n0\r\n\r\n",
    "size_leading_space": b" 5\r\nhello\r\n0\r\n\r\n",
    "size_overflow": b"10000000000000005\r\nhello\r\n0\r\n\r\n",
    "size_empty": b"\r\nhello\r\n0\r\n\r\n",
    "data_longer_than_size": b"3\r\nhello\r\n0\r\n\r\n",
    "bare_lf_after_size": b"5\nhello\r\n0\r\n\r\n",
    "bare_lf_in_extension": b"5;ext\nhello\r\n0\r\n\r\n",
    "bare_lf_last_chunk": b"5\r\nhello\r\n0\n\n",
    "bare_lf_after_data": b"5\r\nhello\n0\r\n\r\n",
}


@pytest.mark.parametrize("body", BAD_CHUNKS.values(), ids=BAD_CHUNKS.keys())
def test_bad_chunk_framing_smuggles_nothing(proxy_and_upstream, body):
    proxy, upstream = proxy_and_upstream
    data = req(HOST, CHUNKED) + body + SMUGGLED
    before = forwarded(proxy)
    with HttpClient(proxy.port()) as client:
        client.send(data)
        resp = client.try_read_response()
        assert resp is None or resp.status == 400, f"expected 400 or a closed connection, got {resp}"
        extra = client.wait_closed(5)
        assert extra == b"", (f"connection not closed after a bad chunk: "
                              f"{'still open' if extra is None else extra!r}")
    assert settle(proxy, upstream, before) <= 1, f"the proxy forwarded more than the first request"
    targets = [r.target for r in upstream.requests()]
    assert targets in ([], ["/"]), f"upstream saw requests {targets}; received {upstream.received()!r}"


# Well-framed requests whose bodies look like requests: the upstream must see
# exactly the requests the client sent, bodies intact.
def test_content_length_body_that_looks_like_a_request(proxy_and_upstream):
    proxy, upstream = proxy_and_upstream
    with HttpClient(proxy.port()) as client:
        resp = client.request("POST", "/", body=SMUGGLED)
    assert resp.status == 200, f"got {resp}"
    got = [(r.method, r.target, r.body) for r in upstream.requests()]
    assert got == [("POST", "/", SMUGGLED)], f"upstream saw {got}"


def test_chunked_body_that_looks_like_a_request(proxy_and_upstream):
    proxy, upstream = proxy_and_upstream
    with HttpClient(proxy.port()) as client:
        client.send(req(HOST, CHUNKED) + chunked_body([SMUGGLED[:10], SMUGGLED[10:], b"0\r\n\r\n"]))
        resp = client.read_response()
    assert resp.status == 200, f"got {resp}"
    got = [(r.method, r.target, r.body) for r in upstream.requests()]
    assert got == [("POST", "/", SMUGGLED + b"0\r\n\r\n")], f"upstream saw {got}"


def test_pipelined_requests_arrive_exactly_as_sent(proxy_and_upstream):
    proxy, upstream = proxy_and_upstream
    with HttpClient(proxy.port()) as client:
        client.send(build_request("GET", "/one")
                    + build_request("POST", "/two", body=b"0\r\n\r\nGET /x HTTP/1.1\r\n\r\n")
                    + req(HOST, CHUNKED, start=b"POST /three HTTP/1.1") + chunked_body([b"abc"])
                    + build_request("GET", "/four"))
        statuses = [client.read_response().status for _ in range(4)]
    assert statuses == [200] * 4, f"got {statuses}"
    got = [(r.method, r.target, r.body) for r in upstream.requests()]
    assert got == [("GET", "/one", b""), ("POST", "/two", b"0\r\n\r\nGET /x HTTP/1.1\r\n\r\n"),
                   ("POST", "/three", b"abc"), ("GET", "/four", b"")], f"upstream saw {got}"
