"""Prediction over many images, and the glue to run wjsentiment on a Dask cluster.

- :mod:`wjsentiment.scale.stream`: :func:`predict_frame` (one row per image, unreadable ones
  too) and :func:`predict_csv` (a CSV file written chunk by chunk, locked while it is written,
  resumable), what ``wjsentiment predict`` runs.
- :mod:`wjsentiment.scale.dask`: :func:`~wjsentiment.scale.dask.predict_partitions` over a
  ``dask.dataframe`` of paths, :func:`~wjsentiment.scale.dask.load_model` (one load per
  worker process) and the worker plugin :func:`~wjsentiment.scale.dask.worker_setup`.

The Dask names are importable from here too; Dask itself is imported only when one of them is
asked for (``pip install "wjsentiment[dask]"``). So is
:func:`~wjsentiment.inference.rule_sentence`, the decision rule in words, which lives with the
inference seam. See the guide page "Scaling out".
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from .stream import (
    PredictionsFileError,
    PredictionSummary,
    output_lock,
    predict_csv,
    predict_frame,
    prediction_columns,
    quiet,
)

#: Names imported on first use, and their modules: Dask, and torch for the inference seam.
_LAZY = {"rule_sentence": "..inference", "WorkerSetup": ".dask", "load_model": ".dask",
         "predict_partitions": ".dask", "worker_setup": ".dask"}

__all__ = ["PredictionSummary", "PredictionsFileError", "output_lock", "predict_csv",
           "predict_frame", "prediction_columns", "quiet", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
