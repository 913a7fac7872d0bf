"""int8 models for the CPU: an exported ONNX file quantized by onnxruntime, checked against
the float model.

:func:`export_int8` (what ``wjsentiment export --quantize int8`` runs) exports the model,
folds its shape computations, quantizes it with onnxruntime's static QDQ quantization
(per-channel int8 weights, uint8 activations, MinMax ranges calibrated on the images given)
and compares it with the float file on held-out images: label agreement, mean absolute
probability difference and, with labels, macro-F1 and log-loss. The result is an ONNX file
that :func:`~wjsentiment.export.load_onnx` and ``wjsentiment serve`` run as they run the float
one, with the same metadata (classes, decision rule, class prior) and the comparison added.

What pays, as measured on EfficientNet-Lite and ResNet (see the guide page "Serving"):

- **Folding the shape computations.** The exported graph computes TF-style "same" padding
  from the input's shape at run time (hundreds of small nodes for EfficientNet-Lite), which
  stops onnxruntime from merging each padding into its convolution. :func:`fold_shapes` folds
  them with a fixed batch, then gives the graph its variable batch back.
- **Which layers stay float.** The convolution that reads the pixels (its uint8 input range
  is the whole colour range) and, where they hurt, the depthwise convolutions stay float;
  everything else from convolutions to activations and residual additions is int8, so the
  activations stay int8 from one convolution to the next. :data:`POLICIES` lists the choices
  from fastest to most faithful; :func:`export_int8` keeps the first that meets the parity.
- **Per-channel weights** (per-tensor weights lost half the agreement), MinMax calibration
  (entropy and percentile ranges did no better).

Where no choice meets the parity, :func:`export_int8` writes the most faithful one, warns
and says so in its report: int8 stays opt-in, the float file is the default.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import InputError, QuantizationWarning
from .export import (
    INPUT_NAME,
    OnnxClassifier,
    export_onnx,
    load_onnx,
    onnx_input,
    require,
    write_onnx,
)
from .inputs import as_image_inputs
from .persistence import atomic_file

__all__ = ["PARITY_TOLERANCE", "POLICIES", "Int8Policy", "Int8Report", "QuantizationWarning",
           "compare_int8", "export_int8", "fold_shapes", "quantize_onnx"]

#: How close the int8 model must stay to the float one: macro-F1 and log-loss within this,
#: and the mean absolute difference of the probabilities at most this.
PARITY_TOLERANCE = 0.01
#: Calibration images used by default, and held-out images the comparison uses at most.
N_CALIBRATION, N_CHECK = 128, 512
#: Images per calibration batch.
CALIBRATION_BATCH = 16
#: The batch the shape computations are folded with; any batch size runs afterwards.
_FOLD_BATCH = 3
#: Operators that start the classifier head: what follows them stays float.
HEAD_OPS = ("Gemm", "MatMul", "Softmax")


@dataclass(frozen=True)
class Int8Policy:
    """Which operators are quantized, and whether depthwise convolutions stay float (the
    convolution that reads the pixels always does)."""

    name: str
    op_types: tuple[str, ...]
    float_depthwise: bool


#: The choices :func:`export_int8` tries, fastest first.
POLICIES = (
    Int8Policy("int8 convolutions, activations and additions", ("Conv", "Relu", "Clip", "Add"),
               float_depthwise=False),
    Int8Policy("the same, depthwise convolutions float", ("Conv", "Relu", "Clip", "Add"),
               float_depthwise=True),
    Int8Policy("int8 convolutions only, depthwise float", ("Conv",), float_depthwise=True),
)


def _runtime() -> Any:
    """onnx, once onnx and onnxruntime's quantization are found importable."""
    require("onnxruntime.quantization")
    return require("onnx")


def _batch_dims(model: Any) -> list[Any]:
    graph = model.graph
    return [t.type.tensor_type.shape.dim[0] for t in [*graph.input, *graph.output]]


