"""A gateway listener serving TLS to clients outside the mesh (tls mode
SIMPLE): its certificates come from files, the one served is chosen by the
name the client asks for (SNI), exactly or by wildcard, with the first as the
default; no client certificate is asked; key files must be private."""

import os
import socket
import ssl
import subprocess

import pytest

from harness import (LOCALHOST, PROXY_BIN, cluster, free_port, http_listener, http_responder, http_response,
                     plain_http_answer, proxy_config, route, run, self_signed_certificate, to_yaml, validate_config)


def self_signed(directory, name: str, dns: str) -> dict:
    cert, key = self_signed_certificate(directory, name, dns)
    return {"certificate_chain": cert, "private_key": key}


def served_subject(port: int, server_name: str | None, tls12: bool = False) -> str:
    """The CN of the certificate the listener serves for `server_name`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if tls12:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection((LOCALHOST, port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
            request = f"GET / HTTP/1.1\r\nHost: {server_name or 'localhost'}\r\nConnection: close\r\n\r\n"
            tls.sendall(request.encode())
            answer = b""
            while chunk := tls.recv(4096):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    text = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"], input=der,
                          capture_output=True, timeout=30).stdout.decode()
    return text.strip().split("CN = ")[-1]


@pytest.fixture
def certificates(fleet):
    directory = fleet.subdir("gateway-certs")
    return {"default": self_signed(directory, "default", "default.example"),
            "api": self_signed(directory, "api", "api.example.com"),
            "shop": self_signed(directory, "shop", "*.shop.example")}


def gateway_config(upstream, certificates: dict) -> dict:
    cfg = proxy_config([http_listener("web", [route("app")])], [cluster("app", upstream.address)])
    cfg["listeners"][0]["tls"] = {"mode": "SIMPLE", "certificates": [
        certificates["default"],
        {"server_names": ["api.example.com"], **certificates["api"]},
        {"server_names": ["*.shop.example"], **certificates["shop"]}]}
    return cfg


def test_the_certificate_is_chosen_by_server_name(fleet, certificates):
    upstream = fleet.upstream(http_responder(http_response(200, b"hello")))
    proxy = fleet.proxy(gateway_config(upstream, certificates))
    port = proxy.port("web")
    assert served_subject(port, "api.example.com") == "api"
    assert served_subject(port, "API.Example.COM") == "api", "names are compared without case"
    assert served_subject(port, "cart.shop.example") == "shop"
    assert served_subject(port, "other.example") == "default"
    assert served_subject(port, None) == "default"
    assert served_subject(port, "api.example.com", tls12=True) == "api", "clients outside the mesh may use TLS 1.2"
    answer = plain_http_answer(port)
    assert not answer.startswith(b"HTTP/1.1 200"), f"plain text served on a TLS listener: {answer!r}"
    dump = str(proxy.config_dump())
    assert "BEGIN" not in dump and certificates["api"]["private_key"] in dump, "file names only in /config_dump"


def test_a_key_others_may_read_or_a_bad_list_is_refused(fleet, certificates):
    upstream = fleet.upstream(http_responder(http_response(200, b"hello")))
    os.chmod(certificates["api"]["private_key"], 0o644)
    cfg = gateway_config(upstream, certificates)
    cfg["listeners"][0]["address"] = f"{LOCALHOST}:{free_port()}"
    cfg["admin"] = {"address": f"{LOCALHOST}:{free_port()}"}
    path = fleet.dir / "gateway.yaml"
    path.write_text(to_yaml(cfg))
    started = run([PROXY_BIN, "--config", path], timeout=20)
    output = (started.stdout + started.stderr).decode()
    assert started.returncode == 1, output
    assert "chmod 600" in output and certificates["api"]["private_key"] in output, output
    os.chmod(certificates["api"]["private_key"], 0o600)

    cfg["listeners"][0]["tls"]["certificates"][2].pop("server_names")
    result = validate_config(fleet.dir, cfg)
    assert result.returncode != 0
    assert "server_names is required after the first certificate" in (result.stdout + result.stderr).decode()
    cfg["listeners"][0]["tls"] = {"mode": "STRICT", "certificates": [certificates["default"]]}
    result = validate_config(fleet.dir, cfg)
    assert result.returncode != 0 and "only for mode SIMPLE" in (result.stdout + result.stderr).decode()
