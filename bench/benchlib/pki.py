"""The certificates of the mesh benchmark, made with the openssl command line:
one ECDSA P-256 root and a leaf per side whose only SAN is its SPIFFE ID.

Every proxy of the mesh benchmark uses these same files, so the TLS work
(key type, chain length, signature checks) is the same whoever proxies.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .procs import BenchError

TRUST_DOMAIN = "cluster.local"


@dataclass(frozen=True)
class Leaf:
    """One side's credentials, in the shapes the three proxies read."""
    identity: str        # the SPIFFE ID in the URI SAN
    server_name: str     # the subject CN: the name HAProxy and nginx check (see below)
    cert: Path           # PEM certificate
    key: Path            # PEM private key, mode 0600
    cert_and_key: Path   # both in one file, as HAProxy's `crt` wants them (mode 0600)


@dataclass(frozen=True)
class MeshPki:
    root: Path           # the trust bundle: one self-signed root
    client: Leaf         # the calling side's sidecar (productpage)
    server: Leaf         # the called side's sidecar (details)


def _openssl(*args: object) -> None:
    argv = ["openssl", *map(str, args)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise BenchError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _new_key(path: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", path)
    os.chmod(path, 0o600)  # trellis-proxy refuses a key that others can read


def _issue(directory: Path, name: str, service: str, root_cert: Path, root_key: Path,
           serial: int) -> Leaf:
    identity = f"spiffe://{TRUST_DOMAIN}/ns/default/sa/{service}"
    # HAProxy (`verifyhost`) and nginx (`proxy_ssl_name`) can check a server
    # certificate only against a host name, never against a URI SAN. With no
    # DNS SAN present, OpenSSL's host check falls back to the subject's CN, so
    # the CN carries a name for them to check; the SAN stays the SPIFFE ID
    # alone, which is what Trellis checks.
    server_name = f"{service}.default.svc"
    key, csr, cert = (directory / f"{name}.{ext}" for ext in ("key", "csr", "crt"))
    extensions = directory / f"{name}.ext"
    extensions.write_text(
        "[leaf]\n"
        "basicConstraints = critical,CA:FALSE\n"
        "keyUsage = critical,digitalSignature\n"
        "extendedKeyUsage = serverAuth,clientAuth\n"
        f"subjectAltName = URI:{identity}\n")
    _new_key(key)
    _openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/O=trellis-bench/CN={server_name}")
    _openssl("x509", "-req", "-in", csr, "-CA", root_cert, "-CAkey", root_key,
             "-set_serial", serial, "-days", "7", "-sha256",
             "-extfile", extensions, "-extensions", "leaf", "-out", cert)
    bundle = directory / f"{name}.pem"
    bundle.write_bytes(cert.read_bytes() + key.read_bytes())
    os.chmod(bundle, 0o600)
    return Leaf(identity, server_name, cert, key, bundle)


def make_pki(directory: Path) -> MeshPki:
    directory.mkdir(parents=True, exist_ok=True)
    root_key, root_cert = directory / "root.key", directory / "root.crt"
    _new_key(root_key)
    _openssl("req", "-x509", "-new", "-key", root_key, "-out", root_cert, "-days", "7",
             "-sha256", "-subj", "/O=trellis-bench/CN=bench root",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return MeshPki(root=root_cert,
                   client=_issue(directory, "client", "productpage", root_cert, root_key, 1001),
                   server=_issue(directory, "server", "details", root_cert, root_key, 1002))
