"""Grad-CAM heat maps: which regions of an image made the classifier choose a class.

Grad-CAM weighs the feature maps of a convolutional layer by the gradient of a class's logit
with respect to them, keeps the positive part and upsamples it to the image. The maps come from
Captum's :class:`~captum.attr.LayerGradCam`, PyTorch's own interpretability library: it
attaches to any layer of an unmodified ``nn.Module`` by reference, takes care of the hooks
and gradients, and upsamples with :meth:`~captum.attr.LayerAttribution.interpolate`; its
pure-Python package adds no dependency that wjsentiment does not already have.

Images go through the same decoding (the shared decoded-image store) and the same
normalisation (inside :class:`~wjsentiment.models.SentimentNet`) as in ``predict_proba``.
:func:`save_explanations` writes the maps of many image files as PNGs over the photos, at
the photos' own aspect ratio, with an ``index.html`` beside them (what ``wjsentiment
explain`` writes).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from functools import partial
from html import escape
from itertools import islice
from numbers import Integral
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from .config import decode_threads
from .exceptions import InputError
from .export import network_members
from .images.cache import get_store
from .inference import FittedModel, Member, decode_pinned, rule_sentence
from .inputs import as_image_inputs
from .persistence import atomic_file

#: Long side, in pixels, of the heat-map PNGs of :func:`save_explanations`.
HEATMAP_SIDE = 384

#: The ``target`` that explains the class each image is predicted to be.
PREDICTED = "predicted"

#: The ``index.html`` of :func:`save_explanations`, a :class:`string.Template`.
_INDEX_TEMPLATE = Path(__file__).with_name("templates") / "explain_index.html"


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


#: What Grad-CAM runs on, for the error that names anything else.
_NEEDS = "Grad-CAM needs a SentimentClassifier (or a SentimentEnsemble of them)."


# --------------------------------------------------------------------------------- layers
def _feature_layers(backbone: nn.Module, size: int) -> list[str]:
    """Names of the backbone's modules whose output is a 4-D feature map, in the order their
    forward passes finish, from one pass of ``forward_features`` (no pooling, no head)."""
    finished: list[str] = []

    def record(name: str, module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.ndim == 4:
            finished.append(name)

    device = next(backbone.parameters()).device
    with contextlib.ExitStack() as hooks:
        for name, module in backbone.named_modules():
            if name:
                hooks.callback(module.register_forward_hook(partial(record, name)).remove)
        with torch.no_grad():
            backbone.forward_features(torch.zeros(1, 3, size, size, device=device))
    return list(dict.fromkeys(finished))


def default_layer(estimator: Any) -> str:
    """The layer :func:`grad_cam` uses by default: the backbone's last 4-D feature map.

    It is the last module of the timm backbone's ``forward_features`` whose output has the
    shape ``(N, C, H, W)``: the final convolutional stage before global pooling (``"layer4"``
    for ResNets, ``"bn2"`` for EfficientNets, ``"features"`` for DenseNets).

    Parameters
    ----------
    estimator : SentimentClassifier or SentimentEnsemble
        A fitted classifier (for an ensemble, its first member's layer).

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
    classifier = network_members(estimator, _NEEDS)[0].classifier
    with classifier.inference_network() as net:
        return _resolve_layer(classifier, net, None)[0]


def check_layer(estimator: FittedModel, layer: str | None) -> None:
    """Refuse a ``layer`` that some member of ``estimator`` cannot explain, before any image
    is read (the command line checks ``--layer`` so).

    Raises
    ------
    ValueError
        If ``layer`` is not a 4-D feature layer of every member's backbone (None: each
        member's :func:`default_layer`, which a backbone without feature maps lacks).

    Examples
    --------
    >>> import numpy as np
    >>> from wjsentiment import SentimentClassifier
    >>> X = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    >>> clf = SentimentClassifier(weights=None, image_size=32, epochs=1, verbose=0,
    ...                           random_state=0).fit(X, ["Negative", "Positive"])
    >>> check_layer(clf, "layer9")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    wjsentiment.exceptions.InputError: layer='layer9' is not a module of the 'resnet18' backbone...
    """
    for member in network_members(estimator, _NEEDS):
        with member.classifier.inference_network() as net:
            _resolve_layer(member.classifier, net, layer)


def _resolve_layer(estimator: Any, net: nn.Module, layer: str | None) -> tuple[str, nn.Module]:
    """The name and module of ``layer`` (None: the last 4-D feature map) in ``net``'s
    backbone, refused with the names to choose from when it is not a feature layer."""
    names = _feature_layers(net.backbone, estimator.image_size)
    if not names:
        raise InputError(f"The {estimator.backbone!r} backbone produces no 4-D feature map; "
                         "Grad-CAM needs a convolutional backbone.")
    if layer is None:
        layer = names[-1]
    elif not isinstance(layer, str) or layer not in names:
        modules = dict(net.backbone.named_modules())
        what = "is not a module of" if layer not in modules else \
            "does not output a 4-D feature map in"
        raise InputError(
            f"layer={layer!r} {what} the {estimator.backbone!r} backbone. Pass the name of one "
            f"of its feature layers, e.g. one of {names[-5:]}; the default is {names[-1]!r}."
        )
    return layer, net.backbone.get_submodule(layer)


# --------------------------------------------------------------------------------- grad-cam
def _classifier_maps(estimator: Any, items: list, targets: np.ndarray,
                     size: int, batch_size: int | None, layer: str | None) -> np.ndarray:
    from captum.attr import LayerAttribution, LayerGradCam

    out = np.empty((len(items), size, size), dtype=np.float32)
    # Eval mode with frozen parameters: gradients reach the layer's output, never the weights.
    with estimator.decode(items) as decoded, estimator.inference_network() as net:
        if decoded.errors:
            raise decoded.errors[0][1]
        cam = LayerGradCam(net, _resolve_layer(estimator, net, layer)[1])
        for index, x in decoded.batches(batch_size or estimator.batch_size):
            target = torch.as_tensor(targets[index], device=decoded.device)
            maps = cam.attribute(x, target=target, relu_attributions=True)
            maps = LayerAttribution.interpolate(maps.detach(), (size, size),
                                                interpolate_mode="bilinear")[:, 0].clamp_min(0)
            # Each map over its maximum: values in [0, 1], all 0 where nothing is positive.
            peak = maps.amax(dim=(1, 2), keepdim=True)
            out[index] = (maps / torch.where(peak > 0, peak, 1.0)).cpu().numpy()
    return out


def _target_indices(estimator: Any, items: list, target: Any) -> np.ndarray:
    """Column of ``classes_`` each image's map explains."""
    classes = estimator.classes_.tolist()
    predicted = isinstance(target, str) and target == PREDICTED
    labels = np.asarray(estimator.predict(items) if predicted else target)
    if labels.ndim == 0:  # one label for all
        labels = np.repeat(labels, len(items))
    if labels.shape != (len(items),):
        raise InputError(f"target has {labels.size} labels for {len(items)} images; pass "
                         f"one label per image, one label for all, or {PREDICTED!r}.")
    unknown = sorted({str(label) for label in labels.tolist() if label not in classes})
    if unknown:
        raise InputError(f"target names {unknown}, which are not classes of the estimator "
                         f"({classes}); pass one of them or {PREDICTED!r}.")
    return np.array([classes.index(label) for label in labels.tolist()], dtype=np.int64)


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
        raise InputError(f"batch_size must be a positive integer or None, got {batch_size!r}.")
    members = network_members(estimator, _NEEDS)
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
        The decoded images, their heat maps, and the labels predicted and explained.

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
    members = network_members(estimator, _NEEDS)
    items = as_image_inputs(X)
    store = get_store(_output_size(members), grayscale=False)
    # Pinned until gathered: unpinned rows may be evicted or reused (by another thread's
    # images, say) as soon as the store needs room.
    with store.add(items, num_workers=decode_threads(), pin=True) as decoded:
        if decoded.errors:
            raise decoded.errors[0][1]
        proba = np.asarray(estimator.predict_proba(items))
        predicted = np.asarray(estimator.predict_from_proba(proba))
        column = _target_indices(estimator, items, predicted)
        explained = predicted if isinstance(target, str) and target == PREDICTED else \
            estimator.classes_[_target_indices(estimator, items, target)]
        heatmaps = grad_cam(estimator, items, target=explained, batch_size=batch_size,
                            layer=layer)
        images = store.gather(decoded.rows)
    return Explanations(images=images, heatmaps=heatmaps,
                        predicted=predicted, probability=proba[np.arange(len(items)), column],
                        explained=np.asarray(explained))


@dataclass(frozen=True)
class SavedExplanations:
    """What :func:`save_explanations` wrote, and what it left out.

    Attributes
    ----------
    rows : list of tuple
        One ``(path, png, predicted, probability, explained)`` per heat map written: the
        image, the PNG's name in the folder, the predicted label, its probability and the
        label the map explains.
    skipped : list of (str, str)
        The inputs that could not be read or walked, with the reason, in input order.
    index : pathlib.Path
        The ``index.html`` that lists both.
    """

    rows: list[tuple[str, str, Any, float, Any]]
    skipped: list[tuple[str, str]]
    index: Path


def _write_heatmap(png: Path, path: str, heatmap: np.ndarray) -> None:
    """The heat map over the photo at ``path``, upright, transparency on white, at the
    photo's own aspect ratio: the model sees the photo squashed into a square, so stretching
    the square map back to the photo's shape is exact."""

    with Image.open(path) as img:
        img.draft("RGB", (HEATMAP_SIDE, HEATMAP_SIDE))  # JPEGs decode smaller at once
        img = ImageOps.contain(ImageOps.exif_transpose(img).convert("RGBA"),
                               (HEATMAP_SIDE, HEATMAP_SIDE), Image.Resampling.LANCZOS)
    photo = Image.new("RGB", img.size, "white")
    photo.paste(img, mask=img)
    heat = np.asarray(Image.fromarray(heatmap.astype(np.float32)).resize(
        img.size, Image.Resampling.BILINEAR)).clip(0.0, 1.0)
    with atomic_file(png, "wb") as fh:
        Image.fromarray(overlay_heatmap(np.asarray(photo), heat)).save(fh, format="PNG")


def _index_html(saved: SavedExplanations, rule: str, title: str) -> str:
    """index.html: each heat map with its file, label and probability; the skipped inputs."""
    row = ('<tr><td><a href="{0}"><img src="{0}" alt="{1}"></a></td><td>{2}</td><td>{3}</td>'
           "<td>{4:.3f}</td><td>{5}</td></tr>")
    rows = [row.format(quote(png), escape(png), escape(path), escape(str(label)), probability,
                       escape(str(explained)))
            for path, png, label, probability, explained in saved.rows]
    skipped = "".join(f"<li>{escape(path)}: {escape(reason)}</li>"
                      for path, reason in saved.skipped)
    return Template(_INDEX_TEMPLATE.read_text(encoding="utf-8")).substitute(
        title=escape(title), count=len(saved.rows), rule=escape(rule_sentence(rule)),
        rows="\n".join(rows),
        skipped=f"<h2>Skipped ({len(saved.skipped)})</h2>\n<ul>{skipped}</ul>\n" if skipped else "")


def _png_name(position: int, path: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).stem)[:60]
    return f"{position:04d}_{stem}.png"