def fold_shapes(source: str | os.PathLike, path: str | os.PathLike,
                check: np.ndarray | None = None) -> bool:
    """Write ``source`` with its shape computations folded into constants, when that keeps
    every batch size working; else a copy of it. Returns whether it folded.

    The graph is optimised by onnxruntime with a fixed batch (so shape nodes fold and each
    "same" padding merges into its convolution), then its batch dimension is made variable
    again, and the result is checked against ``source`` at two batch sizes (on ``check``
    images, default blank ones): the fold is kept only if it gives the same probabilities.
    """
    onnx = _runtime()
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = onnx.load(str(source))
    for dim in _batch_dims(model):
        dim.dim_value = _FOLD_BATCH
    size = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    with tempfile.TemporaryDirectory() as tmp:
        fixed, folded = Path(tmp) / "fixed.onnx", Path(tmp) / "folded.onnx"
        onnx.save(model, str(fixed))
        quant_pre_process(str(fixed), str(folded), skip_symbolic_shape=True)
        result = onnx.load(str(folded))
        for dim in _batch_dims(result):
            dim.ClearField("dim_value")
            dim.dim_param = "batch"
        del result.graph.value_info[:]  # shapes inferred for the fixed batch
        write_onnx(result, folded, _metadata(model))
        images = check if check is not None else np.zeros((4, size, size, 3), np.uint8)
        same = _same_outputs(source, folded, images)
        with open(folded if same else source, "rb") as chosen, atomic_file(path, "wb") as fh:
            shutil.copyfileobj(chosen, fh)
    return same


def _same_outputs(a: str | os.PathLike, b: str | os.PathLike, images: np.ndarray) -> bool:
    """Whether two ONNX files give the same probabilities at batch sizes 1 and more."""
    try:
        first, second = load_onnx(a), load_onnx(b)
        return all(np.allclose(first.predict_proba(x), second.predict_proba(x), atol=1e-5)
                   for x in (images[:1], images[:4]))
    except Exception:  # noqa: BLE001 - a graph that no longer runs is simply not kept
        return False


def _float_nodes(model: Any, policy: Int8Policy) -> list[str]:
    """The nodes kept float. Of the convolutions: each that reads the pixels (no
    convolution before it) and, with ``policy.float_depthwise``, each depthwise one (one
    input channel per filter). Of the other operators: those before the first convolution
    (the pixels' normalisation) and those from the classifier head on (temperature, logit
    adjustment, softmax, an ensemble's vote), which work on few, precise numbers."""
    weights = {t.name: t for t in model.graph.initializer}
    body: set[str] = set()  # tensors computed from a convolution's output
    head: set[str] = set()  # tensors computed from the head's output
    keep = []
    for node in model.graph.node:  # ONNX graphs are in topological order
        in_head = node.op_type in HEAD_OPS or any(name in head for name in node.input)
        in_body = any(name in body for name in node.input)
        if node.op_type == "Conv":
            weight = weights.get(node.input[1])
            depthwise = weight is not None and len(weight.dims) == 4 and weight.dims[1] == 1
            if not in_body or (policy.float_depthwise and depthwise):
                keep.append(node.name)
        elif node.op_type in policy.op_types and (in_head or not in_body):
            keep.append(node.name)
        if in_head:
            head.update(node.output)
        elif in_body or node.op_type == "Conv":
            body.update(node.output)
    return keep


def quantize_onnx(source: str | os.PathLike, path: str | os.PathLike, calibration: Any, *,
                  policy: Int8Policy = POLICIES[0]) -> str:
    """Write a static int8 (QDQ) copy of an ONNX file written by
    :func:`~wjsentiment.export.export_onnx`, calibrated on ``calibration``.

    Per-channel int8 weights and uint8 activations; activation ranges are the MinMax ranges
    over the calibration images. The metadata of ``source`` is kept, so
    :func:`~wjsentiment.export.load_onnx` reads the classes and the decision rule. Run
    :func:`fold_shapes` on ``source`` first for the speed (see the module's notes).

    Parameters
    ----------
    source : path-like
        The float ONNX file.
    path : path-like
        The int8 file to write (atomically).
    calibration : ImageInputs
        Images like those the model will see (paths, PIL images or uint8 arrays); a hundred
        or so is plenty.
    policy : Int8Policy, default=POLICIES[0]
        What is quantized.

    Returns
    -------
    str
        The file written.
    """
    onnx = _runtime()
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model = onnx.load(str(source))
    size = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    pixels = onnx_input(calibration, size, "calibration")

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(range(0, len(pixels), CALIBRATION_BATCH))

        def get_next(self) -> dict | None:
            start = next(self._batches, None)
            return None if start is None else {
                INPUT_NAME: pixels[start:start + CALIBRATION_BATCH]}

    # Quiet: the quantizer asks (through the root logger) for a pre-processing that
    # fold_shapes does. The caller's setting comes back after. (onnxruntime's own log
    # severity is left alone: it has no getter, so a change could not be undone.)
    previous = logging.root.manager.disable
    logging.disable(max(previous, logging.WARNING))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "int8.onnx"
            quantize_static(str(source), str(out), Batches(), quant_format=QuantFormat.QDQ,
                            op_types_to_quantize=list(policy.op_types), per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            nodes_to_exclude=_float_nodes(model, policy))
            result = onnx.load(str(out))
    finally:
        logging.disable(previous)
    return write_onnx(result, path, {**_metadata(model), "quantization": json.dumps(
        {"type": "int8 static QDQ, per-channel weights, MinMax", "policy": policy.name,
         "calibration_images": len(pixels)})})


