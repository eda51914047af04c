"""WebSocket through the proxy: the Upgrade handshake is passed on, the answer
is 101, and the connection then carries frames both ways."""

import asyncio
import base64
import hashlib
import os
import struct

import pytest
import websockets

from harness import HttpClient, build_request, simple_config

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MESSAGES = ["one", "two", "three"]


@pytest.fixture
def proxy(fleet):
    return fleet.proxy(simple_config(fleet.websocketd()))


async def echo_messages(url: str) -> list[str]:
    async with websockets.connect(url, open_timeout=10, close_timeout=5) as ws:
        got = []
        for message in MESSAGES:
            await ws.send(message)
            got.append(await asyncio.wait_for(ws.recv(), 10))
        return got


def test_messages_are_echoed(proxy):
    got = asyncio.run(echo_messages(f"ws://127.0.0.1:{proxy.port()}/"))
    assert got == MESSAGES, f"sent {MESSAGES}, got back {got}"


def masked_text_frame(payload: bytes) -> bytes:
    assert len(payload) < 126
    mask = os.urandom(4)
    return bytes([0x81, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frame(stream) -> tuple[int, bytes]:
    first, second = stream.read_exact(2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", stream.read_exact(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", stream.read_exact(8))[0]
    assert not second & 0x80, "server frames must not be masked"
    return first & 0x0F, stream.read_exact(length)


def test_raw_upgrade_handshake_and_tunnel(proxy):
    key = base64.b64encode(os.urandom(16)).decode()
    expected_accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
    with HttpClient(proxy.port()) as client:
        client.send(build_request("GET", "/", [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]))
        resp = client.read_response()
        assert resp.status == 101, f"expected 101 Switching Protocols, got {resp}"
        assert (resp.header("upgrade") or "").lower() == "websocket", f"got {resp}"
        assert "upgrade" in (resp.header("connection") or "").lower(), f"got {resp}"
        assert resp.header("sec-websocket-accept") == expected_accept, f"got {resp}"
        for text in (b"hello raw", b"second"):
            client.send(masked_text_frame(text))
            opcode, payload = read_frame(client.stream)
            assert (opcode, payload) == (1, text), f"sent {text!r}, got opcode {opcode} {payload!r}"
