"""Traffic management configured the way a mesh user does it: HTTPRoute,
DestinationPolicy and FaultInjection resources applied to trellis-control,
translated for a real sidecar, and observed on real nginx instances."""

import http.client
import subprocess

import pytest

from harness import LOCALHOST, free_port, http_responder, http_response, sidecar_config, wait_until

ROUTE_API = "gateway.networking.k8s.io/v1"
TRELLIS_API = "trellis.dev/v1alpha1"


class Client:
    """One keep-alive connection to the application's outbound sidecar port."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection(LOCALHOST, port, timeout=5)

    def get(self, path: str, host: str = "reviews", headers: dict | None = None, method: str = "GET",
            body: bytes | None = None) -> tuple[int, dict, bytes]:
        try:
            self.conn.request(method, path, body=body, headers={"Host": host, **(headers or {})})
            resp = self.conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        except (OSError, http.client.HTTPException):
            self.conn.close()
            return 0, {}, b""

    def close(self) -> None:
        self.conn.close()


def served_port(body: bytes) -> int:
    for line in body.decode().splitlines():
        if line.startswith("port="):
            return int(line[5:])
    raise AssertionError(f"no port in {body!r}")


def apply(control, resource: dict) -> None:
    status, body = control.apply(resource)
    assert status in (200, 201), f"apply {resource['kind']}/{resource['metadata']['name']}: {status} {body}"


@pytest.fixture
def reviews(fleet):
    """reviews with two instances told apart by their version label (two nginx
    ports), and productpage's sidecar calling it."""
    control = fleet.control_plane()
    nginx = fleet.nginx(ports=2)
    v1, v2 = (int(nginx.address(i).rsplit(":", 1)[1]) for i in range(2))
    control.register("reviews", nginx.address(0), labels={"version": "v1"}, ttl_seconds=120)
    control.register("reviews", nginx.address(1), labels={"version": "v2"}, ttl_seconds=120)
    outbound = free_port()
    fleet.proxy(sidecar_config(control, "productpage", outbound_port=outbound, upstream_services=["reviews"]))
    client = Client(outbound)
    assert wait_until(lambda: client.get("/")[0] == 200, 10), "reviews not reachable through the sidecar"
    yield control, client, v1, v2
    client.close()


def subsets_policy(**spec) -> dict:
    return {"apiVersion": TRELLIS_API, "kind": "DestinationPolicy", "metadata": {"name": "reviews"},
            "spec": {"targetRef": {"kind": "Service", "name": "reviews"},
                     "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                 {"name": "v2", "labels": {"version": "v2"}}], **spec}}


def subset(name: str, weight: int = 1) -> dict:
    return {"group": "trellis.dev", "kind": "Subset", "name": f"reviews/{name}", "port": 9080, "weight": weight}


def route(rules: list[dict], name: str = "reviews") -> dict:
    return {"apiVersion": ROUTE_API, "kind": "HTTPRoute", "metadata": {"name": name},
            "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": "reviews"}], "rules": rules}}


def wait_for_route(client: Client, check, what: str) -> None:
    assert wait_until(check, 10), f"the sidecar never applied {what}"


def test_canary_split_by_version_label_and_header(reviews):
    control, client, v1, v2 = reviews
    apply(control, subsets_policy(loadBalancer={"algorithm": "RoundRobin"}))
    apply(control, route([
        {"matches": [{"headers": [{"name": "x-canary", "value": "always"}]}], "backendRefs": [subset("v2")]},
        {"backendRefs": [subset("v1", 90), subset("v2", 10)]},
    ]))
    wait_for_route(client, lambda: served_port(client.get("/", headers={"x-canary": "always"})[2]) == v2,
                   "the header canary route")
    assert all(served_port(client.get("/", headers={"X-Canary": "always"})[2]) == v2 for _ in range(50)), \
        "a request with the canary header reached v1"
    n = 10_000
    on_v2 = 0
    for _ in range(n):
        status, _, body = client.get("/")
        assert status == 200, f"split request failed: {status} {body!r}"
        on_v2 += served_port(body) == v2
    share = 100.0 * on_v2 / n
    assert abs(share - 10.0) <= 2.0, f"v2 got {share:.2f}% of {n} requests, configured 10%"

    # Moving the weights moves the traffic: 0/100.
    apply(control, route([{"backendRefs": [subset("v1", 0), subset("v2", 100)]}]))
    wait_for_route(client, lambda: all(served_port(client.get("/")[2]) == v2 for _ in range(20)), "0/100")


