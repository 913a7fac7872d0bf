"""The options of the service, declared once: :class:`ServeOptions` holds their defaults, and
``wjsentiment serve``'s parser and :func:`~wjsentiment.serve.create_server` both read them.

Standard library only, so that the command line's parser builds without LitServe or torch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..exceptions import InputError

__all__ = ["DEVICES", "HOSTS", "PORTS", "ServeOptions"]

#: The addresses LitServe listens on: this machine only, or every IPv4 or IPv6 interface.
HOSTS = ("127.0.0.1", "0.0.0.0", "::")
#: The ports the service may listen on, first and last: none that needs root.
PORTS = (1024, 65535)
#: The devices the inference workers may run on ("cuda:N": the GPU numbered N).
DEVICES = ("auto", "cpu", "cuda", "cuda:N")


@dataclass(frozen=True)
class ServeOptions:
    """How the service runs; the defaults of ``wjsentiment serve``'s options.

    Attributes
    ----------
    host : str
        The address to listen on: "127.0.0.1" (local connections only), "0.0.0.0" or "::" (every
        interface, as in a container).
    port : int
        The TCP port to listen on, from 1024 to 65535.
    workers : int
        Inference worker processes, each with its own copy of the model (per device).
    max_batch_size : int
        Requests that one forward pass may take together (each may hold several images).
    batch_timeout_ms : float
        How long a worker waits for more requests to fill a batch.
    api_key_env : str, optional
        The environment variable holding the API key; None: no key.
    device : str
        "auto" (a GPU when there is one), "cpu", "cuda" or "cuda:N".
    max_body_mb : float
        Largest request body, in megabytes (10**6 bytes); larger ones get 413.
    max_images : int
        Most images in one request.
    max_queue : int
        Most requests in flight (queued or in work); more get 503 with Retry-After.
    timeout_s : float
        Longest a request may wait in the queue before it gets 504; also how long SIGTERM
        waits for the requests in flight.
    heatmaps : bool
        Start the Grad-CAM worker for ``POST /explain`` (a saved model folder only).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_batch_size: int = 16
    batch_timeout_ms: float = 5.0
    api_key_env: str | None = None
    device: str = "auto"
    max_body_mb: float = 20.0
    max_images: int = 64
    max_queue: int = 256
    timeout_s: float = 30.0
    heatmaps: bool = True

    def __post_init__(self) -> None:
        if self.host not in HOSTS:
            raise InputError(f"host must be one of {list(HOSTS)} (LitServe binds no other), "
                             f"got {self.host!r}.")
        if not PORTS[0] <= self.port <= PORTS[1]:
            raise InputError(f"port must be from {PORTS[0]} to {PORTS[1]}, got {self.port!r}.")
        if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", self.device):
            raise InputError(f"device must be one of {', '.join(DEVICES)} (N: a GPU's number), "
                             f"got {self.device!r}.")
        for name in ("workers", "max_batch_size", "max_images", "max_queue"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)!r}.")
        if self.max_body_mb <= 0 or self.timeout_s <= 0:
            raise InputError("max_body_mb and timeout_s must be > 0.")
        if not 0 <= self.batch_timeout_ms < 1000 * self.timeout_s:
            raise InputError(f"batch_timeout_ms must be >= 0 and under timeout_s "
                             f"({self.timeout_s} s), got {self.batch_timeout_ms!r}.")
