"""`trellis check` on a mesh with mistakes in it: each reported with its
resource and field, exit 1 while any is an error, and "No problems found."
once they are fixed."""

import json
import os
import subprocess

from harness import BIN_DIR, LOCALHOST, call, free_port, sidecar_config, wait_until

TRELLIS = BIN_DIR / "cli" / "trellis"


def check(control, *args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRELLIS_")}
    env.update(TRELLIS_TOKEN_FILE=str(control.admin_token_path), TRELLIS_CA_FILE=str(control.trust_bundle),
               XDG_CONFIG_HOME=str(control.dir / "cli-config"))
    return subprocess.run([TRELLIS, "check", *args, "--server", f"{LOCALHOST}:{control.http_port}"],
                          capture_output=True, text=True, env=env, timeout=30)


def route(name: str, parent: str, backend: str, prefix: str = "/") -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": name},
            "spec": {"parentRefs": [{"group": "", "kind": "Service", "name": parent}],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                                "backendRefs": [{"name": backend, "port": 80}]}]}}


def test_check_reports_each_mistake_until_it_is_fixed(fleet, nginx):
    control = fleet.control_plane()
    inbound = free_port()
    fleet.proxy(sidecar_config(control, "details", instance={"address": f"{LOCALHOST}:{inbound}",
                                                             "app_address": nginx.address(0)}))
    def synced() -> bool:
        return bool((control.proxy_status("details-1") or {}).get("in_sync"))

    assert wait_until(synced, 10)
    result = check(control)
    assert (result.returncode, result.stdout) == (0, "No problems found.\n"), result.stderr

    mistakes = [
        route("to-ghost", "ghost", "ghost"),
        route("first", "details", "details", "/api"),
        route("second", "details", "missing", "/api"),
        {"apiVersion": "trellis.dev/v1alpha1", "kind": "AuthorizationPolicy", "metadata": {"name": "closed"},
         "spec": {"targetRef": {"kind": "Service", "name": "details"}}},
    ]
    for resource in mistakes:
        status, body = control.apply(resource)
        assert status == 201, body
    assert wait_until(lambda: control.status()["pushed_revision"] >= control.status()["revision"] and synced(), 10)
    result = check(control, "-o", "json")
    assert result.returncode == 1, result.stdout + result.stderr
    found = {(f["severity"], f["resource"], f["field"]) for f in json.loads(result.stdout)}
    assert found == {
        ("warning", "HTTPRoute default/to-ghost", "spec.parentRefs[0]"),
        ("error", "HTTPRoute default/to-ghost", "spec.rules[0].backendRefs[0]"),
        ("error", "HTTPRoute default/second", "spec.rules[0].backendRefs[0]"),
        ("warning", "HTTPRoute default/second", "spec.rules[0].matches[0]"),
        ("error", "Service details.default", ""),
    }, result.stdout
    table = check(control).stdout
    assert table.splitlines()[0].split() == ["SEVERITY", "RESOURCE", "FIELD", "PROBLEM"]
    assert "every request to it is refused" in table

    for kind, name in (("httproutes", "to-ghost"), ("httproutes", "second"), ("authorizationpolicies", "closed")):
        status, body = control.request("DELETE", f"/v1/resources/{kind}/default/{name}")
        assert status == 200, body
    assert wait_until(lambda: control.status()["pushed_revision"] >= control.status()["revision"] and synced(), 10)
    result = check(control)
    assert (result.returncode, result.stdout) == (0, "No problems found.\n"), result.stdout + result.stderr