def test_a_subset_that_does_not_exist_answers_500_for_its_share(reviews):
    control, client, v1, v2 = reviews
    apply(control, route([{"backendRefs": [subset("v3")]}]))
    wait_for_route(client, lambda: client.get("/")[0] == 500, "the route to a missing subset")
    status, _, body = client.get("/")
    assert (status, body) == (500, b"backend not found\n")


def test_matches_filters_and_redirects_from_an_httproute(reviews):
    control, client, v1, v2 = reviews
    apply(control, route([
        {"matches": [{"path": {"type": "PathPrefix", "value": "/old"}}],
         "filters": [{"type": "RequestRedirect",
                      "requestRedirect": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"},
                                          "statusCode": 301}}]},
        {"matches": [{"path": {"type": "RegularExpression", "value": "/items/[0-9]+"}, "method": "GET"}],
         "filters": [{"type": "URLRewrite",
                      "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/echo-headers"}}},
                     {"type": "RequestHeaderModifier",
                      "requestHeaderModifier": {"set": [{"name": "x-secret", "value": "from-route"}]}},
                     {"type": "ResponseHeaderModifier",
                      "responseHeaderModifier": {"add": [{"name": "x-route", "value": "items"}]}}],
         "backendRefs": [{"name": "reviews", "port": 9080}]},
    ]))
    wait_for_route(client, lambda: client.get("/old/a?b=1")[0] == 301, "the redirect")
    status, headers, _ = client.get("/old/a?b=1")
    assert headers.get("location") == "http://reviews/new/a?b=1", headers

    status, headers, body = client.get("/items/42")
    assert status == 200 and b"secret=from-route" in body and b"uri=/echo-headers" in body, body
    assert headers.get("x-route") == "items", headers
    # Not a number: the regex does not match, and no other rule does: a
    # Service with routes is served by them alone, so that is a 404.
    status, headers, body = client.get("/items/abc")
    assert status == 404 and body == b"no route\n" and "x-route" not in headers, (status, body)
    # A POST does not match the GET-only rule.
    status, headers, body = client.get("/items/42", method="POST", body=b"x")
    assert status == 404, (status, body)


