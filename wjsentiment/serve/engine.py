"""The model as the service runs it: a saved classifier or ensemble, or an exported ONNX file.

An :class:`Engine` takes images already decoded by the HTTP side (uint8 ``(n, size, size, 3)``
arrays, one per image size the model reads) and gives probabilities in ordinal class order
and the labels ``predict`` gives. It only uses the model's public inference seam
(:mod:`wjsentiment.inference`) or :class:`~wjsentiment.export.OnnxClassifier`, so it serves
both estimators and an exported file alike.
"""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..calibration import soft_vote
from ..labels import ordinal_labels

__all__ = ["Engine", "load_engine"]

#: RAM for the image cache of a serving worker: a batch's decoded images pass through it.
#: Past it a batch would spill to disk (and nothing is kept between batches on disk); it
#: holds a thousand 224 px images, more than a default batch (16 requests of 64 images).
WORKER_CACHE_BYTES = 256 * 2**20


def _png(pixels: np.ndarray) -> str:
    """A ``data:`` URL of a PNG of uint8 pixels (gray ``(h, w)`` or RGB ``(h, w, 3)``)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class Engine:
    """A loaded model with what the service needs of it.

    Parameters
    ----------
    model : SentimentClassifier, SentimentEnsemble or OnnxClassifier
        Fitted.
    name : str
        What the model is called in answers and logs (its file or folder name).

    Attributes
    ----------
    classes : list
        The classes in ordinal order (see :func:`wjsentiment.labels.ordinal_labels`).
    sizes : tuple of int
        The image sizes the model reads, smallest first: the HTTP side decodes each upload
        once per size.
    decision_rule : str
        How labels are chosen from the probabilities: "argmax" or "balanced".
    heatmaps : bool
        Whether :meth:`explain` can draw Grad-CAM heat maps (not for an ONNX file).
    """

    def __init__(self, model: Any, name: str) -> None:
        self.model = model
        self.name = name
        self.heatmaps = hasattr(model, "members_")
        if self.heatmaps:
            members = model.members_
            missing = [m.name for m in members if not hasattr(m.classifier, "image_size")]
            if missing:
                raise TypeError(f"Members {missing} of {name!r} do not read images; the "
                                "service serves SentimentClassifiers and ensembles of them.")
            self.sizes = tuple(sorted({int(m.classifier.image_size) for m in members}))
        else:
            self.sizes = (int(model.image_size),)
        self.decision_rule = model.decision_rule_
        model_classes = np.asarray(model.classes_).tolist()  # Python values, for JSON
        self.classes = ordinal_labels(model_classes)
        self._order = np.array([model_classes.index(c) for c in self.classes])

    def _model_proba(self, pixels: dict[int, np.ndarray]) -> np.ndarray:
        """Probabilities in the model's class order, as its ``predict_proba`` gives them for
        the files the pixels were decoded from."""
        if len(self.sizes) == 1:
            return np.asarray(self.model.predict_proba(pixels[self.sizes[0]]))
        # Members that read different sizes each get the images decoded at their size, and
        # the vote is the one the ensemble's predict_proba takes (soft_vote, same weights).
        members = self.model.members_
        probas = [m.classifier.predict_proba(pixels[int(m.classifier.image_size)])
                  for m in members]
        return soft_vote(probas, [m.temperature for m in members], [m.weight for m in members])

    def predict(self, pixels: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities ``(n, n_classes)`` with columns in :attr:`classes` order, and labels.

        Parameters
        ----------
        pixels : dict of int to numpy.ndarray
            For each size of :attr:`sizes`, the images decoded at that size, uint8
            ``(n, size, size, 3)``, in the same order.
        """
        proba = self._model_proba(pixels)
        if not np.isfinite(proba).all():
            raise FloatingPointError(f"The model {self.name!r} gave non-finite probabilities.")
        return proba[:, self._order], np.asarray(self.model.predict_from_proba(proba))

    def explain(self, pixels: dict[int, np.ndarray]) -> list[dict[str, Any]]:
        """Grad-CAM heat maps of the images, as PNG ``data:`` URLs: the map in gray
        (``heatmap``) and laid over the image (``overlay``), at the largest image size."""
        from ..explain import explain_images, overlay_heatmap

        result = explain_images(self.model, pixels[self.sizes[-1]])
        return [{"label": label, "explained": explained,
                 "heatmap": _png(np.round(heat * 255).astype(np.uint8)),
                 "overlay": _png(overlay_heatmap(image, heat))}
                for label, explained, heat, image in zip(
                    result.predicted.tolist(), result.explained.tolist(), result.heatmaps,
                    result.images)]

    def warm_up(self, explain: bool = False) -> None:
        """Run the model once on blank images, so the first request does not pay for the
        first call's set-up (memory, kernels, Grad-CAM's hooks)."""
        blank = {size: np.zeros((1, size, size, 3), dtype=np.uint8) for size in self.sizes}
        self.predict(blank)
        if explain:
            self.explain(blank)


def load_engine(path: str | os.PathLike, device: str | None = None) -> Engine:
    """Load a saved model folder, or an ``.onnx`` file written by ``wjsentiment export``.

    Parameters
    ----------
    path : path-like
        The model folder or the ONNX file.
    device : str, optional
        Where a saved model runs ("cpu", "cuda", "cuda:1"); an ONNX file runs on the CPU
        through onnxruntime.

    Raises
    ------
    FileNotFoundError
        When there is no model at ``path``.
    """
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        from ..export import load_onnx

        return Engine(load_onnx(path), path.name)
    import wjsentiment

    model = wjsentiment.load(path, device=device)
    for est in [model, *(m.classifier for m in model.members_)]:
        if "verbose" in est.get_params(deep=False):
            est.set_params(verbose=0)
    return Engine(model, path.name)
