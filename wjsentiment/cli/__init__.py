"""The ``wjsentiment`` command: download data, fit, predict, evaluate, run the demo,
explain predictions with heat maps and export models to ONNX.

Each subcommand is a module of this package that parses its arguments and calls the public
API. The package's errors and file errors are printed in one line with exit status 1; usage
errors, option values out of range included, exit with status 2 (argparse's convention);
success exits 0; any other exception is a bug and shows its traceback. ``predict`` succeeds
when it could read at least one of its images. Warnings are shown in one line too. Paths are
checked before anything heavy is imported, so a mistyped one is answered at once.

Run ``wjsentiment --help`` or ``wjsentiment <command> --help`` for the options, or use
``python -m wjsentiment`` when the entry point is not on ``PATH``.

A new subcommand is a module of this package with a ``register(subparsers)`` function
(which calls :func:`~wjsentiment.cli.arguments.add_command` with the function that runs it)
and its name in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from importlib import import_module

from .. import __version__
from ..exceptions import WjsentimentError
from .arguments import PROG, choice_values
from .checks import CommandError, one_line

__all__ = ["COMMANDS", "CommandError", "build_parser", "main", "parse_args",
           "reported_errors"]

#: The subcommands, in the order ``wjsentiment --help`` lists them: modules of this package.
COMMANDS = ("download", "fit", "predict", "evaluate", "demo", "explain", "export",
            "serve")

def reported_errors() -> tuple[type[BaseException], ...]:
    """The errors a command reports in one line with exit status 1: its own
    :class:`CommandError`, file errors (``OSError``) and the package's errors
    (:class:`~wjsentiment.exceptions.WjsentimentError`). Anything else is a bug, shown with
    its traceback."""
    return (CommandError, OSError, WjsentimentError)


def build_parser() -> argparse.ArgumentParser:
    """The ``wjsentiment`` argument parser with its subcommands.

    Returns
    -------
    argparse.ArgumentParser
        One sub-parser per module of :data:`COMMANDS`; each sets ``args.run``, the function
        that runs the command.

    Examples
    --------
    >>> args = build_parser().parse_args(["demo", "--out", "x", "--quiet"])
    >>> args.command, args.out, args.verbose
    ('demo', 'x', 0)
    """
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Image sentiment classification (Highly negative .. Highly positive) with "
                    "fine-tuned\ntimm backbones. Run `wjsentiment <command> --help` for the "
                    "options of a command.",
        epilog="examples:\n"
               "  wjsentiment demo                          # offline, a few minutes\n"
               "  wjsentiment fit --folder photos/ --out runs/photos\n"
               "  wjsentiment predict runs/photos/model new/ --out predictions.csv\n"
               "  wjsentiment evaluate runs/photos/model --folder test/ --out runs/eval",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name in COMMANDS:
        import_module(f".{name}", __name__).register(sub)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line; options of ``fit`` left out take SentimentClassifier's defaults
    (the options hold the parameters' values: "none" becomes None).

    Examples
    --------
    >>> parse_args(["fit", "--folder", "photos", "--out", "runs/x"]).backbone
    'resnet18'
    """
    return choice_values(build_parser().parse_args(argv))


@contextlib.contextmanager
def _warnings_in_one_line(args: argparse.Namespace) -> Iterator[None]:
    """Show each warning as ``wjsentiment <command>: warning: ...``, without Python's source
    line (with --verbose, as Python shows them)."""
    shown = warnings.formatwarning
    if args.verbose < 2:
        warnings.formatwarning = lambda message, *_, **__: (
            f"{PROG} {args.command}: warning: {one_line(message)}\n")
    try:
        yield
    finally:
        warnings.formatwarning = shown


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``wjsentiment`` command line.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 1 when the command failed (a one-line reason is printed on stderr).
        Usage errors exit with status 2 through :class:`SystemExit`, as argparse does.

    Examples
    --------
    >>> main(["predict", "no/such/model", "no/such/image.png"])
    1
    """
    args = parse_args(argv)
    with _warnings_in_one_line(args):
        try:
            return args.run(args)
        except KeyboardInterrupt:
            print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
            return 130
        except reported_errors() as exc:
            if args.verbose > 1:
                traceback.print_exc()
            print(f"{PROG} {args.command}: error: {one_line(exc)}", file=sys.stderr)
            return 1
