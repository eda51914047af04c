"""Nothing secret leaves where it belongs: a sidecar's join token, its
private key, the control plane's keys and the API tokens appear in no log,
no /config_dump and no API answer, also when a join is refused."""

from harness import LOCALHOST, free_port, sidecar_config, wait_until


def test_no_secret_in_logs_dumps_or_answers(fleet, nginx):
    control = fleet.control_plane()
    port, outbound = free_port(), free_port()
    details_token = control.join_token_file("details")
    details = fleet.proxy(sidecar_config(control, "details", join_token_file=details_token,
                                         instance={"address": f"{LOCALHOST}:{port}", "app_address": nginx.address(0)}))
    productpage = fleet.proxy(sidecar_config(control, "productpage", outbound_port=outbound,
                                             upstream_services=["details"]))
    # A refused join: a token for another service.
    # It keeps trying, never ready.
    refused = fleet.proxy(sidecar_config(control, "reviews", join_token_file=details_token), start=False).launch()
    assert wait_until(lambda: "refused" in control.service.stderr(), 10), control.service.stderr()

    secrets = {
        "join token": details_token.read_text().strip(),
        "admin token": control.admin_token,
        "control plane key": (control.data_dir / "tls" / "server.key").read_text().strip().splitlines()[1],
    }
    for root_key in (control.data_dir / "ca").glob("root-*.key"):
        secrets[f"CA key {root_key.name}"] = root_key.read_text().strip().splitlines()[1]
    seen = {
        "trellis-control's log": control.service.stderr(),
        "details' log": details.output(),
        "productpage's log": productpage.output(),
        "the refused proxy's log": refused.output(),
        "details' /config_dump": str(details.config_dump()),
        "details' /stats": str(details.admin("/stats")),
        "/v1/status": str(control.request("GET", "/v1/status")),
        "/v1/tokens": str(control.request("GET", "/v1/tokens")),
        "/v1/ca": str(control.request("GET", "/v1/ca")),
    }
    for where, text in seen.items():
        assert "PRIVATE KEY" not in text, f"a private key in {where}"
        for what, secret in secrets.items():
            assert secret not in text, f"the {what} in {where}"
