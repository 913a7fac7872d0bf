"""train a SentimentClassifier and save it

Fine-tune a timm backbone on labelled images and save the model to OUT/model
(load it with wjsentiment.load), with its training curves in OUT/training_curves.png.
The options and paths are checked before any image is read.

examples:
  wjsentiment fit --folder photos/ --out runs/photos
  wjsentiment fit --csv labels.csv --image-col file --label-col sentiment \\
      --backbone tf_efficientnet_lite0 --finetune head --epochs 30 --out runs/csv
  wjsentiment fit --crowdflower --data-home data --min-confidence 0.66 \\
      --weight-by-confidence --sampling undersample --head mlp --validation-fraction 0.15 \\
      --out runs/cf
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from . import arguments as a
from . import labelled
from .checks import one_line, writable_folder


def register(sub: Any) -> None:
    p = a.add_command(sub, "fit", __doc__, run)
    labelled.add_data_source(p, crowdflower=True)
    p.add_argument("--group-col", metavar="COL", default=None,
                   help="with --csv: column of groups (e.g. an id shared by near-duplicate "
                        "images) kept whole on one side of the held-out split")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: OUT/model and OUT/training_curves.png")
    a.add_estimator_options(p)
    a.add_output_options(p)


def run(args: argparse.Namespace) -> int:
    labelled.check_source_options(args)
    from ..estimator import SentimentClassifier

    clf = SentimentClassifier(**a.estimator_params(args), verbose=min(args.verbose, 1))
    try:  # the estimator's own checks, before any image is read: a bad value is a usage error
        clf.check_params()
    except ValueError as exc:
        args.parser.error(a.option_words(one_line(exc)))
    out = writable_folder(args.out)
    labelled.check_source_path(args)
    data = labelled.load_labelled(args)
    a.info(args, f"Training {args.backbone} ({args.finetune}) on {len(data.paths)} images, "
                 f"{len(set(data.target.tolist()))} classes.")
    start = time.perf_counter()
    clf.fit(data.paths, data.target, groups=labelled.groups(args, data),
            sample_weight=labelled.sample_weight(args, data))
    seconds = time.perf_counter() - start
    from ..training import is_main_process

    if not is_main_process():  # under torchrun every rank holds the model; rank 0 writes it
        return 0
    model_dir = clf.save(out / "model")
    a.info(args, f"Backbone weights: {clf.weights_source_}.")
    last = clf.history_[-1] if clf.history_ else {}
    scores = ", ".join(f"{k} {last[k]:.3f}" for k in ("train_loss", "valid_loss", "valid_f1")
                       if k in last)
    print(f"Trained {clf.n_epochs_} epoch(s) in {seconds:.0f}s ({scores}); "
          f"model saved to {model_dir}")
    from ..plotting import plot_training_curves, save_figure

    save_figure(plot_training_curves(clf), out / "training_curves.png")
    a.info(args, f"Training curves: {out / 'training_curves.png'}")
    return 0