def _metadata(model: Any) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


@dataclass(frozen=True)
class Int8Report:
    """How an int8 model compares with its float model on held-out images.

    Attributes
    ----------
    policy : str
        What was quantized (an :class:`Int8Policy` name).
    n_images : int
        Images compared.
    agreement : float
        Share of images given the same label (by the model's decision rule).
    mean_abs_difference : float
        Mean absolute difference of the probabilities.
    macro_f1, log_loss : tuple of (float, float) or None
        (float, int8) scores against the labels, when there were labels.
    tolerance : float
        The largest difference the parity allows.
    meets_parity : bool
        Mean absolute difference, and the macro-F1 and log-loss differences, at most
        ``tolerance``.
    held_out : bool
        Whether the images compared were not among the calibration images.
    """

    policy: str
    n_images: int
    agreement: float
    mean_abs_difference: float
    macro_f1: tuple[float, float] | None
    log_loss: tuple[float, float] | None
    tolerance: float
    meets_parity: bool
    held_out: bool

    def summary(self) -> str:
        """The comparison in a few lines, for a person."""
        lines = [f"int8 ({self.policy}) vs float on {self.n_images} "
                 f"{'held-out' if self.held_out else 'calibration'} images: label agreement "
                 f"{self.agreement:.1%}, mean |probability difference| "
                 f"{self.mean_abs_difference:.4f}"]
        for name, pair in (("macro-F1", self.macro_f1), ("log-loss", self.log_loss)):
            if pair is not None:
                lines.append(f"{name}: float {pair[0]:.4f}, int8 {pair[1]:.4f}")
        lines.append(f"meets the parity (within {self.tolerance:g})"
                     if self.meets_parity else
                     f"does NOT meet the parity (within {self.tolerance:g}): keep serving the "
                     "float model; int8 stays opt-in")
        return "\n".join(lines)


def compare_int8(float_model: OnnxClassifier, int8_model: OnnxClassifier, X: Any,
                 y: Sequence[Any] | None = None, *, tolerance: float = PARITY_TOLERANCE,
                 policy: str = "", held_out: bool = True) -> Int8Report:
    """Compare an int8 model with its float model on ``X`` (and labels ``y``).

    Returns
    -------
    Int8Report
        The label agreement, probability difference and scores of both models.
    """
    from sklearn.metrics import f1_score, log_loss

    pixels = onnx_input(X, float_model.image_size)
    p_float, p_int8 = float_model.predict_proba(pixels), int8_model.predict_proba(pixels)
    labels_float = float_model.predict_from_proba(p_float)
    labels_int8 = int8_model.predict_from_proba(p_int8)
    difference = float(np.abs(p_float - p_int8).mean())
    f1 = loss = None
    gaps = [difference]
    if y is not None:
        y = np.asarray(y)
        classes = list(float_model.classes_)
        f1 = tuple(float(f1_score(y, labels, average="macro", labels=classes))
                   for labels in (labels_float, labels_int8))
        loss = tuple(float(log_loss(y, p / p.sum(axis=1, keepdims=True), labels=classes))
                     for p in (p_float, p_int8))
        gaps += [abs(f1[1] - f1[0]), abs(loss[1] - loss[0])]
    return Int8Report(policy, len(pixels), float(np.mean(labels_float == labels_int8)),
                      difference, f1, loss, float(tolerance),
                      bool(max(gaps) <= tolerance), held_out)


