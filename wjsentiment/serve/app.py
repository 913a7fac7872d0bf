"""The service: LitServe APIs around a saved model or an ONNX file, the app factory, and
:func:`serve`, which runs it until SIGTERM and drains it.

LitServe (FastAPI underneath) runs the model in inference worker processes and batches the
requests that arrive together into one forward pass (``max_batch_size``, ``batch_timeout``).
The HTTP side reads and decodes the images (:mod:`.uploads`) before a request is queued, so a
bad image is answered at once and never spoils the batch it would have joined; the workers get
pixels. What LitServe leaves to its user (load shedding, draining, the API key in constant
time, the request log and metrics) is in :mod:`.gate` and :mod:`.metrics`.
"""

# No `from __future__ import annotations` here: LitServe reads the annotation of
# `decode_request` at run time to choose how FastAPI parses the request.

import atexit
import json
import logging
import multiprocessing
import os
import signal
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import anyio
import anyio.to_thread
import litserve as ls
import numpy as np
import torch
from fastapi import Depends, Request, Response
from fastapi.responses import FileResponse
from starlette.staticfiles import StaticFiles

from .. import __version__
from ..exceptions import InputError
from . import metrics
from .engine import WORKER_CACHE_BYTES, Engine, load_engine
from .gate import GateState, ServiceGate, key_checker, request_log
from .options import ServeOptions
from .uploads import Upload, decode_all, read_images

__all__ = ["ServeOptions", "create_server", "serve"]

#: The folder of the browser page and its script and style, in the package.
STATIC = Path(__file__).with_name("static")
#: The model's endpoints: their requests are counted in flight and need the key.
PREDICT_PATH, EXPLAIN_PATH = "/predict", "/explain"
#: How the OpenAPI schema describes their body, which they read themselves: image files as
#: multipart parts named "file", or one image as the raw body.
IMAGES_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
    "image/*": {"schema": {"type": "string", "format": "binary"}}}}}
SUMMARIES = {PREDICT_PATH: "Labels and probabilities of images",
             EXPLAIN_PATH: "Grad-CAM heat maps of images"}


@dataclass(frozen=True)
class UploadRules:
    """What the HTTP side needs to read a request's images (kept in ``app.state``)."""

    max_body_bytes: int
    max_images: int
    sizes: tuple[int, ...]
    timeout_s: float  #: longest the body may take to arrive


@lru_cache(maxsize=1)
def _decoding_slots() -> anyio.CapacityLimiter:
    """This HTTP process's limit on images decoding at once: one per core. More would not
    decode faster, and each may hold a large image's pixels. Decoding runs on one torch
    thread each (the resize), so that the decoding threads and the inference worker do not
    oversubscribe the cores."""
    torch.set_num_threads(1)
    return anyio.CapacityLimiter(os.cpu_count() or 1)


async def read_upload(request: Request) -> Upload:
    """FastAPI dependency of the model's endpoints: the request's images, decoded in a
    thread at every size the model reads (bad input gets its 408, 413, 415 or 422 here)."""
    rules: UploadRules = request.app.state.upload_rules
    parts = await read_images(request, rules.max_body_bytes, rules.max_images, rules.timeout_s)
    request.state.images = len(parts)
    return await anyio.to_thread.run_sync(decode_all, parts, rules.sizes,
                                          limiter=_decoding_slots())


class _ModelAPI(ls.LitAPI):
    """What both endpoints share: the model loaded once per worker and warmed up, the key."""

    def __init__(self, model_path: str, *, api_path: str, max_batch_size: int,
                 batch_timeout: float, api_key: str | None, threads: int | None,
                 gate: GateState) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout,
                         api_path=api_path)
        self.model_path = model_path
        self.threads = threads
        self._check_key = key_checker(api_key)
        self._gate = gate

    def __getstate__(self) -> dict:
        # What is pickled to the inference workers: not the key check nor the HTTP side's
        # counters, which they do not use. The workers still inherit the environment, the
        # key's variable included.
        state = self.__dict__.copy()
        state["_check_key"] = state["_gate"] = None
        return state

    def setup(self, device: str) -> None:
        from ..config import set_config

        set_config(cache_memory_bytes=WORKER_CACHE_BYTES, cache_disk_bytes=0,
                   torch_threads=self.threads)
        self.engine = load_engine(self.model_path, device)
        self.engine.warm_up(explain=self.api_path == EXPLAIN_PATH)

    def authorize(self, request: Request) -> None:
        """LitServe's hook for the endpoint's key check."""
        self._check_key(request)

    def health(self) -> bool:
        """Not ready while draining, so a load balancer stops sending requests here."""
        return not self._gate.draining

    def decode_request(self, request: Annotated[Upload, Depends(read_upload)]) -> Upload:
        return request