def _input_targets(target: Any, paths: Iterable[Any]) -> np.ndarray | None:
    """A per-input ``target`` of :func:`save_explanations` as an array (checked against the
    inputs' number where it is known), or None for one target for all."""
    if np.ndim(target) == 0:  # "predicted" or one label
        return None
    labels = np.asarray(target)
    if isinstance(paths, Sized) and len(labels) != len(paths):
        raise InputError(f"target has {len(labels)} labels for {len(paths)} inputs; pass one "
                         f"label per input, one label for all, or {PREDICTED!r}.")
    return labels


def _labels_of(labels: np.ndarray, kept: list[int], seen: int) -> np.ndarray:
    """The labels of the inputs at positions ``kept``, refused when the inputs (``seen`` so
    far) outnumber the labels."""
    if seen > len(labels):
        raise InputError(f"target has {len(labels)} labels for more inputs; pass one label "
                         f"per input, one label for all, or {PREDICTED!r}.")
    return labels[kept]


def save_explanations(estimator: FittedModel, paths: Iterable[Any],
                      out: str | os.PathLike, *, target: Any = PREDICTED,
                      layer: str | None = None, batch_size: int = 32, title: str = "a model",
                      on_chunk: Callable[[int], None] | None = None) -> SavedExplanations:
    """Write a heat-map PNG per image file and an ``index.html`` listing them into ``out``.

    Each PNG shows the Grad-CAM map (:func:`explain_images`) over the photo, at the photo's
    aspect ratio and :data:`HEATMAP_SIDE` pixels on its long side. ``index.html`` lists each
    with its file, the predicted label and its probability and the explained label, names
    the decision rule that chose the labels, and lists the inputs left out: a file that
    cannot be read as an image does not stop the others, nor does a
    :class:`~wjsentiment.datasets.SkippedEntry` of a folder walk.

    Parameters
    ----------
    estimator : SentimentClassifier or SentimentEnsemble
        Fitted, as for :func:`grad_cam`.
    paths : iterable of path-like or SkippedEntry
        Image files, read ``batch_size`` at a time.
    out : path-like
        The folder to write into (created).
    target : "predicted", a label, or array-like of labels, default="predicted"
        As for :func:`grad_cam`; one label per input of ``paths``, skipped ones included.
    layer : str, optional
        As for :func:`grad_cam`.
    batch_size : int, default=32
        Images explained per step.
    title : str, default="a model"
        What the page's heading names (the model's folder, say).
    on_chunk : callable, optional
        Called with the number of inputs of each chunk once it is done.

    Returns
    -------
    SavedExplanations
        The heat maps written, the inputs skipped and the ``index.html``.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from PIL import Image
    >>> from wjsentiment import SentimentClassifier
    >>> folder = tempfile.mkdtemp()
    >>> Image.new("RGB", (60, 30), (200, 30, 30)).save(f"{folder}/wide.png")
    >>> X = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    >>> clf = SentimentClassifier(weights=None, image_size=32, epochs=1, verbose=0,
    ...                           random_state=0).fit(X, ["Negative", "Positive"] * 2)
    >>> saved = save_explanations(clf, [f"{folder}/wide.png", "gone.png"], f"{folder}/why")
    >>> Image.open(f"{folder}/why/{saved.rows[0][1]}").size, saved.skipped
    ((384, 192), [('gone.png', 'no such file')])
    """
    from .datasets.folders import SkippedEntry

    labels = _input_targets(target, paths)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    saved = SavedExplanations([], [], out / "index.html")
    inputs, done = iter(paths), 0
    while chunk := list(islice(inputs, int(batch_size))):
        saved.skipped.extend((i.path, i.reason) for i in chunk if isinstance(i, SkippedEntry))
        at = [k for k, i in enumerate(chunk) if not isinstance(i, SkippedEntry)]
        files = [os.fspath(chunk[k]) for k in at]
        with contextlib.ExitStack() as held:
            reasons = decode_pinned(estimator, files, held)
            saved.skipped.extend((files[i], reason) for i, reason in sorted(reasons.items()))
            good = [path for i, path in enumerate(files) if i not in reasons]
            kept = [done + k for i, k in enumerate(at) if i not in reasons]
            result = explain_images(estimator, good, batch_size=batch_size, layer=layer,
                                    target=target if labels is None else
                                    _labels_of(labels, kept, done + len(chunk))) if good else None
        done += len(chunk)
        for k, path in enumerate(good):
            png = _png_name(len(saved.rows), path)
            _write_heatmap(out / png, path, result.heatmaps[k])
            saved.rows.append((path, png, result.predicted[k], float(result.probability[k]),
                               result.explained[k]))
        if on_chunk is not None:
            on_chunk(len(chunk))
    if labels is not None and len(labels) != done:
        raise InputError(f"target has {len(labels)} labels for {done} inputs; pass one label "
                         f"per input, one label for all, or {PREDICTED!r}.")
    with atomic_file(saved.index, "w", encoding="utf-8") as fh:
        fh.write(_index_html(saved, estimator.decision_rule_, title))
    return saved


