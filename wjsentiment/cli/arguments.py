"""The pieces of the command line's parsers: a subcommand's parser, value types, the options
of the estimator's parameters (from :mod:`wjsentiment.params`) and the output options; and
what the commands share as they run: status messages, progress bars, loading a model."""

from __future__ import annotations

import argparse
import contextlib
import math
import re
import sys
from collections.abc import Callable, Iterator
from numbers import Integral, Real
from typing import Any

from ..params import CLASSIFIER_PARAMS, Param, Range, describe

PROG = "wjsentiment"


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the hand-wrapped descriptions and examples; show the defaults that say something."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.nargs == 0 or "default" in text
                or action.default is None or action.default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def add_command(sub: Any, name: str, doc: str,
                run: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    """The parser of subcommand ``name``, which ``main`` answers with ``run(args)``.

    ``doc`` (the command module's docstring) is its help as ``--help`` shows it: a one-line
    summary, a blank line, the description, and from a line "examples:" on, the examples
    (and anything after them, such as the exit statuses). The command then adds its
    arguments, and :func:`add_output_options` last.
    """
    summary, _, rest = doc.strip().partition("\n\n")
    description, _, examples = rest.partition("\nexamples:\n")
    parser = sub.add_parser(name, formatter_class=Formatter, help=summary,
                            description=description, epilog=f"examples:\n{examples}")
    parser.set_defaults(run=run, parser=parser)
    return parser


def add_model_arguments(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    """The folder of a saved model, and (with ``device``) ``--device`` to run it on."""
    parser.add_argument("model", help="folder of a saved model (e.g. runs/photos/model)")
    if device:
        parser.add_argument("--device", default=None,
                            help="device to run on (default: the one the model was saved "
                                 "with; 'auto' picks CUDA when available)")


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """``-v/--verbose`` and ``-q/--quiet``, which every command has."""
    group = parser.add_argument_group("output")
    loud = group.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", dest="verbose", action="store_const", const=2,
                      default=1, help="on failure also print the traceback, and show warnings "
                                      "with their source (and, for download, the failed URLs)")
    loud.add_argument("-q", "--quiet", dest="verbose", action="store_const", const=0,
                      help="no progress bars or status messages (results are still written)")


def info(args: argparse.Namespace, message: str) -> None:
    """Status message on stderr (stdout may carry a CSV); silent with --quiet."""
    if args.verbose > 0:
        print(message, file=sys.stderr, flush=True)


def progress(args: argparse.Namespace, desc: str) -> Any:
    """A progress bar over images on stderr (stdout may carry a CSV); hidden with --quiet."""
    from tqdm.auto import tqdm

    return tqdm(unit="img", desc=desc, disable=args.verbose == 0, file=sys.stderr)


def load_model(model_dir: str, device: str | None) -> Any:
    """The model saved in ``model_dir``, on ``device`` (None: the saved one), without progress
    bars of its own: the command shows one."""
    from .. import load
    from ..scale import quiet

    return quiet(load(model_dir, device=device))


# ---------------------------------------------------------------------------- value types
def _number(kind: type, accept: Callable[[float], bool], what: str) -> Callable[[str], Any]:
    """An argparse type: parse ``text`` as ``kind`` and keep it if ``accept`` says so."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
fraction = _number(float, lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1")
positive_float = _number(float, lambda v: v > 0, "a positive number")
non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")


def int_from(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``.

    Examples
    --------
    >>> int_from(1, 9)("7")
    7
    """
    return _number(int, lambda v: low <= v <= high, f"an integer from {low} to {high}")

#: The types above by the interval they accept: an estimator parameter declared with one of
#: these intervals alone is parsed (and refused, in the same words) by its type.
_NUMBER_TYPES = {Range(Integral, 1, None): positive_int,
                 Range(Integral, 0, None): non_negative_int,
                 Range(Real, 0, None, closed="neither"): positive_float,
                 Range(Real, 0, None): non_negative_float}


# ------------------------------------------------------------ options of estimator parameters
def _text(value: Any) -> str:
    """How the command line writes a parameter value: None as "none"."""
    return "none" if value is None else str(value)


def _candidates(param: Param, text: str) -> Iterator[Any]:
    """The values ``text`` may stand for, in the order they are tried."""
    kinds = [c.type if isinstance(c, Range) else c for c in param.specs]
    if text.lower() == "none":
        yield None
    if Integral in kinds or "random_state" in kinds:
        with contextlib.suppress(ValueError):
            yield int(text)
    if Real in kinds:
        with contextlib.suppress(ValueError):
            yield float(text)
    yield text


def _value_type(param: Param) -> Callable[[str], Any]:
    """An argparse type: the first value ``text`` stands for that ``param`` accepts."""

    def parse(text: str) -> Any:
        for value in _candidates(param, text):
            if param.accepts(value):
                return value
        raise argparse.ArgumentTypeError(f"{param.name} must be {describe(param)}, got {text!r}")

    return parse


#: The parameters of SentimentClassifier that ``fit`` has options for.
_EXPOSED = tuple(param for param in CLASSIFIER_PARAMS if param.cli is not None)


def add_estimator_options(parser: argparse.ArgumentParser) -> None:
    """One option per parameter of SentimentClassifier that the command line exposes, with
    the type, choices and default its declaration gives (:mod:`wjsentiment.params`)."""
    groups: dict[str, Any] = {}
    for param in _EXPOSED:
        if param.cli.group not in groups:
            groups[param.cli.group] = parser.add_argument_group(param.cli.group)
        options: dict[str, Any] = {"dest": param.name, "help": param.help}
        if param.specs == ("boolean",):
            options["action"] = "store_false" if param.default else "store_true"
            if param.default:
                options["help"] = f"no {param.help}"
        elif param.choices is not None:
            options.update(choices=[_text(c) for c in param.choices],
                           default=_text(param.default))
        else:
            number = _NUMBER_TYPES.get(param.specs[0]) if len(param.specs) == 1 else None
            options.update(type=number or _value_type(param), default=param.default,
                           metavar=param.cli.metavar)
        groups[param.cli.group].add_argument(param.option, **options)


def choice_values(args: argparse.Namespace) -> argparse.Namespace:
    """Turn the texts of choice options ("none", ...) back into parameter values."""
    for param in _EXPOSED:
        if param.choices is not None and hasattr(args, param.name):
            texts = {_text(c): c for c in param.choices}
            setattr(args, param.name, texts[getattr(args, param.name)])
    return args


def estimator_params(args: argparse.Namespace) -> dict[str, Any]:
    """The SentimentClassifier parameters the command line gave (or defaulted)."""
    return {param.name: getattr(args, param.name) for param in _EXPOSED}


def option_words(text: str) -> str:
    """``text`` (the estimator's message) with its parameter names written as the options
    that set them: ``early_stopping=True`` as ``--early-stopping``, ``validation_fraction``
    as ``--validation-fraction`` (names of one plain word are left alone: they read as words).

    Examples
    --------
    >>> option_words("early_stopping=True needs validation_fraction > 0")
    '--early-stopping needs --validation-fraction > 0'
    """
    for param in _EXPOSED:
        plain = rf"|\b{param.name}\b" if "_" in param.name else ""
        text = re.sub(rf"\b{param.name}=True\b{plain}", param.option, text)
    return text
