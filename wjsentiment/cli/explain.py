"""heat maps of where a saved model sees its evidence

Grad-CAM heat maps for a model saved by `wjsentiment fit` (or .save(); an ensemble too):
one PNG per image with the heat map over the image (at its aspect ratio), and
OUT/index.html listing them with the predicted label, its probability and the
decision rule. Inputs are image files and/or folders (searched recursively for
image files); unreadable ones are skipped, and listed on stderr and in the index.

examples:
  wjsentiment explain runs/photos/model new_photos/ --out runs/explain
  wjsentiment explain runs/photos/model a.jpg --target Positive --out why/
"""

from __future__ import annotations

import argparse
from typing import Any

from . import arguments as a
from .checks import CommandError, saved_model, writable_folder
from .inputs import ImageInputs


def register(sub: Any) -> None:
    p = a.add_command(sub, "explain", __doc__, run)
    a.add_model_arguments(p)
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER",
                   help="image files and/or folders of images")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for the heat-map PNGs and index.html")
    p.add_argument("--target", metavar="LABEL", default=None,
                   help="explain this class for every image (default: the predicted class)")
    p.add_argument("--layer", metavar="NAME", default=None,
                   help="backbone layer to explain (default: its last convolutional feature "
                        "map)")
    p.add_argument("--batch-size", type=a.positive_int, default=32, metavar="N",
                   help="images explained per step")
    a.add_output_options(p)


def run(args: argparse.Namespace) -> int:
    model_dir = saved_model(args.model)
    inputs = ImageInputs(args.inputs)
    out = writable_folder(args.out)
    inputs.check_output_folder(out)
    inputs.check_folders()
    from ..explain import PREDICTED, check_layer, save_explanations

    model = a.load_model(model_dir, args.device)
    classes = {str(c): c for c in model.classes_.tolist()}  # classes may be numbers
    if args.target is not None and args.target not in classes:
        raise CommandError(f"--target {args.target!r} is not a class of the model; its "
                           f"classes are {list(classes)}.")
    check_layer(model, args.layer)
    with a.progress(args, "explain") as bar:
        saved = save_explanations(model, inputs, out, layer=args.layer, title=args.model,
                                  target=classes.get(args.target, PREDICTED),
                                  batch_size=args.batch_size, on_chunk=bar.update)
    for path, reason in saved.skipped:
        a.info(args, f"Skipped {path}: {reason}")
    if not saved.rows:
        raise CommandError(f"none of the {len(saved.skipped)} input(s) could be read.")
    skipped = f"; skipped {len(saved.skipped)} input(s)" if saved.skipped else ""
    print(f"Wrote {len(saved.rows)} heat maps and {saved.index}{skipped}")
    return 0
