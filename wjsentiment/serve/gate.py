"""What every request passes on the HTTP side: the API key, the bound on requests in flight,
draining on shutdown, one log line and the request metrics.

LitServe batches and runs the model; what it leaves to its user is added here as one ASGI
middleware (:class:`ServiceGate`) and one FastAPI dependency (:func:`key_checker`):

- **Load shedding.** At most ``max_queue`` requests to the model's endpoints are in flight
  (accepted and not yet answered), counted across the HTTP processes; past that a request gets
  503 with ``Retry-After`` at once instead of waiting in an unbounded queue.
- **Draining.** Once :meth:`GateState.drain` is called (on SIGTERM), new requests get 503 and
  ``/health`` says not ready, while those in flight finish.
- **API key.** Compared in constant time (:func:`hmac.compare_digest`), from ``X-API-Key`` or
  ``Authorization: Bearer``; never logged.
- **One log line per request**, as JSON on the ``wjsentiment.serve`` logger, with the status
  499 when the client went away before it was answered.
"""

from __future__ import annotations

import hmac
import json
import logging
import multiprocessing
import time
from collections.abc import Callable

from fastapi import HTTPException, Request
from starlette.requests import ClientDisconnect

from .metrics import instruments

__all__ = ["GateState", "ServiceGate", "key_checker", "request_log"]

#: The logger of the request lines.
request_log = logging.getLogger("wjsentiment.serve")
#: Seconds a client is asked to wait before trying again after a 503.
RETRY_AFTER_S = 1
#: The status recorded (in the log and the metrics; nothing is sent) for a request whose
#: client went away before it was answered, as nginx records it: not a failure of the service.
CLIENT_GONE = 499
#: Paths named in the metrics as they are; any other is counted as "other".
KNOWN_PATHS = ("/", "/predict", "/explain", "/health", "/metrics", "/info", "/docs",
               "/openapi.json")


class GateState:
    """Requests in flight and the draining flag, shared by the HTTP processes (made before
    LitServe forks them).

    Parameters
    ----------
    max_queue : int
        Requests in flight past which new ones are refused with 503.
    """

    def __init__(self, max_queue: int) -> None:
        self.max_queue = int(max_queue)
        self._in_flight = multiprocessing.Value("i", 0)
        self._draining = multiprocessing.Value("b", 0)

    @property
    def in_flight(self) -> int:
        return int(self._in_flight.value)

    @property
    def draining(self) -> bool:
        return bool(self._draining.value)

    def admit(self) -> str | None:
        """Count a new request in, or say why it is refused ("draining", "full")."""
        if self.draining:
            return "draining"
        with self._in_flight.get_lock():
            if self._in_flight.value >= self.max_queue:
                return "full"
            self._in_flight.value += 1
        return None

    def leave(self) -> None:
        """Count an admitted request out, once it is answered."""
        with self._in_flight.get_lock():
            self._in_flight.value -= 1

    def drain(self, timeout: float) -> bool:
        """Refuse new requests from now on and wait (at most ``timeout`` s) until those in
        flight are answered; True when they all were."""
        self._draining.value = 1
        deadline = time.monotonic() + timeout
        while self.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.in_flight == 0


def key_checker(key: str | None) -> Callable[[Request], None]:
    """A FastAPI dependency that answers 401 unless the request carries ``key`` in
    ``X-API-Key`` or ``Authorization: Bearer`` (no check when ``key`` is None)."""
    expected = None if key is None else key.encode()

    def check_key(request: Request) -> None:
        if expected is None:
            return
        given = request.headers.get("x-api-key")
        if given is None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            given = token.strip() if scheme.lower() == "bearer" else None
        if given is None or not hmac.compare_digest(given.encode(), expected):
            raise HTTPException(401, detail="A valid API key is needed: send it in the "
                                "X-API-Key header or as Authorization: Bearer <key>.",
                                headers={"WWW-Authenticate": "Bearer"})

    return check_key


class ServiceGate:
    """ASGI middleware: sheds load and drains on the model's endpoints, logs one JSON line
    per request and counts it in the metrics (see the module's notes).

    Parameters
    ----------
    app : ASGI application
        The application whose requests pass through the gate.
    state : GateState
        The counters shared with the routes: requests in flight, whether the service drains.
    guarded : tuple of str
        The paths whose requests are counted in flight (the model's endpoints).
    """

    def __init__(self, app, *, state: GateState, guarded: tuple[str, ...]) -> None:
        self.app = app
        self.state = state
        self.guarded = guarded

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        answer: dict[str, int] = {}

        async def send_and_note(message: dict) -> None:
            if message["type"] == "http.response.start":
                answer.setdefault("status", message["status"])
            await send(message)

        async def receive_and_note() -> dict:
            message = await receive()
            if message["type"] == "http.disconnect":
                answer.setdefault("status", CLIENT_GONE)  # unless the answer went out
            return message

        refused = self.state.admit() if scope["path"] in self.guarded else "open"
        try:
            if refused in ("full", "draining"):
                await self._refuse(send_and_note, refused)
            else:
                await self.app(scope, receive_and_note, send_and_note)
        except ClientDisconnect:  # raised while reading the body: nobody is left to answer
            answer.setdefault("status", CLIENT_GONE)
        finally:
            if refused is None:
                self.state.leave()
            self._record(scope, answer.get("status", 500), time.perf_counter() - start,
                         refused)

    async def _refuse(self, send, reason: str) -> None:
        detail = ("The service is shutting down; send the request to another replica."
                  if reason == "draining" else
                  f"{self.state.max_queue} requests are in flight already; try again shortly.")
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"retry-after", str(RETRY_AFTER_S).encode()),
            (b"content-length", str(len(body)).encode()),
            *([(b"connection", b"close")] if reason == "draining" else [])]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _record(scope: dict, status: int, seconds: float, refused: str | None) -> None:
        path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
        metrics = instruments()
        metrics.requests.labels(path, str(status)).inc()
        metrics.latency.labels(path).observe(seconds)
        client = scope.get("client")
        line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "method": scope["method"],
                "path": scope["path"], "status": status, "ms": round(seconds * 1000, 2),
                "images": scope.get("state", {}).get("images"),
                "client": client[0] if client else None}
        if refused in ("full", "draining"):
            line["refused"] = refused
        request_log.info(json.dumps(line))
