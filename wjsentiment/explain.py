"""Grad-CAM heat maps: which regions of an image made the classifier choose a class.

Grad-CAM weighs the feature maps of a convolutional layer by the gradient of a class's logit
with respect to them, keeps the positive part and upsamples it to the image. The maps come from
Captum's :class:`~captum.attr.LayerGradCam`, PyTorch's own interpretability library: it
attaches to any layer of an unmodified ``nn.Module`` by reference, takes care of the hooks
and gradients, and upsamples with :meth:`~captum.attr.LayerAttribution.interpolate`; its
pure-Python package adds no dependency that wjsentiment does not already have.

Images go through the same decoding (the shared decoded-image store) and the same
normalisation (inside :class:`~wjsentiment.models.SentimentNet`) as in ``predict_proba``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from numbers import Integral
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import decode_threads
from .images.cache import get_store
from .inference import FittedModel, Member
from .inputs import as_image_inputs

#: The ``target`` that explains the class each image is predicted to be.
PREDICTED = "predicted"


@dataclass(frozen=True)
class Explanations:
    """Heat maps of a set of images, with what the estimator predicts for them.

    Attributes
    ----------
    images : numpy.ndarray of shape (n, size, size, 3), uint8
        The images as decoded for the model (resized, transparency on white), in colour.
    heatmaps : numpy.ndarray of shape (n, size, size), float32
        Grad-CAM maps in [0, 1] (see :func:`grad_cam`).
    predicted : numpy.ndarray of shape (n,)
        The predicted label of each image.
    probability : numpy.ndarray of shape (n,)
        The probability of the predicted label.
    explained : numpy.ndarray of shape (n,)
        The label each heat map explains (the predicted one unless a target was given).
    """

    images: np.ndarray
    heatmaps: np.ndarray
    predicted: np.ndarray
    probability: np.ndarray
    explained: np.ndarray


# --------------------------------------------------------------------------------- layers
def _feature_layers(backbone: nn.Module, size: int, device: torch.device) -> list[str]:
    """Names of the backbone's modules whose output is a 4-D feature map, in the order their
    forward passes finish, from one pass of ``forward_features`` (no pooling, no head)."""
    finished: list[str] = []

    def hook(name: str):
        def record(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.ndim == 4:
                finished.append(name)
        return record

    handles = [module.register_forward_hook(hook(name))
               for name, module in backbone.named_modules() if name]
    try:
        with torch.no_grad():
            backbone.forward_features(torch.zeros(1, 3, size, size, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return list(dict.fromkeys(finished))


def _check_classifier(estimator: Any, role: str = "estimator") -> Any:
    """``estimator`` if it is a fitted classifier whose network Grad-CAM can run."""
    if not hasattr(estimator, "inference_network"):
        raise TypeError(f"{role} is a {type(estimator).__name__}; Grad-CAM needs a "
                        "SentimentClassifier (or a SentimentEnsemble of them).")
    estimator.members_  # noqa: B018 - NotFittedError before fit
    return estimator


def default_layer(estimator: Any) -> str:
    """The layer :func:`grad_cam` uses by default: the backbone's last 4-D feature map.

    It is the last module of the timm backbone's ``forward_features`` whose output has the
    shape ``(N, C, H, W)``: the final convolutional stage before global pooling (``"layer4"``
    for ResNets, ``"bn2"`` for EfficientNets, ``"features"`` for DenseNets).

    Parameters
    ----------
    estimator : SentimentClassifier
        A fitted classifier.

    Returns
    -------
    str
        The module's name inside the backbone (``estimator.model_.backbone``).

    Raises
    ------
    sklearn.exceptions.NotFittedError
        Before ``fit``.
    ValueError
        If the backbone produces no 4-D feature map (a transformer, for instance).

    Examples
    --------
    >>> import numpy as np
    >>> from wjsentiment import SentimentClassifier
    >>> X = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    >>> clf = SentimentClassifier(weights=None, image_size=32, epochs=1, verbose=0,
    ...                           random_state=0).fit(X, ["Negative", "Positive"] * 2)
    >>> default_layer(clf)
    'layer4'
    """
    estimator = _check_classifier(estimator)
    with _explaining(estimator) as (net, device):
        return _resolve_layer(estimator, net, device, None)[0]


def _resolve_layer(estimator: Any, net: nn.Module, device: torch.device,
                   layer: str | None) -> tuple[str, nn.Module]:
    names = _feature_layers(net.backbone, estimator.image_size, device)
    if not names:
        raise ValueError(f"The {estimator.backbone!r} backbone produces no 4-D feature map; "
                         "Grad-CAM needs a convolutional backbone.")
    if layer is None:
        layer = names[-1]
    elif not isinstance(layer, str) or layer not in names:
        modules = dict(net.backbone.named_modules())
        what = "is not a module of" if layer not in modules else \
            "does not output a 4-D feature map in"
        raise ValueError(
            f"layer={layer!r} {what} the {estimator.backbone!r} backbone. Pass the name of one "
            f"of its feature layers, e.g. one of {names[-5:]}; the default is {names[-1]!r}."
        )
    return layer, net.backbone.get_submodule(layer)


# ------------------------------------------------------------------------ the model's state
@contextlib.contextmanager
def _explaining(estimator: Any) -> Iterator[tuple[nn.Module, torch.device]]:
    """The estimator's network on its device, in eval mode with frozen parameters (gradients
    reach the layer's output, never the weights), for the block; its state as it was after."""
    with estimator.inference_network() as net:
        yield net, next(net.parameters()).device