def _split(n: int, n_calibration: int, n_check: int, random_state: int
           ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Calibration and check positions; the check reuses the calibration images only when
    there are too few images to hold some out (then ``held_out`` is False)."""
    order = np.random.default_rng(random_state).permutation(n)
    calibration = order[:min(n_calibration, max(1, n // 2))]
    rest = order[len(calibration):]
    if len(rest) == 0:
        return calibration, calibration, False
    return calibration, rest[:n_check], True


def export_int8(model: Any, path: str | os.PathLike, images: Any,
                labels: Sequence[Any] | None = None, *, held_out: Any = None,
                held_out_labels: Sequence[Any] | None = None,
                n_calibration: int = N_CALIBRATION, n_check: int = N_CHECK,
                tolerance: float = PARITY_TOLERANCE, random_state: int = 0,
                opset: int | None = None) -> Int8Report:
    """Write an int8 ONNX file of ``model``, quantized as fast as the parity allows.

    The model is exported (:func:`~wjsentiment.export.export_onnx`), its shapes folded
    (:func:`fold_shapes`), and each of :data:`POLICIES` tried, fastest first: the first whose
    int8 model meets the parity with the float one on the held-out images is written. If none
    does, the most faithful one is written and a :class:`QuantizationWarning` says so. The
    comparison goes into the file's metadata (``int8_parity``).

    Parameters
    ----------
    model : SentimentClassifier, SentimentEnsemble, or path-like
        A fitted model, or a float ``.onnx`` file written by ``export_onnx``.
    path : path-like
        The int8 ``.onnx`` file to write.
    images : ImageInputs
        Images like those the model will serve, e.g. a sample of its training folder. Without
        ``held_out``, they are split at random: ``n_calibration`` (at most half of them)
        calibrate, and up to ``n_check`` of the others are compared.
    labels : array-like, optional
        Their labels: then macro-F1 and log-loss are compared too.
    held_out, held_out_labels : optional
        Images (and labels) to compare on; then ``n_calibration`` of ``images`` calibrate.
    n_calibration, n_check : int
        At most this many images calibrate, and at most this many are compared.
    tolerance : float, default=PARITY_TOLERANCE
        The largest difference the parity allows (see :class:`Int8Report`).
    random_state : int
        Seeds the split.
    opset : int, optional
        For the export.

    Returns
    -------
    Int8Report
        The comparison of the model written (``summary()`` tells it).

    Examples
    --------
    >>> from wjsentiment.datasets import load_image_folder  # doctest: +SKIP
    >>> data = load_image_folder("photos")  # doctest: +SKIP
    >>> report = export_int8(model, "model.int8.onnx", data.paths, data.target)  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
    """
    items = as_image_inputs(images, "images")
    y = None if labels is None else np.asarray(labels)
    if y is not None and len(y) != len(items):
        raise InputError(f"labels has {len(y)} entries for {len(items)} images.")
    if held_out is None:
        calibration, check, separate = _split(len(items), n_calibration, n_check, random_state)
        check_items, check_y = [items[i] for i in check], None if y is None else y[check]
    else:
        calibration, separate = np.arange(min(n_calibration, len(items))), True
        check_items = as_image_inputs(held_out, "held_out")
        check_y = None if held_out_labels is None else np.asarray(held_out_labels)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        source = Path(model) if isinstance(model, (str, os.PathLike)) else \
            Path(export_onnx(model, tmp / "float.onnx", opset=opset))
        float_model = load_onnx(source)
        check_pixels = onnx_input(check_items, float_model.image_size)
        fold_shapes(source, tmp / "folded.onnx", check_pixels[:4])
        calibration_pixels = onnx_input([items[i] for i in calibration],
                                        float_model.image_size)
        best = None
        for k, policy in enumerate(POLICIES):
            candidate = tmp / f"int8-{k}.onnx"
            quantize_onnx(tmp / "folded.onnx", candidate, calibration_pixels, policy=policy)
            report = compare_int8(float_model, load_onnx(candidate), check_pixels, check_y,
                                  tolerance=tolerance, policy=policy.name, held_out=separate)
            if best is None or report.meets_parity or \
                    report.mean_abs_difference < best[0].mean_abs_difference:
                best = report, candidate
            if report.meets_parity:
                break
        report, chosen = best
        _write_with_report(chosen, path, report)
    if not report.meets_parity:
        warnings.warn(report.summary(), QuantizationWarning, stacklevel=2)
    return report


def _write_with_report(source: Path, path: str | os.PathLike, report: Int8Report) -> None:
    onnx = _runtime()
    model = onnx.load(str(source))
    write_onnx(model, path, {**_metadata(model), "int8_parity": json.dumps(asdict(report))})
