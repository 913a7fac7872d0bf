"""The ``serve`` subcommand: the HTTP service of :mod:`wjsentiment.serve`.

Its help, options and handler live beside the service (:mod:`wjsentiment.serve.cli`, built
from this package's parts), so that ``python -m wjsentiment.serve`` runs the same command;
its ``register`` is :func:`~wjsentiment.serve.cli.add_serve_parser`.
"""

from ..serve.cli import add_serve_parser as register

__all__ = ["register"]