# --------------------------------------------------------------------------------- grad-cam
def _normalised(maps: torch.Tensor) -> torch.Tensor:
    """Each map divided by its maximum: values in [0, 1], all 0 where nothing is positive."""
    peak = maps.flatten(1).amax(dim=1).view(-1, 1, 1)
    return torch.where(peak > 0, maps / peak.clamp_min(1e-30), torch.zeros_like(maps))


def _classifier_maps(estimator: Any, items: list, targets: np.ndarray,
                     size: int, batch_size: int | None, layer: str | None) -> np.ndarray:
    from captum.attr import LayerAttribution, LayerGradCam

    out = np.empty((len(items), size, size), dtype=np.float32)
    with estimator.decode(items) as decoded, _explaining(estimator) as (net, device):
        if decoded.errors:
            raise decoded.errors[0][1]
        _, module = _resolve_layer(estimator, net, device, layer)
        cam = LayerGradCam(net, module)
        for index, x in decoded.batches(batch_size or estimator.batch_size):
            target = torch.as_tensor(targets[index], device=device)
            maps = cam.attribute(x, target=target, relu_attributions=True)
            maps = LayerAttribution.interpolate(maps.detach(), (size, size),
                                                interpolate_mode="bilinear")
            out[index] = _normalised(maps[:, 0].clamp_min(0)).cpu().numpy()
    return out


def _target_indices(estimator: Any, items: list, target: Any) -> np.ndarray:
    """Column of ``classes_`` each image's map explains."""
    classes = estimator.classes_.tolist()
    position = {c: i for i, c in enumerate(classes)}
    if isinstance(target, str) and target == PREDICTED:
        labels = np.asarray(estimator.predict(items)).tolist()
    elif np.ndim(target) == 0:
        labels = [np.asarray(target).tolist()] * len(items)
    else:
        labels = np.asarray(target).tolist()
        if np.ndim(target) != 1 or len(labels) != len(items):
            raise ValueError(f"target has {len(labels)} labels for {len(items)} images; pass "
                             f"one label per image, one label for all, or {PREDICTED!r}.")
    unknown = sorted({str(label) for label in labels if label not in position})
    if unknown:
        raise ValueError(f"target names {unknown}, which are not classes of the estimator "
                         f"({classes}); pass one of them or {PREDICTED!r}.")
    return np.array([position[label] for label in labels], dtype=np.int64)


def _members(estimator: Any) -> list[Member]:
    """The members whose maps are averaged, checked, with their weights."""
    if not hasattr(type(estimator), "members_"):
        raise TypeError(f"estimator is a {type(estimator).__name__}; Grad-CAM needs a "
                        "SentimentClassifier (or a SentimentEnsemble of them).")
    members = estimator.members_
    role = "estimator" if len(members) == 1 and members[0].classifier is estimator else None
    for member in members:
        _check_classifier(member.classifier, role or f"ensemble member {member.name!r}")
    return members


def _output_size(members: list[Member]) -> int:
    return max(int(member.classifier.image_size) for member in members)


