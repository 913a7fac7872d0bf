"""``wjsentiment serve``: an HTTP service for a saved model or an exported ONNX file.

Built on LitServe (FastAPI underneath): requests that arrive together are batched into one
forward pass. See the guide page "Serving". Needs the ``serve`` extra:
``pip install "wjsentiment[serve]"``.

The names below are imported on first use, so that the command line's parser does not wait
for LitServe or torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["ServeOptions", "create_server", "serve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(import_module(".app", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
