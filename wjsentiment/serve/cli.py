"""The ``wjsentiment serve`` subcommand: :func:`add_serve_parser` adds it to the command line's
subparsers, and :func:`run_serve` is its handler. ``python -m wjsentiment.serve`` runs it alone.

Building the parser imports neither LitServe nor torch, so ``wjsentiment --help`` stays quick,
and a missing model is reported before they are imported.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from .options import HOSTS, ServeOptions

__all__ = ["add_serve_parser", "main", "run_serve"]

_DEFAULTS = {f.name: f.default for f in fields(ServeOptions)}
_EXTRA_HINT = 'install the serve extra: pip install "wjsentiment[serve]"'


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to ``subparsers`` (from ``add_subparsers()``).

    Its defaults are ``handler=run_serve`` and ``parser`` (the subparser), as the command
    line's other subcommands have them, and ``verbose=1``.

    Examples
    --------
    >>> parser = argparse.ArgumentParser(prog="wjsentiment")
    >>> _ = add_serve_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["serve", "model.onnx", "--port", "9000"])
    >>> args.handler is run_serve, args.port, args.host
    (True, 9000, '127.0.0.1')
    """
    d = _DEFAULTS
    p = subparsers.add_parser(
        "serve", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="run an HTTP service for a saved model or an ONNX file",
        description="Serve a saved model folder (a classifier or an ensemble) or an exported "
                    ".onnx file over HTTP:\nPOST /predict, POST /explain (heat maps), GET "
                    "/health, GET /metrics, and a page at /.\nConcurrent requests are "
                    "batched into one forward pass (LitServe). SIGTERM finishes the\nrequests "
                    "in flight, then exits 0. Needs the serve extra: "
                    "pip install \"wjsentiment[serve]\".",
        epilog="examples:\n"
               "  wjsentiment serve runs/photos/model\n"
               "  WJS_KEY=s3cret wjsentiment serve model.onnx --host 0.0.0.0 "
               "--api-key-env WJS_KEY\n"
               "  curl -F file=@photo.jpg http://127.0.0.1:8000/predict")
    p.add_argument("model", help="a saved model folder, or an .onnx file from "
                                 "`wjsentiment export`")
    p.add_argument("--host", default=d["host"], choices=HOSTS,
                   help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=d["port"], help="default: %(default)s")
    p.add_argument("--workers", type=_positive(int), default=d["workers"], metavar="N",
                   help="inference worker processes, each with the model (default: "
                        "%(default)s)")
    p.add_argument("--max-batch-size", type=_positive(int), default=d["max_batch_size"],
                   metavar="N", help="requests batched into one forward pass (default: "
                                     "%(default)s)")
    p.add_argument("--batch-timeout-ms", type=float, default=d["batch_timeout_ms"],
                   metavar="MS", help="how long a batch waits to fill (default: %(default)s)")
    p.add_argument("--api-key-env", default=d["api_key_env"], metavar="VAR",
                   help="require the API key held in this environment variable on /predict, "
                        "/explain and /metrics (X-API-Key or Authorization: Bearer)")
    p.add_argument("--device", default=d["device"],
                   help="auto, cpu, cuda or cuda:N (default: %(default)s; an .onnx file runs "
                        "on the CPU)")
    p.add_argument("--max-body-mb", type=_positive(float), default=d["max_body_mb"],
                   metavar="MB", help="largest request body; larger get 413 (default: "
                                      "%(default)s)")
    p.add_argument("--max-images", type=_positive(int), default=d["max_images"], metavar="N",
                   help="most images in one request (default: %(default)s)")
    p.add_argument("--max-queue", type=_positive(int), default=d["max_queue"], metavar="N",
                   help="most requests in flight; more get 503 with Retry-After (default: "
                        "%(default)s)")
    p.add_argument("--timeout", type=_positive(float), default=d["timeout_s"], metavar="S",
                   dest="timeout_s", help="longest wait in the queue before 504, and for the "
                                          "requests in flight on SIGTERM (default: "
                                          "%(default)s)")
    p.add_argument("--no-heatmaps", dest="heatmaps", action="store_false",
                   help="do not start the Grad-CAM worker behind POST /explain")
    p.set_defaults(handler=run_serve, parser=p, verbose=1)
    return p


def run_serve(args: argparse.Namespace, parser: argparse.ArgumentParser | None = None) -> int:
    """Handler of ``wjsentiment serve``: run the service until SIGTERM, then return 0.

    Raises
    ------
    FileNotFoundError
        When there is no model at ``args.model`` (before LitServe or torch is imported).
    ImportError
        Without the ``serve`` extra, with the command that installs it.
    ValueError
        For an option out of range or an API key variable that is not set.
    """
    model = Path(args.model)
    if not model.exists():
        raise FileNotFoundError(f"No model at {str(model)!r}: pass a folder written by "
                                "`wjsentiment fit` (or .save()) or an .onnx file written by "
                                "`wjsentiment export`.")
    options = ServeOptions(**{name: getattr(args, name) for name in _DEFAULTS})
    try:
        from .app import serve
    except ImportError as exc:
        raise ImportError(f"`wjsentiment serve` needs {exc.name!r}; {_EXTRA_HINT}.") from exc
    serve(model, options)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m wjsentiment.serve MODEL [options]``: the subcommand on its own."""
    parser = argparse.ArgumentParser(prog="python -m wjsentiment")
    add_serve_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.handler(args, args.parser)
    except (ImportError, OSError, ValueError) as exc:
        print(f"wjsentiment serve: error: {exc}", file=sys.stderr)
        return 1
