"""The labelled images of ``fit`` and ``evaluate``: a folder per class, a CSV of paths and
labels, or the downloaded CrowdFlower photos."""

from __future__ import annotations

import argparse
import os
from typing import Any

from .arguments import fraction
from .checks import CommandError, one_line


def add_data_source(parser: argparse.ArgumentParser, *, crowdflower: bool) -> None:
    """The options that name the labelled images (one of --folder, --csv, --crowdflower)."""
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
        group.add_argument("--min-confidence", type=fraction, default=0.0, metavar="P",
                           help="keep CrowdFlower images whose label confidence is >= P")
        group.add_argument("--weight-by-confidence", action="store_true",
                           help="weight each CrowdFlower image in training by its label "
                                "confidence (the crowd's agreement), as sample_weight")


def check_source_options(args: argparse.Namespace) -> None:
    """Usage errors of the source's options (exit status 2)."""
    if args.csv is None:
        for dest in ("image_col", "label_col", "root", "group_col"):
            if getattr(args, dest, None) != args.parser.get_default(dest):
                args.parser.error(f"--{dest.replace('_', '-')} only applies with --csv")
    if getattr(args, "weight_by_confidence", False) and not args.crowdflower:
        args.parser.error("--weight-by-confidence only applies with --crowdflower")


def check_source_path(args: argparse.Namespace) -> None:
    """Refuse a --folder or --csv that does not exist, before any work."""
    for flag, value in (("--folder", args.folder), ("--csv", args.csv)):
        if value is not None and not os.path.exists(value):
            raise CommandError(f"{flag} {value!r} does not exist.")


def load_labelled(args: argparse.Namespace) -> Any:
    """The Bunch of labelled images named by --folder / --csv / --crowdflower.

    With ``fit --on-bad-image skip`` the files are not opened here: the estimator skips the
    unreadable ones."""
    from ..datasets import fetch_image_sentiment, load_image_csv, load_image_folder

    check_images = getattr(args, "on_bad_image", "raise") == "raise"
    try:
        if args.folder is not None:
            return load_image_folder(args.folder, check_images=check_images)
        if args.csv is not None:
            return load_image_csv(args.csv, args.image_col, args.label_col, root=args.root,
                                  check_images=check_images)
    except ValueError as exc:  # the package's own errors, and a CSV file pandas cannot parse
        raise CommandError(one_line(exc)) from exc
    data = fetch_image_sentiment(args.data_home, download=False,
                                 min_confidence=args.min_confidence, verbose=0)
    if not data.paths:
        where = args.data_home or "the default data home"
        raise CommandError(
            f"no CrowdFlower images on disk in {where}; run `wjsentiment download"
            f"{' --data-home ' + args.data_home if args.data_home else ''}` first."
        )
    return data


def groups(args: argparse.Namespace, data: Any) -> Any:
    """The --group-col column of a --csv source, or None."""
    if getattr(args, "group_col", None) is None:
        return None
    if args.group_col not in data.frame.columns:
        raise CommandError(f"--group-col {args.group_col!r} is not a column of {args.csv} "
                           f"(columns: {', '.join(map(str, data.frame.columns))}).")
    return data.frame[args.group_col].to_numpy()


def sample_weight(args: argparse.Namespace, data: Any) -> Any:
    """The label confidence of each image of a --crowdflower source with
    --weight-by-confidence, or None."""
    if not getattr(args, "weight_by_confidence", False):
        return None
    return data.frame.loc[data.frame["available"], "confidence"].to_numpy()
