"""The `trellis` mesh commands against a real trellis-control: apply, get,
delete, register/heartbeat/deregister, status and token, the errors a user
meets (refused fields, YAML syntax, stale resourceVersion, no server, no or a
refused token), and state that survives a restart of the control plane."""

import json
import os
import re
import signal
from pathlib import Path

import pytest

from harness import (BIN_DIR, LOCALHOST, SOURCE_DIR, free_port, plain_http_answer, run, sidecar_config, tail,
                     wait_until)

TRELLIS = BIN_DIR / "cli" / "trellis"
EXAMPLES = SOURCE_DIR / "examples" / "mesh"
# Plural (what `get` takes) -> kind as apply prints it.
KINDS = {"httproutes": "httproute", "destinationpolicies": "destinationpolicy",
         "ratelimitpolicies": "ratelimitpolicy", "authorizationpolicies": "authorizationpolicy",
         "meshconfigs": "meshconfig", "faultinjections": "faultinjection",
         "referencegrants": "referencegrant"}


def example_resources() -> set[str]:
    """The "kind/name" of every example, read from the files without a YAML
    library: each example is one document with a top-level kind and metadata.name."""
    labels = set()
    for path in EXAMPLES.glob("*.yaml"):
        text = path.read_text()
        kind = re.search(r"^kind: *(\S+)", text, re.M).group(1)
        name = re.search(r"^metadata:\n(?:  .*\n)*?  name: *(\S+)", text, re.M).group(1)
        labels.add(f"{kind.lower()}/{name}")
    return labels


@pytest.fixture
def control(fleet):
    """trellis-control on fresh ports; it must stop cleanly (exit 0 on SIGTERM)."""
    if not TRELLIS.exists():
        pytest.fail(f"{TRELLIS} does not exist: build the trellis target first")
    c = fleet.control_plane()
    yield c
    if c.service.running():
        stop(c)


def stop(control) -> None:
    code = control.stop(signal.SIGTERM)
    assert code == 0, f"trellis-control exited with {code} on SIGTERM:\n{tail(control.service.stderr())}"


TOKEN_VARIABLES = ("TRELLIS_SERVER", "TRELLIS_TOKEN", "TRELLIS_TOKEN_FILE", "TRELLIS_CA_FILE", "XDG_CONFIG_HOME")


class Cli:
    """The trellis command pointed at one control plane, with its admin token
    (TRELLIS_TOKEN_FILE) unless told otherwise. The user's own configuration
    (~/.config/trellis/token) is kept out of the way."""

    def __init__(self, server: str, cwd: Path, token_file: Path | None, ca_file: Path | None = None):
        self.server = server
        self.cwd = cwd
        self.token_file = token_file
        self.ca_file = ca_file

    def __call__(self, *args, stdin: str | None = None, env: dict | None = None, server: bool = True,
                 token: bool = True):
        """Runs trellis with --server (unless `server` is false: then the
        environment, `env` included, decides) and the admin token (unless
        `token` is false)."""
        argv = [TRELLIS, *args] + (["--server", self.server] if server else [])
        full_env = {k: v for k, v in os.environ.items() if k not in TOKEN_VARIABLES}
        full_env["XDG_CONFIG_HOME"] = str(self.cwd / "config")
        if token and self.token_file:
            full_env["TRELLIS_TOKEN_FILE"] = str(self.token_file)
        if self.ca_file:
            full_env["TRELLIS_CA_FILE"] = str(self.ca_file)
        full_env.update(env or {})
        result = run(argv, timeout=30, input=stdin.encode() if stdin is not None else None, cwd=self.cwd,
                     env=full_env)
        result.out = result.stdout.decode(errors="replace")
        result.err = result.stderr.decode(errors="replace")
        return result

    def ok(self, *args, **kwargs):
        result = self(*args, **kwargs)
        assert result.returncode == 0, (f"trellis {' '.join(map(str, args))} exited {result.returncode}\n"
                                        f"stdout: {result.out}\nstderr: {result.err}")
        return result


@pytest.fixture
def cli(control, fleet):
    return Cli(f"{LOCALHOST}:{control.http_port}", fleet.subdir("cli"), control.admin_token_path,
               control.trust_bundle)


def results(output: str) -> dict[str, str]:
    """apply/delete output "kind/name result" lines as {kind/name: result}."""
    return dict(line.split(" ", 1) for line in output.splitlines() if line.strip())


