"""A loopback HTTP server that answers like the Helioviewer API, for tests and benchmarks.

It serves ``/v2/getClosestImage/`` (JSON shaped as the real API answers: id, date as
"YYYY-MM-DD HH:MM:SS", name, scale, width, height, refPixelX, refPixelY, rsun,
sunCenterOffsetParams, layeringOrder) and ``/v2/getJP2Image/`` (the bytes of sunpy's real
Helioviewer HMI JP2) over a fixed list of observation times, on 127.0.0.1, from a thread.
Answers are scripted per endpoint and consumed in order: any HTTP status as a string
(``"429"``, ``"500"``, ``"404"``: that status with a JSON error body), ``"drop"`` (headers
with the full Content-Length, half the body, then the connection closed), ``"hang"`` (no
answer for ``hang_s`` seconds), ``"slow"`` (the normal answer, one byte every
``trickle_s`` seconds), or a :class:`Reply` (any status, headers and body, optionally
trickled). ``latency`` delays every answer. Every request is logged.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pandas as pd

SUNPY_JP2 = "2023_01_31__03_39_23_200__SDO_HMI_HMI_continuum.jp2"


def sunpy_jp2_bytes() -> bytes:
    """The bytes of sunpy's real Helioviewer JP2 test file (512², 8-bit, XML header)."""
    from sunpy.data.test import get_test_filepath

    with open(get_test_filepath(SUNPY_JP2), "rb") as fh:
        return fh.read()


@dataclass
class Reply:
    """A scripted answer: ``status``, extra ``headers``, ``body`` (bytes, or a dict/list/None
    sent as JSON), sent one byte every ``trickle_s`` seconds when given."""

    status: int = 200
    body: object = b""
    headers: dict = field(default_factory=dict)
    trickle_s: float | None = None


def closed_port_url() -> str:
    """An API URL on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v2/"


class FakeHelioviewer:
    """The fake API. Use as a context manager; ``url`` is the base to give the client."""

    def __init__(self, image_times, jp2: bytes | None = None, latency: float = 0.0, hang_s: float = 2.0,
                 trickle_s: float = 1.0):
        self.image_times = sorted(pd.Timestamp(t).tz_localize("UTC") if pd.Timestamp(t).tzinfo is None
                                  else pd.Timestamp(t).tz_convert("UTC") for t in image_times)
        self.jp2 = jp2 if jp2 is not None else sunpy_jp2_bytes()
        self.latency = latency
        self.hang_s = hang_s
        self.trickle_s = trickle_s
        self.script: dict[str, deque] = {"getClosestImage": deque(), "getJP2Image": deque()}
        self.log: list[tuple[str, dict]] = []
        self.on_request = None  # called with (endpoint, params) before answering
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    # -- scripting -------------------------------------------------------------------
    def fail(self, endpoint: str, *actions) -> None:
        """Queue answers (an HTTP status such as "429", "drop", "hang", "slow", or a
        :class:`Reply`) for the next requests to ``endpoint``."""
        with self._lock:
            self.script[endpoint].extend(actions)

    def requests(self, endpoint: str) -> list[dict]:
        with self._lock:
            return [params for name, params in self.log if name == endpoint]

    # -- life cycle ------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v2/"

    def __enter__(self) -> FakeHelioviewer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- behaviour -------------------------------------------------------------------
    def closest(self, when: pd.Timestamp) -> tuple[int, pd.Timestamp] | None:
        if not self.image_times:
            return None
        gaps = [abs(t - when) for t in self.image_times]
        i = min(range(len(gaps)), key=gaps.__getitem__)  # ties: the earlier image, as a DB ORDER BY would
        return i, self.image_times[i]

    def _next_action(self, endpoint: str) -> str | None:
        with self._lock:
            queue = self.script[endpoint]
            return queue.popleft() if queue else None

    def _handler_class(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real server and requests' sessions use

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                parsed = urlparse(self.path)
                params = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
                endpoint = parsed.path.strip("/").split("/")[-1]
                with fake._lock:
                    fake.log.append((endpoint, params))
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    if fake.on_request is not None:
                        fake.on_request(endpoint, params)
                    if fake.latency:
                        time.sleep(fake.latency)
                    if not parsed.path.startswith("/v2/") or endpoint not in fake.script:
                        return self._json(404, {"error": f"Invalid action specified: {endpoint}"})
                    action = fake._next_action(endpoint)
                    if isinstance(action, Reply):
                        return self._reply(action)
                    if isinstance(action, str) and action.isdigit():
                        return self._json(int(action), {"error": f"HTTP {action} (scripted)"})
                    if action == "hang":
                        time.sleep(fake.hang_s)
                        self.close_connection = True
                        return None
                    if "date" not in params or "sourceId" not in params:
                        return self._json(400, {"error": "Missing required parameter: date or sourceId"})
                    when = pd.Timestamp(params["date"])
                    when = when.tz_localize("UTC") if when.tzinfo is None else when.tz_convert("UTC")
                    found = fake.closest(when)
                    if found is None or params["sourceId"] != "19":
                        return self._json(200, {"error": "No images of the requested type (HMI Mag) are currently available.",
                                                "errno": 10})
                    index, observed = found
                    self.trickle_s = fake.trickle_s if action == "slow" else None
                    if endpoint == "getClosestImage":
                        return self._json(200, {
                            "id": 70000000 + index,
                            "date": observed.strftime("%Y-%m-%d %H:%M:%S"),
                            "name": "HMI Mag",
                            "scale": 0.50440502166748,
                            "width": 4096,
                            "height": 4096,
                            "refPixelX": 2048.5,
                            "refPixelY": 2048.5,
                            "rsun": 1919.0,
                            "sunCenterOffsetParams": [],
                            "layeringOrder": 1,
                        })
                    return self._jp2(observed, drop=action == "drop")
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            trickle_s = None

            def _json(self, status: int, payload) -> None:
                self._reply(Reply(status, payload, trickle_s=self.trickle_s))

            def _reply(self, reply: Reply) -> None:
                body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                headers = {"Content-Type": "application/json", "Content-Length": str(len(body)), **reply.headers}
                self._answer(reply.status, headers, body, reply.trickle_s)

            def _answer(self, status: int, headers: dict, body: bytes, trickle_s: float | None) -> None:
                if not trickle_s:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                    return
                # The whole answer, status line included, one byte at a time.
                head = f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}\r\n" + "".join(
                    f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
                raw = head.encode("latin-1") + body
                self.close_connection = True
                try:
                    for k in range(len(raw)):
                        self.wfile.write(raw[k:k + 1])
                        self.wfile.flush()
                        time.sleep(trickle_s)
                except OSError:  # the client gave up
                    pass

            def _jp2(self, observed: pd.Timestamp, drop: bool) -> None:
                body = fake.jp2
                name = observed.strftime("%Y_%m_%d__%H_%M_%S_000__SDO_HMI_HMI_magnetogram.jp2")
                headers = {"Content-Type": "image/jp2", "Content-Disposition": f'attachment; filename="{name}"',
                           "Content-Length": str(len(body))}
                if not drop:
                    return self._answer(200, headers, body, self.trickle_s)
                self.send_response(200)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return None

        return Handler
