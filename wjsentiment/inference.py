"""The inference seam: what a fitted model offers to the code that serves, explains, exports
or streams its predictions.

Both estimators expose the same small public surface, so that :mod:`wjsentiment.export`,
:mod:`wjsentiment.explain`, :mod:`wjsentiment.scale`, the command line and the HTTP service
never ask which estimator class they hold, nor reach into its private names:

- ``model.members_``: the fitted classifiers that vote, as :class:`Member` tuples (name,
  classifier, weight, temperature). A :class:`~wjsentiment.SentimentClassifier` is one member
  of weight 1 and temperature 1; a :class:`~wjsentiment.SentimentEnsemble` lists its own.
- ``model.decision_rule_`` and ``model.class_prior_``: how ``predict`` turns probabilities
  into a label ("balanced" or "argmax", see :func:`wjsentiment.calibration.decide`) and the
  training class frequencies that "balanced" divides by.
- ``classifier.decode(X)``: the inputs decoded for that classifier (its image size, colour
  mode, decoder and device) into the shared cache, as :class:`DecodedImages`; held in a
  ``with`` block, its rows stay pinned, so ``predict_proba`` on the same inputs decodes
  nothing again.
- ``classifier.inference_network()``: the network on the classifier's device, in eval mode
  with frozen parameters, for the length of a ``with`` block.

This module holds the types of that surface and two helpers every consumer shares:
:func:`decode_pinned` (decode inputs once for all members) and :func:`rule_sentence` (the
decision rule in words, for every place that shows a label). It imports nothing above
:mod:`wjsentiment.batches`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch

from .batches import ImageBatches, split_batches
from .exceptions import InputError
from .images.cache import DecodedImageStore, DecodeResult
from .images.decode import BadImageError

__all__ = ["DecodedImages", "FittedModel", "Member", "decode_pinned", "rule_sentence"]

#: Each decision rule of ``predict`` (see ``decision_rule_``), in words.
RULES = {
    "balanced": "the class most likely relative to its training frequency",
    "argmax": "the most probable class",
}


class Member(NamedTuple):
    """One fitted classifier of a model's soft vote (see ``members_``).

    Attributes
    ----------
    name : str
        The member's name (an ensemble's member name; a lone classifier's class name).
    classifier : object
        The fitted classifier.
    weight : float
        Its weight in the vote; the weights of a model's members sum to 1.
    temperature : float
        The temperature its probabilities are scaled by before the vote (1.0: none).
    """

    name: str
    classifier: Any
    weight: float
    temperature: float


@runtime_checkable
class FittedModel(Protocol):
    """What a fitted :class:`~wjsentiment.SentimentClassifier` or
    :class:`~wjsentiment.SentimentEnsemble` offers its consumers (see the module's notes)."""

    classes_: np.ndarray
    class_prior_: np.ndarray

    @property
    def members_(self) -> list[Member]: ...

    @property
    def decision_rule_(self) -> str: ...

    def predict_proba(self, X: Any) -> np.ndarray: ...

    def predict_from_proba(self, proba: Any) -> np.ndarray: ...


class DecodedImages(contextlib.AbstractContextManager):
    """Inputs decoded for one classifier, pinned in the shared decoded-image cache.

    Made by ``SentimentClassifier.decode``. While it is held (until :meth:`release` or the
    end of a ``with`` block), the decoded pixels stay in the cache, so the classifier's
    ``predict_proba`` on the same inputs finds them and decodes nothing.

    Attributes
    ----------
    errors : list of (int, BadImageError)
        Position and error of each input that could not be decoded, in order.
    device : torch.device
        Where :meth:`batches` puts its tensors: the classifier's device.
    """

    def __init__(self, store: DecodedImageStore, result: DecodeResult,
                 device: torch.device) -> None:
        self._store = store
        self._result = result
        self.errors: list[tuple[int, BadImageError]] = list(result.errors)
        self.device = device

    def __len__(self) -> int:
        return len(self._result.rows)

    def batches(self, batch_size: int, positions: np.ndarray | None = None
                ) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        """Float ``[0, 1]`` NCHW batches on :attr:`device`, ``batch_size`` images at a time.

        Yields ``(positions, tensor)`` pairs: the input positions of the batch and its
        pixels (the network normalises them itself). ``positions`` defaults to all inputs,
        which must all be readable.
        """
        positions = np.arange(len(self)) if positions is None else np.asarray(positions)
        rows = self._result.rows[positions]
        if (rows < 0).any():
            raise InputError("Some of these inputs could not be decoded (see errors); pass "
                             "the positions of readable ones.")
        index = split_batches(np.arange(len(rows)), int(batch_size))
        source = ImageBatches(self._store, rows, self.device, resident=False)
        for batch, x in zip(index, source.iterate(index)):
            yield positions[batch], x

    def release(self) -> None:
        """Unpin the images: the cache may evict them from now on. Safe to repeat."""
        self._result.release()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def decode_pinned(model: FittedModel, paths: list[str],
                  held: contextlib.ExitStack) -> dict[int, str]:
    """Decode ``paths`` once for every member of ``model``, as its ``predict_proba`` would
    (same store, same decoder and device), pinned until ``held`` closes; return why each
    unreadable one is unreadable, by position.

    ``predict_proba`` (and Grad-CAM) then find the images decoded: none is decoded twice,
    and a CUDA model decodes on its GPU.
    """
    reasons: dict[int, str] = {}
    for member in model.members_ if paths else []:
        decoded = held.enter_context(member.classifier.decode(paths))
        for pos, error in decoded.errors:
            reasons.setdefault(pos, error.reason)
    return reasons


def rule_sentence(rule: str) -> str:
    """How a model's ``decision_rule_`` picks labels, in one line for people.

    Examples
    --------
    >>> rule_sentence("argmax")
    "Labels by the 'argmax' rule: the most probable class (see the decision parameter)."
    """
    return f"Labels by the {rule!r} rule: {RULES[rule]} (see the decision parameter)."