# --------------------------------------------------------------------- apply / get


def test_every_example_applies_then_is_unchanged(cli):
    expected = example_resources()
    assert len(expected) == len(list(EXAMPLES.glob("*.yaml")))
    first = cli.ok("apply", "-f", EXAMPLES)
    assert results(first.out) == {label: "created" for label in expected}, first.out
    again = cli.ok("apply", "-f", EXAMPLES)
    assert results(again.out) == {label: "unchanged" for label in expected}, again.out


def test_apply_reads_several_documents_and_stdin(cli, fleet):
    folder = fleet.subdir("multi")
    text = "\n---\n".join(p.read_text() for p in sorted(EXAMPLES.glob("*route.yaml")))
    (folder / "routes.yml").write_text(text + "\n---\n")
    out = cli.ok("apply", "-f", folder / "routes.yml").out
    assert results(out) == {"httproute/reviews-canary": "created", "httproute/reviews-subsets": "created"}
    out = cli.ok("apply", "-f", "-", stdin=text).out
    assert set(results(out).values()) == {"unchanged"}


def test_get_tables_show_names_summaries_and_versions(cli):
    cli.ok("apply", "-f", EXAMPLES)
    # The canary's backends exist once an instance of each is registered.
    for version in ("v1", "v2"):
        cli.ok("register", f"reviews-{version}", "--address", "10.1.2.3:9080", "-n", "bookinfo", "--ttl", "1h")
    table = cli.ok("get", "httproutes", "-A").out
    lines = table.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "PARENTS", "BACKENDS", "REFS", "VERSION"], table
    canary = next(line for line in lines if "reviews-canary" in line)
    assert "bookinfo" in canary and "reviews:9080" in canary and "reviews-v1=90,reviews-v2=10" in canary, table
    assert canary.split()[-2] == "ok", f"the canary's backends are all resolved: {canary!r}"
    assert re.search(r"\s\d+$", canary), f"no VERSION in {canary!r}"

    # Without -n or -A: the default namespace, where the examples are not.
    empty = cli.ok("get", "httproutes")
    assert empty.out == "" and "No httproutes found in namespace default" in empty.err

    for plural, kind in KINDS.items():
        table = cli.ok("get", plural, "-A").out
        header = table.splitlines()[0].split()
        assert header[0] == ("NAME" if kind == "meshconfig" else "NAMESPACE"), table  # MeshConfig has none
        assert header[-1] == "VERSION", table
        names = {label.split("/")[1] for label in example_resources() if label.startswith(kind + "/")}
        assert {line.split()[0 if kind == "meshconfig" else 1] for line in table.splitlines()[1:]} == names, table

    policy = cli.ok("get", "destinationpolicy", "reviews", "-n", "bookinfo").out
    assert "v1,v2" in policy and "LeastRequest" in policy, policy
    mesh = cli.ok("get", "MeshConfig", "default").out
    assert "PERMISSIVE" in mesh and "cluster.local" in mesh, mesh
    faults = cli.ok("get", "faultinjections", "-n", "bookinfo").out
    assert faults.splitlines()[0].split() == ["NAME", "ABORT", "DELAY", "VERSION"], faults
    assert "503 at 10%" in faults and "2s at 50%" in faults, faults


def test_get_yaml_and_json_reapply_cleanly(cli, fleet):
    cli.ok("apply", "-f", EXAMPLES)
    folder = fleet.subdir("out")
    for kind in KINDS:
        yaml_text = cli.ok("get", kind, "-A", "-o", "yaml").out
        assert "resourceVersion: \"" in yaml_text, yaml_text  # a string, as the API wants it
        path = folder / f"{kind}.yaml"
        path.write_text(yaml_text)
        again = cli.ok("apply", "-f", path)
        assert results(again.out) and set(results(again.out).values()) == {"unchanged"}, again.out

        listing = json.loads(cli.ok("get", kind, "-A", "-o", "json").out)
        assert listing["items"], listing
        assert all(item["metadata"]["resourceVersion"].isdigit() for item in listing["items"])
        piped = cli.ok("apply", "-f", "-", stdin=json.dumps(listing))
        assert set(results(piped.out).values()) == {"unchanged"}, piped.out

    one = json.loads(cli.ok("get", "httproute", "reviews-canary", "-n", "bookinfo", "-o", "json").out)
    assert one["kind"] == "HTTPRoute"
    weights = [b["weight"] for b in one["spec"]["rules"][1]["backendRefs"]]
    assert weights == [90, 10], "YAML numbers must arrive as JSON numbers"
    assert one["spec"]["rules"][0]["matches"][0]["headers"][0]["value"] == "always"