def curl_headers(port: int, path: str, *args: str) -> tuple[int, dict]:
    """Status and response headers (lower-case names) of one curl request."""
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-D", "-", "--max-time", "5", *args,
                          f"http://{LOCALHOST}:{port}{path}"], capture_output=True, text=True, timeout=10).stdout
    lines = out.replace("\r", "").split("\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    return status, {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:] if ":" in l)}


def test_cors_filter_answers_preflights_and_names_allowed_origins(reviews):
    control, client, v1, v2 = reviews
    apply(control, route([{"filters": [{"type": "CORS", "cors": {
        "allowOrigins": ["https://*.shop.example"], "allowMethods": ["GET", "PUT"],
        "allowHeaders": ["x-user"], "exposeHeaders": ["x-total"], "maxAge": 120}}],
        "backendRefs": [{"name": "reviews", "port": 9080}]}]))
    port = client.conn.port
    preflight = ["-X", "OPTIONS", "-H", "Host: reviews", "-H", "Access-Control-Request-Method: PUT"]
    wait_for_route(client, lambda: curl_headers(port, "/items", *preflight, "-H", "Origin: https://a.shop.example")
                   [1].get("access-control-allow-origin") == "https://a.shop.example", "the CORS filter")
    status, headers = curl_headers(port, "/items", *preflight, "-H", "Origin: https://a.shop.example")
    assert status == 200, status
    assert headers["access-control-allow-methods"] == "GET,PUT" and headers["access-control-allow-headers"] == "x-user"
    assert headers["access-control-max-age"] == "120", headers
    assert "server" not in headers or "nginx" not in headers["server"], "the preflight reached the application"
    status, headers = curl_headers(port, "/items", *preflight, "-H", "Origin: https://evil.example")
    assert status == 200 and not any(k.startswith("access-control-") for k in headers), headers
    # The request itself reaches nginx; its response names the origin.
    status, headers = curl_headers(port, "/items", "-H", "Host: reviews", "-H", "Origin: https://a.shop.example")
    assert status == 200 and headers["access-control-allow-origin"] == "https://a.shop.example", headers
    assert headers["access-control-expose-headers"] == "x-total" and "nginx" in headers.get("server", ""), headers
    status, headers = curl_headers(port, "/items", "-H", "Host: reviews", "-H", "Origin: https://evil.example")
    assert status == 200 and "access-control-allow-origin" not in headers, headers


def test_fault_injection_from_an_extension_ref(reviews):
    control, client, v1, v2 = reviews
    apply(control, {"apiVersion": TRELLIS_API, "kind": "FaultInjection", "metadata": {"name": "teapot"},
                    "spec": {"abort": {"httpStatus": 418, "percent": 100}}})
    apply(control, route([
        {"matches": [{"path": {"type": "PathPrefix", "value": "/broken"}}],
         "filters": [{"type": "ExtensionRef",
                      "extensionRef": {"group": "trellis.dev", "kind": "FaultInjection", "name": "teapot"}}],
         "backendRefs": [{"name": "reviews", "port": 9080}]},
    ]))
    wait_for_route(client, lambda: client.get("/broken")[0] == 418, "the fault")
    assert client.get("/broken")[2] == b"fault filter abort\n"
    assert client.get("/fine")[0] == 404, "no rule takes it"


def test_retries_from_a_destination_policy_hide_a_failing_instance(fleet):
    control = fleet.control_plane()
    nginx = fleet.nginx()
    failing = fleet.upstream(http_responder(http_response(503, b"down\n")))
    control.register("ratings", nginx.address(0), ttl_seconds=120)
    control.register("ratings", f"{LOCALHOST}:{failing.port}", ttl_seconds=120)
    outbound = free_port()
    fleet.proxy(sidecar_config(control, "productpage", outbound_port=outbound, upstream_services=["ratings"]))
    client = Client(outbound)
    assert wait_until(lambda: client.get("/hello", host="ratings")[0] in (200, 503), 10)
    apply(control, {"apiVersion": TRELLIS_API, "kind": "DestinationPolicy", "metadata": {"name": "ratings"},
                    "spec": {"targetRef": {"kind": "Service", "name": "ratings"},
                             "loadBalancer": {"algorithm": "RoundRobin"},
                             "retries": {"attempts": 2, "retryOn": ["gateway-error"],
                                         "backoff": {"baseInterval": "1ms"},
                                         "budget": {"percent": 100, "minRetriesPerSecond": 100}}}})

    def all_ok() -> bool:
        return all(client.get("/hello", host="ratings")[0] == 200 for _ in range(20))

    assert wait_until(all_ok, 10), "requests to the failing instance were not retried on the good one"
    statuses = [client.get("/hello", host="ratings")[0] for _ in range(100)]
    assert statuses.count(200) == 100, f"not every request succeeded: {statuses}"
    client.close()


def test_rate_limit_policy_on_a_service_is_enforced_by_its_sidecar(fleet):
    control = fleet.control_plane()
    nginx = fleet.nginx()
    inbound = free_port()
    fleet.proxy(sidecar_config(control, "details", instance={"address": f"{LOCALHOST}:{inbound}",
                                                             "app_address": nginx.address(0), "ttl": "5s"}))
    outbound = free_port()
    fleet.proxy(sidecar_config(control, "productpage", outbound_port=outbound, upstream_services=["details"]))
    client = Client(outbound)
    assert wait_until(lambda: client.get("/hello", host="details")[0] == 200, 10)
    apply(control, {"apiVersion": TRELLIS_API, "kind": "RateLimitPolicy", "metadata": {"name": "details"},
                    "spec": {"targetRef": {"kind": "Service", "name": "details"},
                             "limits": [{"name": "per-client", "key": {"source": "Address"},
                                         "tokenBucket": {"requestsPerUnit": 5, "unit": "Hour"}}]}})

    def limited() -> bool:
        return client.get("/hello", host="details")[0] == 429

    assert wait_until(limited, 10), "the details sidecar never enforced the RateLimitPolicy"
    status, headers, body = client.get("/hello", host="details")
    assert status == 429 and body == b"rate limited: per-client\n" and "retry-after" in headers, (status, body)
    client.close()
