"""WebSocket through the proxy: the Upgrade handshake is passed on, the answer
is 101, and the connection then carries frames both ways."""

import asyncio
import base64
import os

import pytest
import websockets

from harness import HttpClient, build_request, read_ws_frame, simple_config, ws_accept, ws_frame

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


def test_raw_upgrade_handshake_and_tunnel(proxy):
    key = base64.b64encode(os.urandom(16)).decode()
    expected_accept = ws_accept(key)
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
            client.send(ws_frame(1, text, masked=True))
            opcode, _, payload, masked = read_ws_frame(client.stream)
            assert not masked, "server frames must not be masked"
            assert (opcode, payload) == (1, text), f"sent {text!r}, got opcode {opcode} {payload!r}"
