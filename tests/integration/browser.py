"""Headless Chromium (Debian's chromium package) driven over the DevTools
protocol: open a page, evaluate script in it, take screenshots."""

import asyncio
import base64
import hashlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import websockets

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Browser:
    """One Chromium with one tab. `trusted_spki` is the base64 SHA-256 of a
    server's public key that Chromium accepts although no root it knows
    signed the certificate (the mesh's own CA signs trellis-control's)."""

    def __init__(self, trusted_spki: str | None = None, width: int = 1280, height: int = 860):
        self.profile = Path(tempfile.mkdtemp(prefix="trellis-chromium-"))
        args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-extensions", "--disable-crash-reporter", "--disable-breakpad",
                "--disable-background-networking", "--disable-sync", "--mute-audio",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"]
        if trusted_spki:
            args.insert(1, f"--ignore-certificate-errors-spki-list={trusted_spki}")
        # HOME in the profile keeps everything Chromium writes (crash reports
        # included) in a directory close() removes.
        env = dict(os.environ, HOME=str(self.profile), XDG_CONFIG_HOME=str(self.profile),
                   XDG_CACHE_HOME=str(self.profile))
        self.ws = None
        self.loop = None
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                                     start_new_session=True)
        try:
            self._attach()
        except BaseException:
            self.close()
            raise

    def _attach(self):
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not start")
            time.sleep(0.1)
        port = int(port_file.read_text().split("\n")[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
            page = next(t for t in json.load(resp) if t["type"] == "page")
        self.loop = asyncio.new_event_loop()

        async def connect():
            return await websockets.connect(page["webSocketDebuggerUrl"], max_size=64 << 20)

        self.ws = self.loop.run_until_complete(connect())
        self.next_id = 0
        self.console: list[str] = []
        self.send("Page.enable")
        self.send("Runtime.enable")

    async def _call(self, method: str, params: dict) -> dict:
        self.next_id += 1
        mine = self.next_id
        await self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        while True:
            message = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if message.get("method") == "Runtime.exceptionThrown":
                self.console.append(json.dumps(message["params"]["exceptionDetails"]))
            elif message.get("method") == "Runtime.consoleAPICalled":
                self.console.append(" ".join(str(a.get("value", a.get("description", "")))
                                             for a in message["params"]["args"]))
            if message.get("id") == mine:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def send(self, method: str, **params) -> dict:
        return self.loop.run_until_complete(self._call(method, params))

    def open(self, url: str):
        self.send("Page.navigate", url=url)

    def evaluate(self, expression: str):
        """The JSON value of `expression` in the page (None when it throws)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            return None
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30):
        """Evaluates `expression` until it is truthy; its value, or fails."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"the page never satisfied {expression}; console: {self.console}")
            time.sleep(0.2)

    def screenshot(self, path: Path):
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self):
        if self.ws is not None:
            try:
                self.loop.run_until_complete(self.ws.close())
            except Exception:
                pass
            self.ws = None
        if self.loop is not None:
            self.loop.close()
            self.loop = None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def spki_sha256(host: str, port: int) -> str:
    """Base64 SHA-256 of the public key in the certificate served at host:port."""
    pem = ssl.get_server_certificate((host, port))
    key = subprocess.run(["openssl", "x509", "-pubkey", "-noout"], input=pem.encode(), capture_output=True,
                         check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=key, capture_output=True,
                         check=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()