def test_get_unknown_kind_or_name(cli):
    unknown = cli("get", "gateways")
    assert unknown.returncode == 1 and "unknown kind" in unknown.err and "HTTPRoute" in unknown.err, unknown.err
    missing = cli("get", "httproute", "nope", "-n", "bookinfo")
    assert missing.returncode == 1 and "httproute/nope not found in namespace bookinfo" in missing.err, missing.err


# ------------------------------------------------------------------ refusals


BAD_ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: bad-route
  namespace: bookinfo
spec:
  parentRefs:
    - group: ""
      kind: Service
      name: reviews
  rules:
    - backendRefs:
        - name: reviews-v1
          port: 9080
          weight: -5
---
apiVersion: trellis.dev/v1alpha1
kind: MeshConfig
metadata:
  name: default
spec:
  mtls:
    mode: PERMISSIVE
"""


def test_refused_resource_shows_its_field_path_and_the_rest_still_applies(cli, fleet):
    path = fleet.subdir("bad") / "bad.yaml"
    path.write_text(BAD_ROUTE)
    result = cli("apply", "-f", path)
    assert result.returncode == 1, result.out + result.err
    assert "httproute/bad-route refused" in result.err, result.err
    assert f"{path}:15: spec.rules[0].backendRefs[0].weight: " in result.err, \
        f"the field's path and line should be named:\n{result.err}"
    assert results(result.out) == {"meshconfig/default": "created"}, result.out
    assert cli("get", "httproute", "bad-route", "-n", "bookinfo").returncode == 1


def test_yaml_syntax_error_names_file_and_line_and_sends_nothing(cli, fleet):
    folder = fleet.subdir("broken")
    (folder / "a-good.yaml").write_text((EXAMPLES / "mesh-config.yaml").read_text())
    (folder / "b-broken.yaml").write_text("apiVersion: v1\nkind: HTTPRoute\nmetadata: {name: [x\nspec: {}\n")
    result = cli("apply", "-f", folder)
    assert result.returncode == 1
    assert re.search(re.escape(str(folder / "b-broken.yaml")) + r":\d+: ", result.err), result.err
    assert result.out == "", "nothing may be applied when a file does not parse"
    assert cli("get", "meshconfig", "default").returncode == 1


def test_stale_resource_version_is_a_conflict(cli, fleet):
    cli.ok("apply", "-f", EXAMPLES / "mesh-config.yaml")
    stale = cli.ok("get", "meshconfig", "default", "-o", "yaml").out
    assert "resourceVersion:" in stale
    # Someone else changes it...
    changed = (EXAMPLES / "mesh-config.yaml").read_text().replace("samplingPercent: 1", "samplingPercent: 5")
    assert "updated" in cli.ok("apply", "-f", "-", stdin=changed).out
    # ...and an edit of the old copy is refused, not silently overwriting theirs.
    path = fleet.subdir("stale") / "mesh.yaml"
    path.write_text(stale.replace("PERMISSIVE", "DISABLE"))
    result = cli("apply", "-f", path)
    assert result.returncode == 1, result.out + result.err
    assert "conflict" in result.err, result.err
    assert "PERMISSIVE" in cli.ok("get", "meshconfig", "default").out


def test_a_trust_domain_the_ca_does_not_issue_for_is_refused(cli):
    other = (EXAMPLES / "mesh-config.yaml").read_text().replace("trustDomain: cluster.local",
                                                                 "trustDomain: example.org")
    assert "example.org" in other
    result = cli("apply", "-f", "-", stdin=other)
    assert result.returncode == 1, result.out + result.err
    assert "spec.trustDomain: the mesh CA issues identities in trust domain cluster.local, not example.org" \
        in result.err, result.err
    assert cli("get", "meshconfig", "default").returncode == 1, "nothing was stored"


# ---------------------------------------------------------------------- delete


def test_delete_by_name_and_by_file(cli):
    cli.ok("apply", "-f", EXAMPLES)
    out = cli.ok("delete", "httproutes", "reviews-canary", "-n", "bookinfo").out
    assert out.strip() == "httproute/reviews-canary deleted"
    assert cli("get", "httproute", "reviews-canary", "-n", "bookinfo").returncode == 1

    again = cli("delete", "httproute", "reviews-canary", "-n", "bookinfo")
    assert again.returncode == 1 and "not found" in again.err, again.err
    cli.ok("delete", "httproute", "reviews-canary", "-n", "bookinfo", "--ignore-not-found")

    out = cli.ok("delete", "-f", EXAMPLES / "reviews-rate-limit.yaml").out
    assert out.strip() == "ratelimitpolicy/reviews deleted"
    out = cli.ok("delete", "meshconfig", "default").out  # cluster-scoped: no namespace
    assert out.strip() == "meshconfig/default deleted"
    remaining = cli.ok("get", "httproutes", "-A").out
    assert "reviews-subsets" in remaining and "reviews-canary" not in remaining


# -------------------------------------------------------------------- registry


def test_register_endpoints_heartbeat_deregister(cli):
    instance_id = cli.ok("register", "reviews", "--address", "10.1.2.3:9080", "-n", "bookinfo", "--zone", "z1",
                         "--weight", "3", "--label", "version=v2", "--ttl", "2m").out.strip()
    assert re.fullmatch(r"reviews-[0-9a-f]{8}", instance_id), instance_id
    cli.ok("register", "reviews", "--address", "10.1.2.4:9080", "-n", "bookinfo", "--id", "reviews-b")

    table = cli.ok("get", "endpoints", "reviews", "-n", "bookinfo").out
    lines = table.splitlines()
    assert lines[0].split() == ["ID", "ADDRESS", "ZONE", "WEIGHT", "LABELS", "TTL"], table
    row = next(line.split() for line in lines if line.startswith(instance_id))
    assert row == [instance_id, "10.1.2.3:9080", "z1", "3", "version=v2", "120s"], table
    assert any(line.startswith("reviews-b ") for line in lines), table

    services = cli.ok("get", "services").out
    assert re.search(r"^bookinfo\s+reviews\s+2$", services, re.M), services

    beat = cli.ok("heartbeat", instance_id)
    assert "renewed for 120s" in beat.out
    cli.ok("deregister", instance_id)
    gone = cli("heartbeat", instance_id)
    assert gone.returncode == 1 and "not registered" in gone.err, gone.err
    assert cli("deregister", instance_id).returncode == 1
    left = json.loads(cli.ok("get", "endpoints", "reviews", "-n", "bookinfo", "-o", "json").out)
    assert [i["id"] for i in left["instances"]] == ["reviews-b"]


def test_register_refusals(cli):
    bad = cli("register", "reviews", "--address", "not-an-address")
    assert bad.returncode == 1 and "address" in bad.err, bad.err
    assert cli("register", "reviews", "--address", "10.0.0.1:80", "--ttl", "1.5s").returncode == 2
    assert cli("register", "reviews", "--address", "10.0.0.1:80", "--label", "novalue").returncode == 2
    assert cli("register", "reviews").returncode == 2  # --address is required


# ---------------------------------------------------------------------- status


def test_status_without_proxies(cli):
    out = cli.ok("status").out
    assert "No proxies connected" in out, out
    status = json.loads(cli.ok("status", "-o", "json").out)
    assert status["proxies"] == [] and isinstance(status["revision"], int)


def test_status_lists_a_connected_proxy(cli, control, fleet):
    fleet.proxy(sidecar_config(control, "productpage", node_id="cli-test-node"))

    def synced_row():
        out = cli.ok("status").out
        return next((line.split() for line in out.splitlines() if line.startswith("cli-test-node")), None)

    row = wait_until(lambda: (r := synced_row()) and r[4] == "yes" and r, 10)
    assert row, cli("status").out
    node, service, namespace, version, synced = row[:5]
    assert (service, namespace, synced) == ("productpage", "default", "yes")
    acked, sent = version.split("/")
    assert acked == sent, row


# ---------------------------------------------------------------------- errors


def test_unreachable_server_is_a_clear_failure(cli):
    port = free_port()
    for args in (["status"], ["get", "httproutes"], ["apply", "-f", EXAMPLES], ["register", "a", "--address",
                                                                                 "10.0.0.1:1"]):
        result = cli(*args, "--server", f"{LOCALHOST}:{port}", server=False)
        assert result.returncode == 1, f"{args}: {result.returncode} {result.err}"
        assert f"cannot reach trellis-control at {LOCALHOST}:{port}: Connection refused" in result.err, result.err
    # The environment names the server when --server does not.
    by_env = cli("status", server=False, env={"TRELLIS_SERVER": f"{LOCALHOST}:{port}"})
    assert by_env.returncode == 1 and f"{LOCALHOST}:{port}" in by_env.err
    assert cli("status", server=False, env={"TRELLIS_SERVER": cli.server}).returncode == 0


def test_the_api_is_tls_only_and_its_certificate_is_checked(cli, fleet):
    """The CLI checks trellis-control's certificate against the mesh's trust
    bundle: without one it says where to get it, with another CA's roots it
    refuses to talk; plain HTTP gets no answer from the API."""
    no_ca = Cli(cli.server, cli.cwd, cli.token_file)
    result = no_ca("status")
    assert result.returncode == 2, result.out + result.err
    assert "serves its API over TLS" in result.err and "TRELLIS_CA_FILE" in result.err, result.err
    other = fleet.subdir("other-ca") / "root.pem"
    run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(other.with_suffix(".key")), "-out", str(other), "-subj", "/CN=other", "-days", "1"])
    result = Cli(cli.server, cli.cwd, cli.token_file, other)("status")
    assert result.returncode == 1, result.out + result.err
    assert "its certificate was refused" in result.err, result.err
    assert "http://" in cli("status", "--server", "http://" + cli.server, server=False).err
    answer = plain_http_answer(int(cli.server.rsplit(":", 1)[1]))
    assert not answer.startswith(b"HTTP/"), answer


def test_usage_errors_exit_2(cli):
    for args in (["get"], ["get", "httproutes", "-o", "xml"], ["apply"], ["delete", "httproute"],
                 ["get", "httproutes", "x", "-A"], ["status", "--server", "nonsense"]):
        result = cli(*args, server=False, env={"TRELLIS_SERVER": cli.server})
        assert result.returncode == 2, f"{args}: exit {result.returncode}\n{result.out}{result.err}"


# ------------------------------------------------------------------- restart


def test_state_survives_a_restart(cli, control):
    cli.ok("apply", "-f", EXAMPLES)
    instance_id = cli.ok("register", "ratings", "--address", "10.9.9.9:9080", "--ttl", "1h").out.strip()
    before = {kind: json.loads(cli.ok("get", kind, "-A", "-o", "json").out) for kind in KINDS}

    stop(control)
    assert cli("status").returncode == 1
    control.start()  # same data directory

    after = {kind: json.loads(cli.ok("get", kind, "-A", "-o", "json").out) for kind in KINDS}
    assert after == before
    endpoints = cli.ok("get", "endpoints", "ratings").out
    assert instance_id in endpoints and "10.9.9.9:9080" in endpoints, endpoints
    again = cli.ok("apply", "-f", EXAMPLES)
    assert set(results(again.out).values()) == {"unchanged"}, again.out


# ---------------------------------------------------------------------- tokens


def secret_of(result) -> str:
    """The secret `token create` printed: alone on stdout."""
    lines = result.out.splitlines()
    assert len(lines) == 1 and re.fullmatch(r"trellis-tok-[0-9a-f]{8}-[A-Za-z0-9_-]{43}", lines[0]), result.out
    return lines[0]


def test_token_create_list_revoke(cli, control, fleet):
    created = cli.ok("token", "create", "--kind", "read-only", "--description", "dashboards")
    secret = secret_of(created)
    token_id = secret[len("trellis-"):len("trellis-tok-01234567")]
    assert f"token {token_id} created (read-only; never expires)" in created.err, created.err
    assert "not shown again" in created.err, created.err

    listing = cli.ok("token", "list").out
    assert listing.splitlines()[0].split() == ["ID", "KIND", "NAMESPACE", "SERVICE", "ACCOUNT", "STATE", "CREATED",
                                               "EXPIRES", "DESCRIPTION"], listing
    row = next(line.split() for line in listing.splitlines() if line.startswith(token_id))
    assert row[1:5] == ["read-only", "-", "-", "active"] and row[-1] == "dashboards", listing
    assert secret[21:] not in listing and secret[21:] not in cli.ok("token", "list", "-o", "json").out
    assert "bootstrap" in cli.ok("token", "list", "-o", "json").out, "the admin token written at start is listed"

    path = fleet.subdir("tokens") / "read-only"
    path.write_text(secret + "\n")
    as_reader = cli.ok("get", "httproutes", "-A", "--token-file", path, token=False)
    assert as_reader.returncode == 0
    refused = cli("apply", "-f", EXAMPLES / "mesh-config.yaml", "--token-file", path, token=False)
    assert refused.returncode == 1 and "read-only" in refused.err, refused.err
    assert cli("token", "list", "--token-file", path, token=False).returncode == 1, "tokens need an admin token"

    assert cli.ok("token", "revoke", token_id).out.strip() == f"token {token_id} revoked"
    revoked = cli("get", "httproutes", "-A", "--token-file", path, token=False)
    assert revoked.returncode == 1, revoked.err
    assert f"refused the token from --token-file {path}: unauthorized: token {token_id} was revoked" in revoked.err, \
        revoked.err
    assert secret[21:] not in revoked.err + revoked.out
    assert re.search(rf"^{token_id}\s.*\srevoked\s", cli.ok("token", "list").out, re.M)
    missing = cli("token", "revoke", "tok-00000000")
    assert missing.returncode == 1 and "not found" in missing.err, missing.err
    assert secret[21:] not in control.service.stderr(), "a secret reached the log"


def test_join_tokens_are_bound_and_need_a_ttl(cli):
    created = cli.ok("token", "create", "--kind", "join", "-n", "bookinfo", "--service-account", "reviews",
                     "--ttl", "30m")
    secret = secret_of(created)
    assert "join: namespace bookinfo, service account reviews; expires " in created.err, created.err
    listed = json.loads(cli.ok("token", "list", "-o", "json").out)["tokens"]
    join = next(t for t in listed if t["kind"] == "join")
    assert (join["namespace"], join["serviceAccount"], join["state"]) == ("bookinfo", "reviews", "active")
    # A join token is for a sidecar's first connection: nothing on the API.
    forbidden = cli("status", env={"TRELLIS_TOKEN": secret}, token=False)
    assert forbidden.returncode == 1 and "join token" in forbidden.err, forbidden.err

    no_ttl = cli("token", "create", "--kind", "join", "-n", "bookinfo", "--service-account", "reviews")
    assert no_ttl.returncode == 1 and "ttl: required for a join token" in no_ttl.err, no_ttl.err
    bound = cli("token", "create", "--kind", "admin", "-n", "bookinfo")
    assert bound.returncode == 1 and "namespace: only join tokens" in bound.err, bound.err
    assert cli("token", "create", "--kind", "root").returncode == 2
    assert cli("token", "create", "--kind", "read-only", "--ttl", "soon").returncode == 1


def test_where_the_token_comes_from(cli, fleet):
    admin = cli.token_file.read_text().strip()
    none = cli("status", token=False)
    assert none.returncode == 1, none.err
    assert "needs a token" in none.err and "--token-file" in none.err and "TRELLIS_TOKEN" in none.err, none.err

    assert cli("status", env={"TRELLIS_TOKEN": admin}, token=False).returncode == 0
    config = cli.cwd / "config" / "trellis"
    config.mkdir(parents=True)
    (config / "token").write_text(admin + "\n")
    assert cli("status", token=False).returncode == 0, "the default file is read"
    # The flag comes first, then TRELLIS_TOKEN, then TRELLIS_TOKEN_FILE.
    bad = fleet.subdir("bad") / "token"
    bad.write_text("trellis-tok-00000000-" + "A" * 43)
    assert cli("status", "--token-file", bad, env={"TRELLIS_TOKEN": admin}).returncode == 1
    assert cli("status", env={"TRELLIS_TOKEN": admin, "TRELLIS_TOKEN_FILE": str(bad)}).returncode == 0

    gone = cli("status", "--token-file", fleet.dir / "no-such-file")
    assert gone.returncode == 2 and "cannot read the token file --token-file" in gone.err, gone.err
    junk = fleet.subdir("junk") / "token"
    junk.write_text("password: hunter2\n")
    result = cli("status", "--token-file", junk)
    assert result.returncode == 2 and "does not hold a token" in result.err and "hunter2" not in result.err, \
        result.err