def grad_cam(estimator: FittedModel, X: Any, *,
             target: Any = PREDICTED, batch_size: int | None = None,
             layer: str | None = None) -> np.ndarray:
    """Grad-CAM heat maps: where in each image the evidence for a class lies.

    The gradient of the class's logit weighs the feature maps of a convolutional layer
    (by default :func:`default_layer`); the positive part of the weighted sum is upsampled
    bilinearly to the image and divided by its maximum. For an ensemble, each member's map
    is computed for the class the ensemble explains, and the maps are averaged with the
    ensemble's ``weights_``.

    Runs in batches on the estimator's device. The model is left as it was: its train/eval
    mode, its parameters' ``requires_grad`` and their (absent) gradients.

    Parameters
    ----------
    estimator : SentimentClassifier or SentimentEnsemble
        Fitted; an ensemble's members must be SentimentClassifiers.
    X : ImageInputs
        A sequence of image paths or PIL images, or a uint8 array of shape
        ``(n, height, width, 3)``, as for ``predict_proba``.
    target : "predicted", a label, or array-like of labels of shape (n,), default="predicted"
        The class each map explains: the one the estimator predicts for the image
        (``estimator.predict``), one label of ``classes_`` for all images, or one per image.
    batch_size : int, optional
        Images per forward and backward pass; default: the estimator's ``batch_size``
        (for an ensemble, each member's).
    layer : str, optional
        Name of the backbone module whose output to explain (a name from
        ``estimator.model_.backbone.named_modules()``), for every member of an ensemble.
        Default: :func:`default_layer`.

    Returns
    -------
    numpy.ndarray of shape (n, image_size, image_size), float32
        Values in [0, 1]: 1 at each map's strongest evidence, 0 where none speaks for the
        class. For an ensemble, ``image_size`` is the largest of its members'.

    Raises
    ------
    sklearn.exceptions.NotFittedError
        Before ``fit``.
    TypeError
        For an estimator (or ensemble member) that is not a SentimentClassifier.
    ValueError
        For a ``target`` that is not a class, a ``layer`` that is not a feature layer of the
        backbone, or a bad ``batch_size``.
    BadImageError
        If an image cannot be decoded.

    Examples
    --------
    >>> import numpy as np
    >>> from wjsentiment import SentimentClassifier
    >>> X = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    >>> clf = SentimentClassifier(weights=None, image_size=64, epochs=1, verbose=0,
    ...                           random_state=0).fit(X, ["Negative", "Positive"] * 2)
    >>> maps = grad_cam(clf, X)
    >>> maps.shape, maps.dtype, bool(maps.min() >= 0 and maps.max() <= 1)
    ((4, 64, 64), dtype('float32'), True)
    """
    if batch_size is not None and (isinstance(batch_size, bool)
                                   or not isinstance(batch_size, Integral) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}.")
    members = _members(estimator)
    items = as_image_inputs(X)
    size = _output_size(members)
    total = np.zeros((len(items), size, size), dtype=np.float32)
    with contextlib.ExitStack() as kept:  # every network as it was, after predict too
        for member in members:
            kept.enter_context(member.classifier.inference_network())
        targets = _target_indices(estimator, items, target)
        for member in members:
            if member.weight > 0:
                total += np.float32(member.weight) * _classifier_maps(
                    member.classifier, items, targets, size, batch_size, layer)
    return np.clip(total, 0.0, 1.0, out=total)


def explain_images(estimator: FittedModel, X: Any, *,
                   target: Any = PREDICTED, batch_size: int | None = None,
                   layer: str | None = None) -> Explanations:
    """Heat maps together with the decoded images, predicted labels and probabilities.

    What :func:`~wjsentiment.plotting.plot_explanations` and ``wjsentiment explain`` show.
    Parameters as for :func:`grad_cam`.

    Returns
    -------
    Explanations

    Examples
    --------
    >>> import numpy as np
    >>> from wjsentiment import SentimentClassifier
    >>> X = np.random.default_rng(0).integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    >>> clf = SentimentClassifier(weights=None, image_size=64, epochs=1, verbose=0,
    ...                           random_state=0).fit(X, ["Negative", "Positive"] * 2)
    >>> result = explain_images(clf, X[:2])
    >>> result.images.shape, result.heatmaps.shape, result.predicted.shape
    ((2, 64, 64, 3), (2, 64, 64), (2,))
    """
    members = _members(estimator)
    items = as_image_inputs(X)
    proba = np.asarray(estimator.predict_proba(items))
    predicted = np.asarray(estimator.predict(items))
    column = _target_indices(estimator, items, predicted)
    explained = predicted if isinstance(target, str) and target == PREDICTED else \
        estimator.classes_[_target_indices(estimator, items, target)]
    heatmaps = grad_cam(estimator, items, target=explained, batch_size=batch_size, layer=layer)
    store = get_store(_output_size(members), grayscale=False)
    decoded = store.add(items, num_workers=decode_threads())
    return Explanations(images=store.gather(decoded.rows), heatmaps=heatmaps,
                        predicted=predicted, probability=proba[np.arange(len(items)), column],
                        explained=np.asarray(explained))


__all__ = ["PREDICTED", "Explanations", "default_layer", "explain_images", "grad_cam"]
