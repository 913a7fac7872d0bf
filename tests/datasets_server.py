"""Test helpers for the datasets tests: a scriptable local HTTP server and image bytes.

Nothing here touches the internet: the server listens on 127.0.0.1 on an ephemeral
port and answers each path with a scripted sequence of replies.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

EMOJI_DIR = (
    Path(__file__).resolve().parents[1] / "wjsentiment" / "datasets" / "data" / "emoji_sentiment"
)


def emoji_png(index: int = 0) -> bytes:
    """Return the bytes of one shipped Twemoji PNG (sorted by file name)."""
    files = sorted((EMOJI_DIR / "images" / "twitter").glob("*.png"))
    return files[index].read_bytes()


def make_jpeg(size: int = 64, seed: int = 0) -> bytes:
    """Return a noisy RGB JPEG (noise keeps it from compressing to almost nothing)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def png_header_only(width: int, height: int, bit_depth: int = 8, colour_type: int = 0) -> bytes:
    """A PNG file that claims ``width x height`` pixels but holds only a few rows of them.

    Opening it reads the size (what the pixel limit is checked on); decoding it would fail as
    truncated, after allocating the whole image. Grey (``colour_type=0``) or RGB (``2``).
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    samples = {0: 1, 2: 3}[colour_type] * bit_depth // 8
    rows = zlib.compress(b"\0" * (1 + width * samples) * 2)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)
            + chunk(b"IEND", b""))


def assert_clean_image_dir(directory: str | os.PathLike[str]) -> list[str]:
    """Assert no temporary file is left and every image file fully decodes; return the names."""
    names = sorted(os.listdir(directory))
    leftovers = [n for n in names if n.endswith(".wjs-partial") or n.startswith(".")]
    assert not leftovers, f"temporary files left behind: {leftovers}"
    images = [n for n in names if n != "_failures.csv"]
    for name in images:
        with Image.open(os.path.join(directory, name)) as im:
            im.load()
    return images


@dataclass
class Reply:
    """One scripted HTTP answer."""

    status: int = 200
    body: bytes = b""
    content_type: str = "image/png"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    content_length: int | None = None  # announced length; default len(body)
    send_length: bool = True  # False: no Content-Length, body ends when the connection closes
    chunk_size: int = 4096
    chunk_delay: float = 0.0  # seconds between body chunks
    hang_after: int | None = None  # send this many body bytes, then stall until shutdown
    resume: threading.Event | None = None  # with hang_after: send the rest once this is set


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server.owner
        path = self.path.split("?", 1)[0]
        with srv.lock:
            srv.hits[path] += 1
            n = srv.hits[path]
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        replies = srv.routes.get(path)
        reply = replies[min(n, len(replies)) - 1] if replies else Reply(404, b"not found")
        try:
            stopped = reply.delay and srv.stopping.wait(reply.delay)
        finally:
            # Counted out before the reply is written: once a client has read a reply it
            # may send its next request before this thread would reach a later ``finally``.
            with srv.lock:
                srv.in_flight -= 1
        if stopped:
            return
        try:
            self._answer(reply, srv.stopping)
        except OSError:
            pass  # the client went away (e.g. after its timeout)

    def _answer(self, reply: Reply, stopping: threading.Event) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        if reply.send_length:
            length = len(reply.body) if reply.content_length is None else reply.content_length
            self.send_header("Content-Length", str(length))
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if reply.hang_after is None:
            self._send(reply.body, reply, stopping)
            return
        self._send(reply.body[: reply.hang_after], reply, stopping)
        if reply.resume is None:
            stopping.wait(60)
            return
        while not reply.resume.wait(0.05):
            if stopping.is_set():
                return
        self._send(reply.body[reply.hang_after :], reply, stopping)

    def _send(self, body: bytes, reply: Reply, stopping: threading.Event) -> None:
        for start in range(0, len(body), reply.chunk_size):
            self.wfile.write(body[start : start + reply.chunk_size])
            self.wfile.flush()
            if reply.chunk_delay and stopping.wait(reply.chunk_delay):
                return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LocalImageServer

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # broken pipes from clients that time out are expected


class LocalImageServer:
    """A threaded HTTP server on 127.0.0.1 answering scripted replies per path.

    ``add(path, r1, r2, ...)`` makes the k-th request to ``path`` get ``rk`` (the last
    reply repeats); unknown paths get 404. ``hits`` counts requests per path and
    ``max_in_flight`` records the most requests waiting out their ``delay`` at the same
    time.
    """

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.hits: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def add(self, path: str, *replies: Reply) -> str:
        """Script the replies for ``path`` and return its full URL."""
        self.routes[path] = list(replies)
        return self.url(path)

    def url(self, path: str) -> str:
        return self.base_url + path

    def wait_for_hits(self, path: str, n: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while self.hits[path] < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"{path} got {self.hits[path]} requests, expected {n}")
            time.sleep(0.01)

    def __enter__(self) -> LocalImageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
