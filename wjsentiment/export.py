"""Export a fitted model to one ONNX file, and predict with that file through onnxruntime.

The exported graph does everything ``predict_proba`` does after decoding: it takes the
decoded images as they come out of :func:`~wjsentiment.images.decode_image` (uint8, RGB,
``(batch, image_size, image_size, 3)``), converts them to channels-first floats in [0, 1],
to grayscale where the model was trained on grayscale (PIL's "L" luminance, bit for bit),
normalises them, runs the network, divides the logits by the temperature and applies the
softmax; an ensemble's graph holds every member and the soft vote. A serving runtime needs
nothing else than the file and a JPEG decoder that resizes to ``image_size``.

Exporting needs the ``onnx`` package and predicting needs ``onnxruntime``:
``pip install "wjsentiment[export]"``.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import warnings
from collections.abc import Sequence
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .calibration import decide
from .exceptions import InputError, ModelFileError
from .images.decode import decode_image
from .inference import FittedModel, Member
from .inputs import as_image_inputs
from .persistence import atomic_file, decode_classes, encode_classes

#: Name of the graph's input: uint8 images, ``(batch, image_size, image_size, 3)``, RGB.
INPUT_NAME = "images"
#: Name of the graph's output: float32 class probabilities, ``(batch, n_classes)``.
OUTPUT_NAME = "probabilities"
#: Weights of R, G and B in PIL's "L" conversion, in units of 1/65536 (rounded, then >> 16).
LUMINANCE_WEIGHTS = (19595, 38470, 7471)

_EPS = 1e-12  # as SentimentEnsemble's temperature scaling clips probabilities
#: The metadata keys :class:`OnnxClassifier` reads, all of which :func:`export_onnx` writes.
_READ_KEYS = ("classes", "classes_dtype", "image_size", "grayscale", "estimator", "decision",
              "class_prior")


def require(module: str) -> Any:
    """The (sub)module ``module`` of onnx or onnxruntime, or an ImportError that says how to
    install them."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"ONNX export, quantization and prediction need {module!r}; install "
                          'the export extra: pip install "wjsentiment[export]".') from exc


def onnx_input(X: Any, size: int, name: str = "X") -> np.ndarray:
    """``X`` as the exported graph takes it: uint8 RGB ``(n, size, size, 3)``, decoded and
    resized by wjsentiment's decoder (:func:`~wjsentiment.images.decode_image`), as the
    estimators do. An array of that shape is already decoded and passes as it is."""
    if isinstance(X, np.ndarray) and X.dtype == np.uint8 and X.shape[1:] == (size, size, 3):
        return X
    return np.stack([decode_image(item, size) for item in as_image_inputs(X, name)])


def write_onnx(model: Any, path: str | os.PathLike, metadata: dict[str, str]) -> str:
    """Write the ONNX ``model`` with ``metadata`` (replacing what it held) to ``path``, under
    a temporary name renamed into place."""
    import onnx

    del model.metadata_props[:]
    onnx.helper.set_model_props(model, metadata)
    with atomic_file(path, "wb") as handle:
        handle.write(model.SerializeToString())
    return str(path)


# ----------------------------------------------------------------------------- the members
def network_members(estimator: Any, needs: str) -> list[Member]:
    """The model's ``members_`` (see :mod:`wjsentiment.inference`), each checked to be a
    classifier with a network, as ONNX export and Grad-CAM need.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        Before ``fit``.
    TypeError
        For an estimator, or an ensemble member, without a network; the message ends with
        ``needs`` (what needs the networks, and what it takes).
    """
    if not hasattr(type(estimator), "members_"):
        raise TypeError(f"estimator is a {type(estimator).__name__}; {needs}")
    members = estimator.members_  # NotFittedError before fit
    for member in members:
        if not hasattr(member.classifier, "inference_network"):
            role = ("estimator" if member.classifier is estimator
                    else f"ensemble member {member.name!r}")
            raise TypeError(f"{role} is a {type(member.classifier).__name__}; {needs}")
    return members