class PredictAPI(_ModelAPI):
    """``POST /predict``: labels and probabilities, requests batched by LitServe."""

    def batch(self, inputs: list[Upload]) -> list[Upload]:
        return inputs

    def predict(self, uploads: Any) -> Any:
        batched = isinstance(uploads, list)
        uploads = uploads if batched else [uploads]
        engine = self.engine
        pixels = {size: np.concatenate([u.pixels[size] for u in uploads])
                  for size in engine.sizes}
        proba, labels = engine.predict(pixels)
        found = metrics.instruments()
        found.batch_images.observe(len(labels))
        found.batch_requests.observe(len(uploads))
        answers, start = [], 0
        for upload in uploads:
            stop = start + len(upload.names)
            answers.append({"model": engine.name, "decision_rule": engine.decision_rule,
                            "predictions": [
                                {"label": label, "probabilities": dict(zip(engine.classes,
                                                                           row.tolist()))}
                                for label, row in zip(labels[start:stop].tolist(),
                                                      proba[start:stop])]})
            start = stop
        return answers if batched else answers[0]

    def unbatch(self, output: list) -> list:
        return output


class ExplainAPI(_ModelAPI):
    """``POST /explain``: Grad-CAM heat maps, one request at a time in its own worker."""

    def predict(self, upload: Upload) -> dict:
        return {"model": self.engine.name, "decision_rule": self.engine.decision_rule,
                "explanations": self.engine.explain(upload.pixels)}


def _accelerator(device: str) -> tuple[str, Any]:
    """LitServe's ``accelerator`` and ``devices`` for a device name (checked by
    :class:`ServeOptions`)."""
    if device.startswith("cuda:"):
        return "cuda", [int(device.split(":", 1)[1])]
    return device, "auto" if device != "cpu" else 1


def _api_key(options: ServeOptions) -> str | None:
    if options.api_key_env is None:
        return None
    key = os.environ.get(options.api_key_env, "")
    if not key:
        raise InputError(f"--api-key-env {options.api_key_env}: that environment variable is "
                         "empty or not set; export the key in it first.")
    if not key.isascii():  # HTTP carries header values as Latin-1 bytes: such a key never matches
        raise InputError(f"--api-key-env {options.api_key_env}: the key in that environment "
                         "variable has characters outside ASCII, which clients cannot send "
                         "in a header as they are; choose a key of ASCII letters, digits and "
                         "punctuation.")
    return key


def _add_routes(server: ls.LitServer, engine: Engine, options: ServeOptions,
                check_key: Any, gate: GateState) -> None:
    """The page at ``/`` (in place of LitServe's placeholder), its files, ``/metrics``, and
    the body of the model's endpoints in the OpenAPI schema."""
    app = server.app
    app.router.routes[:] = [route for route in app.router.routes
                            if getattr(route, "path", None) != "/"]
    for route in app.router.routes:
        if getattr(route, "path", None) in SUMMARIES:
            route.summary, route.openapi_extra = SUMMARIES[route.path], IMAGES_BODY

    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    def metrics_text() -> Response:  # reads the metric files: FastAPI runs it in a thread
        return Response(metrics.render(gate.in_flight, gate.max_queue),
                        media_type=metrics.CONTENT_TYPE)

    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/metrics", metrics_text, methods=["GET"], include_in_schema=False,
                      dependencies=[Depends(check_key)])
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.upload_rules = UploadRules(int(options.max_body_mb * 1e6), options.max_images,
                                         engine.sizes, options.timeout_s)


def _log_to_stderr() -> None:
    if not request_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        request_log.addHandler(handler)
        request_log.setLevel(logging.INFO)
        request_log.propagate = False


