"""write a saved model to one ONNX file for serving

Export a model saved by `wjsentiment fit` (or .save(); an ensemble too) to one ONNX file:
uint8 RGB images (batch, size, size, 3) in, class probabilities out, the classes,
decision rule and class prior in its metadata. Load it with wjsentiment.export.load_onnx
or any ONNX runtime. Needs the export extra: pip install "wjsentiment[export]".

With --quantize int8 the file is quantized for fast CPU inference (onnxruntime, static,
calibrated on the images of --calibration: a folder of class folders, whose labels then
also compare macro-F1 and log-loss, or a plain folder of images). The export says whether
the int8 model keeps the parity with the float one; where it does not, use the float file.

examples:
  wjsentiment export runs/photos/model --out model.onnx
  wjsentiment export runs/ensemble --out ensemble.onnx --opset 17
  wjsentiment export runs/photos/model --out model.int8.onnx --quantize int8 \\
      --calibration photos/
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
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="write an int8 model for the CPU (needs --calibration)")
    p.add_argument("--calibration", dest="calibration_dir", metavar="DIR", default=None,
                   help="images like those the model will see (a class-folder layout gives "
                        "labels for the parity check)")
    p.add_argument("--calibration-images", type=a.positive_int, default=None, metavar="N",
                   help="images that calibrate the int8 model (default: the quantizer's)")
    a.add_output_options(p)


def run(args: argparse.Namespace) -> int:
    if (args.quantize is None) != (args.calibration_dir is None):
        args.parser.error("--quantize int8 and --calibration DIR go together")
    model_dir = saved_model(args.model)
    writable_file(args.out)
    model = a.load_model(model_dir, "cpu")
    try:
        if args.quantize:
            return _export_int8(model, args)
        path = model.export_onnx(args.out, opset=args.opset)
    except ImportError as exc:
        raise CommandError(str(exc)) from exc
    print(f"Exported {type(model).__name__} ({len(model.classes_)} classes) to {path} "
          f"({os.path.getsize(path) / 1e6:.1f} MB)")
    return 0


def _export_int8(model: Any, args: argparse.Namespace) -> int:
    """``export --quantize int8``: calibrate on --calibration, write, say how faithful."""
    from ..datasets import SkippedEntry, iter_image_files, load_image_folder
    from ..exceptions import InputError
    from ..quantize import export_int8

    try:  # a folder of class folders gives labels for the comparison
        data = load_image_folder(args.calibration_dir)
        images, labels = data.paths, data.target
    except InputError:
        images = [p for p in iter_image_files(args.calibration_dir)
                  if not isinstance(p, SkippedEntry)]
        labels = None
    if not images:
        raise CommandError(f"--calibration {args.calibration_dir!r} holds no image files.")
    extra = {} if args.calibration_images is None else {"n_calibration": args.calibration_images}
    report = export_int8(model, args.out, images, labels, opset=args.opset, **extra)
    print(report.summary())
    return 0
