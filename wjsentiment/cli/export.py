"""write a saved model to one ONNX file for serving

Export a model saved by `wjsentiment fit` (or .save(); an ensemble too) to one ONNX file:
uint8 RGB images (batch, size, size, 3) in, class probabilities out, the classes,
decision rule and class prior in its metadata. Load it with wjsentiment.export.load_onnx
or any ONNX runtime. Needs the export extra: pip install "wjsentiment[export]".

examples:
  wjsentiment export runs/photos/model --out model.onnx
  wjsentiment export runs/ensemble --out ensemble.onnx --opset 17
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from . import arguments as a
from .checks import CommandError, saved_model, writable_file


def register(sub: Any) -> None:
    p = a.add_command(sub, "export", __doc__, run)
    a.add_model_arguments(p, device=False)
    p.add_argument("--out", required=True, metavar="FILE",
                   help="the .onnx file to write (written atomically)")
    p.add_argument("--opset", type=a.positive_int, default=None, metavar="N",
                   help="ONNX opset version (default: the one torch's exporter recommends)")
    a.add_output_options(p)


def run(args: argparse.Namespace) -> int:
    model_dir = saved_model(args.model)
    writable_file(args.out)
    from .. import load

    model = load(model_dir, device="cpu")
    try:
        path = model.export_onnx(args.out, opset=args.opset)
    except ImportError as exc:
        raise CommandError(str(exc)) from exc
    print(f"Exported {type(model).__name__} ({len(model.classes_)} classes) to {path} "
          f"({os.path.getsize(path) / 1e6:.1f} MB)")
    return 0
