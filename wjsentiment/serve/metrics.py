"""Prometheus metrics of the service, gathered over all its processes.

The service runs in several processes (LitServe's HTTP servers and inference workers), so the
metrics use ``prometheus_client``'s multiprocess mode: each process writes its counts to files
in ``PROMETHEUS_MULTIPROC_DIR``, and ``GET /metrics`` adds them up. :func:`prepare` sets that
folder (a new one, unless the variable is set already) before any metric is made; the metrics
themselves are made on first use in each process (:func:`instruments`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from functools import lru_cache
from typing import Any, NamedTuple

__all__ = ["Instruments", "instruments", "prepare", "remove", "render"]

#: The variable prometheus_client reads to find the metric files of every process.
DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
#: Latency buckets, in seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: Batch-size buckets (images, or requests, per forward pass).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
#: The Content-Type of the text format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Instruments(NamedTuple):
    """The metrics a process updates."""

    requests: Any  #: Counter of answered requests, by path and status.
    latency: Any  #: Histogram of the time to answer, by path.
    batch_images: Any  #: Histogram of images per forward pass.
    batch_requests: Any  #: Histogram of requests per forward pass.


def prepare() -> str | None:
    """Give the service's processes a folder for their metric files, and return it when it
    was made here (the caller removes it at the end); None when the variable was set."""
    if os.environ.get(DIRECTORY_VARIABLE):
        return None
    folder = tempfile.mkdtemp(prefix="wjsentiment-metrics-")
    os.environ[DIRECTORY_VARIABLE] = folder
    import prometheus_client.values

    # prometheus_client picks its storage when first imported: pick again, in case it was
    # imported before the variable was set (the metrics are only made after this).
    prometheus_client.values.ValueClass = prometheus_client.values.get_value_class()
    return folder


def remove(folder: str | None) -> None:
    """Delete a metrics folder made by :func:`prepare` (None: nothing to do)."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
        if os.environ.get(DIRECTORY_VARIABLE) == folder:
            del os.environ[DIRECTORY_VARIABLE]


@lru_cache(maxsize=1)
def instruments() -> Instruments:
    """This process's metrics, made on first use."""
    from prometheus_client import Counter, Histogram

    return Instruments(
        Counter("wjsentiment_requests", "HTTP requests answered, by path and status.",
                ["path", "status"]),
        Histogram("wjsentiment_request_duration_seconds",
                  "Time from receiving a request to answering it.", ["path"],
                  buckets=LATENCY_BUCKETS),
        Histogram("wjsentiment_batch_images", "Images per forward pass of the model.",
                  buckets=BATCH_BUCKETS),
        Histogram("wjsentiment_batch_requests", "Requests per forward pass of the model.",
                  buckets=BATCH_BUCKETS),
    )


def render(in_flight: int, queue_limit: int) -> bytes:
    """The metrics of every process of the service, in Prometheus' text format, with the
    requests in flight (accepted and not yet answered: the queue's depth) and its limit."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.multiprocess import MultiProcessCollector

    class Queue:
        def collect(self):
            yield GaugeMetricFamily("wjsentiment_requests_in_flight", "Requests accepted and "
                                    "not yet answered (queued or in work).", value=in_flight)
            yield GaugeMetricFamily("wjsentiment_requests_in_flight_limit", "Requests in "
                                    "flight past which new ones get 503.", value=queue_limit)

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(Queue())
    return generate_latest(registry)