def create_server(model: str | os.PathLike, options: ServeOptions | None = None,
                  **overrides: Any) -> ls.LitServer:
    """The service for a saved model folder or an exported ``.onnx`` file, ready to run.

    The model is loaded here once to check it (and to learn its classes and image sizes),
    then once per inference worker when the server runs. The result's ``app`` is the FastAPI
    application: add routes or middleware to it before calling ``run``. The request log
    goes to stderr unless the ``wjsentiment.serve`` logger has handlers already.

    Parameters
    ----------
    model : path-like
        A folder written by ``save`` (a classifier or an ensemble) or a file written by
        ``wjsentiment export``.
    options : ServeOptions, optional
        Default: ``ServeOptions()``.
    **overrides
        Fields of :class:`ServeOptions` to change.

    Returns
    -------
    litserve.LitServer
        Run it with ``server.run(host=..., port=...)`` (``host`` and ``port`` of the options
        are not used here, and LitServe's ``run`` listens on every interface unless told
        otherwise), or use :func:`serve`, which passes them and also drains on SIGTERM. The
        folder made for the metric files is removed when the process exits.

    Raises
    ------
    FileNotFoundError
        When there is no model at ``model``.
    ValueError
        For a bad option, or an API key variable that is not set.

    Examples
    --------
    >>> server = create_server("runs/demo/model", workers=2)  # doctest: +SKIP
    >>> server.app.add_api_route("/version", lambda: {"version": "1"})  # doctest: +SKIP
    >>> server.run(host="127.0.0.1", port=8080, generate_client_file=False)  # doctest: +SKIP
    """
    options = ServeOptions(**{**asdict(options or ServeOptions()), **overrides})
    _log_to_stderr()
    key = _api_key(options)
    engine = load_engine(model, device="cpu")
    heatmaps = options.heatmaps and engine.heatmaps
    del engine.model
    metrics_folder = metrics.prepare()
    atexit.register(metrics.remove, metrics_folder)  # serve() removes it sooner
    gate = GateState(options.max_queue)
    cores = os.cpu_count() or 1
    common = {"api_key": key, "gate": gate,
              "threads": max(1, cores // options.workers) if options.workers > 1 else None}
    apis = [PredictAPI(str(model), api_path=PREDICT_PATH, max_batch_size=options.max_batch_size,
                       batch_timeout=options.batch_timeout_ms / 1000, **common)]
    if heatmaps:
        apis.append(ExplainAPI(str(model), api_path=EXPLAIN_PATH, max_batch_size=1,
                               batch_timeout=0.0, **common))
    accelerator, devices = _accelerator(options.device)
    why_not = None if heatmaps else (
        "the service was started without them (--no-heatmaps)" if engine.heatmaps else
        "this service runs an exported ONNX file; serve a saved model folder to see them")
    info = {"name": engine.name, "classes": engine.classes, "decision_rule":
            engine.decision_rule, "heatmaps": heatmaps, "no_heatmaps_because": why_not,
            "image_sizes": list(engine.sizes),
            "api_key_required": key is not None, "max_body_bytes":
            int(options.max_body_mb * 1e6), "max_images": options.max_images,
            "wjsentiment": __version__}
    # A list of APIs even for one: LitServe then keeps /health and /info open (it guards
    # them with the API's own `authorize` only when it serves a lone API).
    server = ls.LitServer(
        apis, accelerator=accelerator, devices=devices,
        workers_per_device={PREDICT_PATH: options.workers, EXPLAIN_PATH: 1}
        if heatmaps else options.workers,
        timeout=options.timeout_s, model_metadata=info,
        middlewares=[(ServiceGate, {"state": gate, "guarded": (PREDICT_PATH, EXPLAIN_PATH)})])
    _add_routes(server, engine, options, apis[0]._check_key, gate)
    server.app.state.gate, server.app.state.metrics_folder = gate, metrics_folder
    return server


def serve(model: str | os.PathLike, options: ServeOptions | None = None,
          **overrides: Any) -> None:
    """Run the service until SIGTERM (or Ctrl-C), then stop it.

    On SIGTERM, ``/health`` turns not ready and new requests get 503 while the requests in
    flight finish (for at most ``timeout_s``); then the HTTP servers and workers stop and this
    returns, so the process exits with status 0. Parameters as for :func:`create_server`.
    """
    options = ServeOptions(**{**asdict(options or ServeOptions()), **overrides})
    main_pid, stopping, started = os.getpid(), [], []

    def drain(signum: int, frame: Any) -> None:
        if os.getpid() != main_pid:  # a child forked with this handler: die as by default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        stopping.append(signum)
        for gate in started:
            request_log.info('{"event": "draining", "in_flight": %d}', gate.in_flight)
            gate.drain(options.timeout_s)
        raise KeyboardInterrupt  # LitServer.run's own way out: it stops servers and workers

    previous = signal.signal(signal.SIGTERM, drain)
    server = None
    try:
        server = create_server(model, options)
        started.append(server.app.state.gate)
        request_log.info(json.dumps({"event": "starting", "model": str(model),
                                     "url": f"http://{options.host}:{options.port}/",
                                     "workers": options.workers, "device": options.device}))
        server.run(host=options.host, port=options.port, generate_client_file=False,
                   log_level="warning", access_log=False)
    except KeyboardInterrupt:
        if not stopping:  # Ctrl-C, not SIGTERM
            raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop_children()
        if server is not None:
            metrics.remove(server.app.state.metrics_folder)


def _stop_children(timeout: float = 10.0) -> None:
    """Stop what LitServe left running: nothing when it stopped by itself, its workers when it
    was stopped while starting (they would keep the process from exiting)."""
    for child in multiprocessing.active_children():
        child.terminate()
        child.join(timeout)
        if child.is_alive():
            child.kill()
