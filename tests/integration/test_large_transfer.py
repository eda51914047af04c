"""1 GiB through the proxy each way, byte for byte, without the proxy holding
the body in memory."""

import hashlib
import os
import threading

import pytest

from harness import SANITIZED, MiB, curl, sha256_file, simple_config

GiB = 1024 * MiB
MEMORY_LIMIT_KB = 16 * 1024


@pytest.fixture(scope="module")
def source(module_fleet):
    """A 1 GiB file and its SHA-256: one random MiB repeated, each copy stamped
    with its index so that lost, doubled or swapped blocks change the hash."""
    path = module_fleet.subdir("source") / "gib.bin"
    block = bytearray(os.urandom(MiB))
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(GiB // MiB):
            block[:8] = i.to_bytes(8, "big")
            f.write(block)
            digest.update(block)
    return path, digest.hexdigest()


@pytest.fixture(scope="module")
def nginx(module_fleet):
    return module_fleet.nginx()


@pytest.fixture
def proxy(fleet, nginx):
    return fleet.proxy(simple_config(nginx))


def assert_memory_flat(proxy, start_kb: int) -> None:
    if SANITIZED:
        return
    growth = proxy.hwm_kb() - start_kb
    assert growth < MEMORY_LIMIT_KB, (
        f"proxy peak memory grew by {growth / 1024:.1f} MB during the transfer "
        f"(VmRSS at start {start_kb} kB, VmHWM now {proxy.hwm_kb()} kB)")


def put(proxy, path: str, *curl_args, **kwargs) -> None:
    result = curl("-o", os.devnull, "-w", "%{http_code}", *curl_args, proxy.url(path),
                  timeout=300, **kwargs)
    assert result.returncode == 0 and result.stdout in (b"201", b"204"), \
        f"PUT {path}: curl rc={result.returncode} code={result.stdout!r} stderr={result.stderr!r}"


def test_upload_1gib_with_content_length(proxy, nginx, source):
    path, digest = source
    start_kb = proxy.rss_kb()
    put(proxy, "/dav/upload.bin", "-T", path)
    stored = nginx.dav_dir / "upload.bin"
    try:
        assert stored.stat().st_size == GiB, f"stored {stored.stat().st_size} bytes of {GiB}"
        assert sha256_file(stored) == digest, "stored file differs from the upload"
    finally:
        stored.unlink(missing_ok=True)
    assert_memory_flat(proxy, start_kb)


def test_download_1gib(proxy, nginx, source, fleet):
    path, digest = source
    served = nginx.dav_dir / "download.bin"
    os.link(path, served)
    out = fleet.subdir("download") / "gib.bin"
    start_kb = proxy.rss_kb()
    try:
        result = curl("-o", out, "-w", "%{http_code}", proxy.url("/dav/download.bin"), timeout=300)
        assert result.returncode == 0 and result.stdout == b"200", \
            f"curl rc={result.returncode} code={result.stdout!r} stderr={result.stderr!r}"
        assert out.stat().st_size == GiB, f"downloaded {out.stat().st_size} bytes of {GiB}"
        assert sha256_file(out) == digest, "downloaded file differs from the original"
    finally:
        served.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
    assert_memory_flat(proxy, start_kb)


def test_upload_256mib_chunked(proxy, nginx, source):
    """curl reading from stdin sends the body chunked."""
    path, _ = source
    size = 256 * MiB
    digest = hashlib.sha256()
    start_kb = proxy.rss_kb()
    reader, writer = os.pipe()

    def feed():
        with open(path, "rb") as f, os.fdopen(writer, "wb") as pipe:
            for _ in range(size // MiB):
                block = f.read(MiB)
                digest.update(block)
                try:
                    pipe.write(block)
                except BrokenPipeError:
                    return

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        put(proxy, "/dav/chunked.bin", "-T", "-", stdin=reader)
    finally:
        os.close(reader)
        feeder.join(30)
    stored = nginx.dav_dir / "chunked.bin"
    try:
        assert stored.stat().st_size == size, f"stored {stored.stat().st_size} bytes of {size}"
        assert sha256_file(stored) == digest.hexdigest(), "stored file differs from the upload"
    finally:
        stored.unlink(missing_ok=True)
    assert_memory_flat(proxy, start_kb)
