"""run an HTTP service for a saved model or an ONNX file

Serve a saved model folder (a classifier or an ensemble) or an exported .onnx file over HTTP:
POST /predict, POST /explain (heat maps), GET /health, GET /metrics, and a page at /.
Concurrent requests are batched into one forward pass (LitServe). SIGTERM finishes the
requests in flight, then exits 0. Needs the serve extra: pip install "wjsentiment[serve]".

examples:
  wjsentiment serve runs/photos/model
  WJS_KEY=s3cret wjsentiment serve model.onnx --host 0.0.0.0 --api-key-env WJS_KEY
  curl -F file=@photo.jpg http://127.0.0.1:8000/predict
"""

# The ``wjsentiment serve`` subcommand (this module's docstring is its help, as for the other
# commands of wjsentiment.cli, whose parts it uses): add_serve_parser adds it to the command
# line's subparsers, run_serve runs it, and ``python -m wjsentiment.serve`` runs it alone.
# Building the parser imports neither LitServe nor torch, so ``--help`` stays quick, and a
# missing model is reported before they are imported.

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from ..cli.arguments import (
    add_command,
    add_output_options,
    int_from,
    non_negative_float,
    positive_float,
    positive_int,
)
from ..cli.checks import CommandError
from ..exceptions import InputError
from .options import DEVICES, HOSTS, PORTS, ServeOptions

__all__ = ["add_serve_parser", "main", "run_serve"]

_DEFAULTS = {f.name: f.default for f in fields(ServeOptions)}


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to ``subparsers`` (from ``add_subparsers()``).

    Its defaults are ``run=run_serve`` and ``parser`` (the subparser), as the command line's
    other subcommands have them; ``-v/--verbose`` and ``-q/--quiet`` as they have them.

    Examples
    --------
    >>> parser = argparse.ArgumentParser(prog="wjsentiment")
    >>> _ = add_serve_parser(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["serve", "model.onnx", "--port", "9000"])
    >>> args.run is run_serve, args.port, args.host
    (True, 9000, '127.0.0.1')
    """
    p = add_command(subparsers, "serve", __doc__, run_serve)
    p.add_argument("model", help="a saved model folder, or an .onnx file from "
                                 "`wjsentiment export`")
    p.add_argument("--host", choices=HOSTS,
                   help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int_from(*PORTS), help="port to listen on")
    p.add_argument("--workers", type=positive_int, metavar="N",
                   help="inference worker processes, each with the model")
    p.add_argument("--max-batch-size", type=positive_int, metavar="N",
                   help="requests batched into one forward pass")
    p.add_argument("--batch-timeout-ms", type=non_negative_float, metavar="MS",
                   help="how long a batch waits to fill")
    p.add_argument("--api-key-env", metavar="VAR",
                   help="require the API key held in this environment variable on /predict, "
                        "/explain and /metrics (X-API-Key or Authorization: Bearer)")
    p.add_argument("--device", help=f"{', '.join(DEVICES)} (default: %(default)s; an .onnx "
                                    "file runs on the CPU)")
    p.add_argument("--max-body-mb", type=positive_float, metavar="MB",
                   help="largest request body; larger get 413")
    p.add_argument("--max-images", type=positive_int, metavar="N",
                   help="most images in one request")
    p.add_argument("--max-queue", type=positive_int, metavar="N",
                   help="most requests in flight; more get 503 with Retry-After")
    p.add_argument("--timeout", type=positive_float, metavar="S", dest="timeout_s",
                   help="longest wait in the queue before 504, and for the requests in flight "
                        "on SIGTERM")
    p.add_argument("--no-heatmaps", dest="heatmaps", action="store_false",
                   help="do not start the Grad-CAM worker behind POST /explain")
    add_output_options(p)
    p.set_defaults(**_DEFAULTS)
    return p


def run_serve(args: argparse.Namespace) -> int:
    """Handler of ``wjsentiment serve``: run the service until SIGTERM, then return 0.

    Raises
    ------
    FileNotFoundError
        When there is no model at ``args.model`` (before LitServe or torch is imported).
    CommandError
        Without the ``serve`` extra, with the command that installs it.
    SystemExit
        With status 2 and the usage line, for options that do not go together (as argparse
        answers a value out of range).
    InputError
        For an API key variable that is not set.
    """
    model = Path(args.model)
    if not model.exists():
        raise FileNotFoundError(f"No model at {str(model)!r}: pass a folder written by "
                                "`wjsentiment fit` (or .save()) or an .onnx file written by "
                                "`wjsentiment export`.")
    try:
        options = ServeOptions(**{name: getattr(args, name) for name in _DEFAULTS})
    except InputError as exc:
        args.parser.error(_option_words(args.parser, str(exc)))
    try:
        from .app import serve
    except ImportError as exc:
        raise CommandError(f"`wjsentiment serve` needs {exc.name!r}; install the serve extra: "
                           'pip install "wjsentiment[serve]".') from exc
    serve(model, options)
    return 0


def _option_words(parser: argparse.ArgumentParser, text: str) -> str:
    """``text`` (a message of :class:`ServeOptions`) with its field names written as the
    options that set them: ``timeout_s`` as ``--timeout``."""
    for action in parser._actions:
        if action.dest in _DEFAULTS and action.option_strings:
            text = re.sub(rf"\b{action.dest}\b", action.option_strings[-1], text)
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m wjsentiment.serve MODEL [options]``: ``wjsentiment serve`` on its own."""
    from ..cli import main as command_line

    return command_line(["serve", *(sys.argv[1:] if argv is None else argv)])