def _serving_module(members: list[Member]):
    """A torch module: uint8 NHWC images -> probabilities, on CPU copies of the networks.

    Each member's probabilities are ``predict_proba``'s: the logits divided by its
    ``temperature_`` and shifted by its ``logit_adjustment_``, then the softmax; an
    ensemble's vote temperature and weight follow (SentimentEnsemble's soft vote)."""
    import copy

    import torch
    from torch import nn

    class SoftVote(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.nets = nn.ModuleList(copy.deepcopy(m.classifier.model_).cpu().float().eval()
                                      for m in members)
            self.terms = [(bool(m.classifier.grayscale), float(m.classifier.temperature_),
                           torch.tensor(m.classifier.logit_adjustment_, dtype=torch.float32),
                           float(m.temperature), float(m.weight)) for m in members]
            self.luminance = torch.tensor(LUMINANCE_WEIGHTS, dtype=torch.float32).view(1, 3, 1, 1)

        def gray(self, x: torch.Tensor) -> torch.Tensor:
            # Every intermediate is an integer below 2**24, so float32 is exact: PIL's value.
            level = (x * self.luminance).sum(dim=1, keepdim=True) + 32768.0
            return torch.floor(level / 65536.0).expand(-1, 3, -1, -1)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            x = images.permute(0, 3, 1, 2).float()
            total = None
            for net, (gray, logit_t, adjustment, vote_t, weight) in zip(self.nets, self.terms):
                pixels = (self.gray(x) if gray else x) / 255.0
                proba = torch.softmax(net(pixels) / logit_t + adjustment, dim=1)
                if vote_t != 1.0:  # SentimentEnsemble's apply_temperature
                    proba = torch.softmax(torch.log(proba.clamp_min(_EPS)) / vote_t, dim=1)
                part = proba if len(self.nets) == 1 else weight * proba
                total = part if total is None else total + part
            return total

    return SoftVote().eval()


# --------------------------------------------------------------------------------- metadata
def _metadata(estimator: Any, members: list[Member]) -> dict[str, str]:
    classes = encode_classes(np.asarray(estimator.classes_))
    classifiers = [m.classifier for m in members]
    grayscale = [bool(c.grayscale) for c in classifiers]
    return {
        "classes": json.dumps(classes["values"]),
        "classes_dtype": classes["dtype"],
        "wjsentiment_version": __version__,
        "estimator": type(estimator).__name__,
        "image_size": str(int(classifiers[0].image_size)),
        "grayscale": json.dumps(grayscale if hasattr(estimator, "estimators_") else grayscale[0]),
        "input": f"{INPUT_NAME}: uint8 RGB (batch, size, size, 3), decoded and resized to "
                 "image_size",
        "decision": estimator.decision_rule_,
        "class_prior": json.dumps([float(v) for v in estimator.class_prior_]),
        "members": json.dumps([
            {"name": m.name, "backbone": c.backbone, "grayscale": bool(c.grayscale),
             "logit_temperature": float(c.temperature_), "vote_temperature": float(m.temperature),
             "weight": float(m.weight)}
            for m, c in zip(members, classifiers)]),
    }


def export_onnx(estimator: FittedModel, path: str | os.PathLike,
                *, opset: int | None = None) -> str:
    """Write a fitted classifier or ensemble to one ONNX file.

    The graph's input ``images`` is uint8, ``(batch, image_size, image_size, 3)``, RGB, with
    a dynamic batch size; its output ``probabilities`` is float32 ``(batch, n_classes)``,
    columns in the order of ``classes_``. Inside: channels-first conversion, scaling to
    [0, 1], grayscale conversion for models trained on grayscale, the backbone's
    normalisation, the network, the temperature and the softmax. An ensemble's graph holds
    each member's network and temperature and the fitted weights of the soft vote.

    The model's metadata holds ``classes`` (a JSON list) and ``classes_dtype``,
    ``wjsentiment_version``, ``image_size``, ``grayscale`` (JSON: a bool, or one per member of
    an ensemble), ``estimator`` and ``members`` (JSON). The file is written under a
    temporary name and renamed into place.

    Parameters
    ----------
    estimator : SentimentClassifier or SentimentEnsemble
        Fitted. An ensemble's members must be SentimentClassifiers with one ``image_size``.
    path : path-like
        The ``.onnx`` file to write (its folder is created).
    opset : int, optional
        ONNX opset version; default: the one torch's exporter recommends.

    Returns
    -------
    str
        The file written.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        Before ``fit``.
    TypeError
        For an estimator, or an ensemble member, that is not a SentimentClassifier.
    ValueError
        For ensemble members with different image sizes.
    ImportError
        Without the ``onnx`` package.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from wjsentiment import SentimentClassifier
    >>> X = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    >>> clf = SentimentClassifier(weights=None, image_size=32, epochs=1, verbose=0,
    ...                           random_state=0).fit(X, ["Negative", "Positive"] * 2)
    >>> path = export_onnx(clf, os.path.join(tempfile.mkdtemp(), "model.onnx"))
    >>> model = load_onnx(path)
    >>> bool(np.abs(model.predict_proba(X) - clf.predict_proba(X)).max() < 1e-4)
    True
    """
    members = network_members(estimator, "export_onnx takes a SentimentClassifier or a "
                                          "SentimentEnsemble of them.")
    sizes = {m.name: int(m.classifier.image_size) for m in members}
    if len(set(sizes.values())) > 1:
        raise InputError(f"The ensemble's members resize images to different sizes "
                         f"({sizes}); the exported graph takes one image size. Export the "
                         "members one by one, or fit them at one image_size.")
    onnx = require("onnx")
    import torch

    module = _serving_module(members)
    size = int(members[0].classifier.image_size)
    example = torch.zeros((2, size, size, 3), dtype=torch.uint8)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the torch.export one, which
        # needs the onnxscript package besides onnx; this one needs only onnx, and its
        # output is checked against predict_proba by the tests.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (example,), buffer, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], opset_version=opset, dynamo=False,
                          dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    model = onnx.load_from_string(buffer.getvalue())
    model.doc_string = (f"wjsentiment {type(estimator).__name__}: {INPUT_NAME} (uint8 RGB, "
                        f"batch x {size} x {size} x 3) -> {OUTPUT_NAME} (float32, batch x "
                        f"{len(estimator.classes_)}); classes in the metadata.")
    onnx.checker.check_model(model)
    return write_onnx(model, path, _metadata(estimator, members))


# ------------------------------------------------------------------------------- predicting
class OnnxClassifier:
    """Predictions from an ONNX file written by :func:`export_onnx`, through onnxruntime.

    Made by :func:`load_onnx`. Images are decoded and resized by wjsentiment's own decoder
    (:func:`~wjsentiment.images.decode_image`), as the estimator does, so the probabilities
    match its ``predict_proba``.

    Attributes
    ----------
    classes_ : numpy.ndarray
        The class labels, in the order of the probability columns.
    image_size : int
        Side of the square the images are resized to.
    grayscale : bool or list of bool
        Whether the model (or each member of an ensemble) sees grayscale images; the graph
        converts them itself, so inputs are always RGB.
    metadata : dict of str to str
        The model's metadata as written by :func:`export_onnx`.
    session : onnxruntime.InferenceSession
        The session that runs the graph.
    batch_size : int
        Images per call of the session.
    """

    def __init__(self, session: Any, batch_size: int = 64) -> None:
        self.session = session
        self.batch_size = int(batch_size)
        self.metadata = dict(session.get_modelmeta().custom_metadata_map)
        self.classes_ = decode_classes({"values": json.loads(self.metadata["classes"]),
                                        "dtype": self.metadata["classes_dtype"]})
        self.image_size = int(self.metadata["image_size"])
        self.grayscale = json.loads(self.metadata["grayscale"])

    def __repr__(self) -> str:
        return (f"OnnxClassifier({self.metadata['estimator']}, {len(self.classes_)} classes, "
                f"{self.image_size} px)")

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, one row per image, columns in the order of ``classes_``.

        Parameters
        ----------
        X : ImageInputs
            A sequence of image paths or PIL images, or a uint8 array of shape
            ``(n, height, width, 3)``.

        Returns
        -------
        numpy.ndarray of shape (n, n_classes), float32
            The exported graph's probabilities.

        Raises
        ------
        BadImageError
            If an image cannot be decoded.
        """
        pixels = onnx_input(X, self.image_size)
        parts = [self.session.run([OUTPUT_NAME], {INPUT_NAME: pixels[i:i + self.batch_size]})[0]
                 for i in range(0, len(pixels), self.batch_size)]
        return np.concatenate(parts)

    def predict(self, X: Any) -> np.ndarray:
        """The class of each image, by the exported model's decision rule.

        The rule (``decision`` in the metadata: "argmax" or "balanced") and the training
        class frequencies it needs (``class_prior``) are those of the estimator, so the
        labels match its ``predict``.

        Returns
        -------
        numpy.ndarray of shape (n,)
            Labels from ``classes_``.
        """
        return self.predict_from_proba(self.predict_proba(X))

    @property
    def decision_rule_(self) -> str:
        """The estimator's decision rule, "argmax" or "balanced" (as its ``decision_rule_``)."""
        return self.metadata["decision"]

    def predict_from_proba(self, proba: Any) -> np.ndarray:
        """The labels :meth:`predict` gives for these probabilities (as the estimators'
        ``predict_from_proba``), for a caller that has computed them already."""
        prior = json.loads(self.metadata["class_prior"])
        return self.classes_[decide(np.asarray(proba), self.decision_rule_, prior)]


def load_onnx(path: str | os.PathLike, *, batch_size: int = 64,
              providers: Sequence[str] | None = None,
              session_options: Any = None) -> OnnxClassifier:
    """Load an ONNX file written by :func:`export_onnx` for prediction with onnxruntime.

    Parameters
    ----------
    path : path-like
        The ``.onnx`` file.
    batch_size : int, default=64
        Images per call of the session.
    providers : sequence of str, optional
        onnxruntime execution providers, e.g. ``["CUDAExecutionProvider",
        "CPUExecutionProvider"]``; default: the CPU.
    session_options : onnxruntime.SessionOptions, optional
        Threads, graph optimisation level and so on.

    Returns
    -------
    OnnxClassifier
        The file's classes, image size and decision rule, ready to predict.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If ``batch_size`` is not a positive int.
    ModelFileError
        If the file is not an ONNX model, or was not written by :func:`export_onnx` (a
        ``ValueError`` too).
    ImportError
        Without the ``onnxruntime`` package.

    Examples
    --------
    >>> model = load_onnx("model.onnx")  # doctest: +SKIP
    >>> model.predict(["photo.jpg"])  # doctest: +SKIP
    array(['Positive'], dtype='<U8')
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int (images per call of the "
                         f"session), got {batch_size!r}.")
    ort = require("onnxruntime")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No ONNX file at {str(path)!r}; write one with "
                                "export_onnx(estimator, path) or `wjsentiment export`.")
    again = "Export the model again with export_onnx(estimator, path) or `wjsentiment export`."
    try:
        session = ort.InferenceSession(str(path), sess_options=session_options,
                                       providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors share no base but Exception
        if not type(exc).__module__.startswith("onnxruntime"):
            raise
        raise ModelFileError(path, f"it is not an ONNX model onnxruntime can load ({exc})",
                             again) from exc
    keys = session.get_modelmeta().custom_metadata_map
    missing = [key for key in _READ_KEYS if key not in keys]
    if missing or [i.name for i in session.get_inputs()] != [INPUT_NAME]:
        raise ModelFileError(path, "it was not written by wjsentiment's export_onnx (its "
                             f"metadata lacks {missing}, or it takes another input)", again)
    return OnnxClassifier(session, batch_size=batch_size)


__all__ = ["INPUT_NAME", "LUMINANCE_WEIGHTS", "OUTPUT_NAME", "OnnxClassifier", "export_onnx",
           "load_onnx"]
