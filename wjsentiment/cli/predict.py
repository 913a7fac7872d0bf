"""predict the sentiment of images with a saved model

Predict with a model saved by `wjsentiment fit` (or .save()). Inputs are image files,
folders (searched recursively for image files) and lists of paths: a .csv file
(the paths in its --path-col column) or a .txt file (one path a line); relative
paths in a list start from the list's folder. Writes a CSV with one row per image
and the columns path, label, rule (the decision rule that chose the label), one
proba_<class> column per class, and error: empty when the image was read, else
why it could not be (its label and probabilities are then empty). The images
are read and the rows written --batch-size at a time, so memory stays bounded
however many there are; an interrupted run continues with --resume. The output
is locked while it is written, and may not be one of the inputs.

examples:
  wjsentiment predict runs/photos/model new_photos/ --out predictions.csv
  wjsentiment predict runs/photos/model a.jpg b.png > predictions.csv
  wjsentiment predict runs/photos/model million.csv --path-col file \\
      --out predictions.csv --resume   # again after an interruption

exit status:
  0  predictions written (rows of unreadable images carry an error)
  1  nothing written: no image could be read, the model could not be loaded,
     an input does not exist, or another run is writing --out (a one-line
     reason on stderr)
  2  usage error
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..scale.stream import PATH_COLUMN
from . import arguments as a
from .checks import CommandError, saved_model, writable_file
from .inputs import ImageInputs


def register(sub: Any) -> None:
    p = a.add_command(sub, "predict", __doc__, run)
    a.add_model_arguments(p)
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
    p.add_argument("--batch-size", type=a.positive_int, default=256, metavar="N",
                   help="images decoded, classified and written per step")
    a.add_output_options(p)


def run(args: argparse.Namespace) -> int:
    if args.resume and args.output is None:
        args.parser.error("--resume needs --out FILE: the output of the interrupted run")
    model_dir = saved_model(args.model)
    inputs = ImageInputs(args.inputs, path_col=args.path_col)
    if args.output is not None:
        inputs.check_output_file(writable_file(args.output))
    inputs.check_folders()
    from ..images import clear_image_cache
    from ..inference import rule_sentence
    from ..scale import predict_csv

    model = a.load_model(model_dir, args.device)
    a.info(args, rule_sentence(model.decision_rule_))
    with a.progress(args, "predict") as bar:

        def chunk_done(n: int) -> None:
            clear_image_cache()  # each image is read once: keep no decoded pixels
            bar.update(n)

        summary = predict_csv(model, inputs, sys.stdout if args.output is None else args.output,
                              batch_size=args.batch_size, resume=args.resume,
                              on_chunk=chunk_done)
    if inputs.blank:
        a.info(args, f"Left out {inputs.blank} empty entries of the path lists.")
    n, first = summary.n_predicted, summary.first_failure
    if n == 0 and summary.n_skipped:
        a.info(args, f"All {summary.n_skipped} images are already in {args.output}; "
                     "nothing to do.")
        return 0
    if n == 0:
        raise CommandError("the path lists name no image.")
    if not summary.written:
        raise CommandError(f"none of the {n} image(s) could be read (first: {first[0]}: "
                           f"{first[1]}); nothing was written.")
    if args.output is not None:
        skipped = f" (skipped {summary.n_skipped} already there)" if summary.n_skipped else ""
        a.info(args, f"Wrote {n} predictions to {args.output}{skipped}")
    if summary.n_failed:
        a.info(args, f"{summary.n_failed} of {n} image(s) could not be read (first: "
                     f"{first[0]}: {first[1]}); their rows give the error.")
    return 0
