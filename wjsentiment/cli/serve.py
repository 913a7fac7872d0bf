"""The ``serve`` subcommand: the HTTP service of :mod:`wjsentiment.serve`.

Its options and handler live beside the service (:mod:`wjsentiment.serve.cli`), so that
``python -m wjsentiment.serve`` runs the same command; this module registers it.
"""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    from ..serve.cli import add_serve_parser, run_serve

    add_serve_parser(sub).set_defaults(run=run_serve)