def overlay_heatmap(image: Any, heatmap: Any, *, alpha: float = 0.5,
                    cmap: str = "jet") -> np.ndarray:
    """Blend a heat map, coloured by a colormap, over an image.

    Parameters
    ----------
    image : array-like of shape (H, W, 3), uint8
        The image.
    heatmap : array-like of shape (H, W)
        Values in [0, 1], e.g. one map of :func:`wjsentiment.explain.grad_cam`.
    alpha : float, default=0.5
        Opacity of the heat map, from 0 (image only) to 1 (heat map only).
    cmap : str, default="jet"
        A matplotlib colormap name.

    Returns
    -------
    numpy.ndarray of shape (H, W, 3), uint8
        The blended image.

    Raises
    ------
    ValueError
        If the shapes do not match or ``alpha`` is outside [0, 1].

    Examples
    --------
    >>> image = np.zeros((4, 4, 3), dtype=np.uint8)
    >>> overlay_heatmap(image, np.ones((4, 4)), alpha=1.0)[0, 0].tolist()  # jet's top: dark red
    [128, 0, 0]
    """
    from matplotlib import colormaps

    image = np.asarray(image)
    heatmap = np.asarray(heatmap, dtype=float)
    if image.ndim != 3 or image.shape[2] != 3 or heatmap.shape != image.shape[:2]:
        raise InputError(f"image must be (H, W, 3) and heatmap (H, W) of the same size, got "
                         f"{image.shape} and {heatmap.shape}.")
    if not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha!r}.")
    colours = colormaps[cmap](np.clip(heatmap, 0.0, 1.0))[..., :3] * 255.0
    blend = (1.0 - alpha) * image.astype(float) + alpha * colours
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


__all__ = ["HEATMAP_SIDE", "PREDICTED", "Explanations", "SavedExplanations", "check_layer",
           "default_layer", "explain_images", "grad_cam", "overlay_heatmap", "save_explanations"]
