"""What ``fit`` tells the objects of its ``callbacks`` parameter, and the loop's own callbacks.

A callback is any object with some of these methods; :class:`Callback` gives each a no-op
default, so a subclass overrides only what it needs:

- ``on_fit_begin(estimator)``: once, before the first epoch;
- ``on_batch_end(estimator, step)``: after every optimisation step (``step`` counts from 1
  over the whole run); keep it cheap, it runs between steps on the GPU;
- ``on_epoch_end(estimator, record) -> bool | None``: after every epoch, with that epoch's
  entry of ``history_`` (a copy: changing it changes nothing). Returning True asks training to
  stop after this epoch;
- ``on_fit_end(estimator)``: once, when the epochs are over (all of them, an early stop, a
  callback's request, or a divergence kept with ``on_divergence="restore"``), before ``fit``
  calibrates the probabilities. Not called when ``fit`` raises.

``estimator`` is the :class:`~wjsentiment.SentimentClassifier` being fitted. Its fitted
attributes are set only when ``fit`` returns, so a callback works from the records.

Callbacks are parameters of the estimator: ``clone`` copies them and pickling the estimator
pickles them, so they should be picklable (hold a file name, not an open file).

The loop itself stops early and shows its progress bar through two such callbacks,
:class:`EarlyStopping` and :class:`ProgressBar`.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..exceptions import InputError
from ..progress import progress

__all__ = ["HOOKS", "Callback", "EarlyStopping", "ProgressBar", "check_callbacks"]

#: The methods a callback may have.
HOOKS = ("on_fit_begin", "on_batch_end", "on_epoch_end", "on_fit_end")


class Callback:
    """Base class of ``fit`` callbacks: every method does nothing until overridden.

    Examples
    --------
    A callback that stops training once the training loss is low enough:

    >>> class StopAtLoss(Callback):
    ...     def __init__(self, threshold):
    ...         self.threshold = threshold
    ...
    ...     def on_epoch_end(self, estimator, record):
    ...         return record["train_loss"] < self.threshold
    >>> StopAtLoss(0.1).on_epoch_end(None, {"train_loss": 0.05})
    True
    """

    def on_fit_begin(self, estimator: Any) -> None:
        """Called once before the first epoch."""

    def on_batch_end(self, estimator: Any, step: int) -> None:
        """Called after every optimisation step (``step`` counts from 1 over the run)."""

    def on_epoch_end(self, estimator: Any, record: dict) -> bool | None:
        """Called after every epoch with its ``history_`` entry; return True to stop."""

    def on_fit_end(self, estimator: Any) -> None:
        """Called once when training is over, before calibration."""


def check_callbacks(callbacks: Sequence[Any] | None) -> None:
    """Refuse, with a clear error, a ``callbacks`` entry that has none of the :data:`HOOKS`.

    Raises
    ------
    ValueError
        Naming the position and type of the offending entry.

    Examples
    --------
    >>> check_callbacks([Callback()])
    >>> check_callbacks([3])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    wjsentiment.exceptions.InputError: callbacks[0] is 3, which has none of the methods ...
    """
    for i, callback in enumerate(callbacks or []):
        if not any(callable(getattr(callback, name, None)) for name in HOOKS):
            raise InputError(
                f"callbacks[{i}] is {callback!r}, which has none of the methods "
                f"{', '.join(HOOKS)}; subclass wjsentiment.training.Callback and override "
                "the ones you need."
            )


def overrides(callback: Any, name: str) -> bool:
    """Whether ``callback`` does something in the hook ``name`` (not the base no-op)."""
    method = getattr(type(callback), name, None)
    return callable(method) and method is not getattr(Callback, name)


class ProgressBar(Callback):
    """The tqdm bar of ``fit``: one tick per step, the loss and validation F1 per epoch.

    A :func:`~wjsentiment.progress.progress` bar: not shown inside a call that owns the
    output (an ensemble's fit), nor for a fit that ends within a second; once shown, it stays.

    Parameters
    ----------
    total_steps : int
        Steps of the whole run.
    epochs : int
        Epochs of the whole run (for the description).
    verbose : int
        Nothing is shown when 0.
    """

    def __init__(self, total_steps: int, epochs: int, verbose: int) -> None:
        self.total_steps, self.epochs, self.verbose = total_steps, epochs, verbose
        self.bar: tqdm | None = None
        self._open = contextlib.ExitStack()

    def on_fit_begin(self, estimator: Any) -> None:
        self.bar = self._open.enter_context(
            progress(self.total_steps, "fit", "step", self.verbose, leave=True))

    def on_batch_end(self, estimator: Any, step: int) -> None:
        self.bar.update(1)

    def on_epoch_end(self, estimator: Any, record: dict) -> None:
        postfix = {"loss": f"{record['train_loss']:.3f}"}
        if "valid_f1" in record:
            postfix["valid_f1"] = f"{record['valid_f1']:.3f}"
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.set_description(f"fit epoch {record['epoch']}/{self.epochs}", refresh=False)

    def on_fit_end(self, estimator: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the bar (also when training ends with an error); safe to repeat."""
        self._open.close()


class EarlyStopping(Callback):
    """Stop when the validation macro-F1 (the negated training loss without a validation
    set) has not improved for ``patience`` epochs, and restore the best epoch's weights.

    Parameters
    ----------
    module : torch.nn.Module
        The module whose weights are kept at the best epoch and restored when training
        ends.
    patience : int
        Epochs without improvement before stopping.

    Attributes
    ----------
    best_epoch : int
        The epoch with the best score so far (0 before the first).
    best_state : dict or None
        A copy of the module's weights at ``best_epoch``.
    """

    def __init__(self, module: Any, patience: int) -> None:
        self.module, self.patience = module, patience
        self.best_score = -np.inf
        self.best_epoch = 0
        self.best_state: dict | None = None
        self.stale = 0

    def on_epoch_end(self, estimator: Any, record: dict) -> bool:
        score = record.get("valid_f1", -record["train_loss"])
        if score > self.best_score:
            self.best_score, self.best_epoch, self.stale = score, record["epoch"], 0
            self.best_state = copy.deepcopy(self.module.state_dict())
        else:
            self.stale += 1
        return self.stale >= self.patience

    def on_fit_end(self, estimator: Any) -> None:
        if self.best_state is not None:
            self.module.load_state_dict(self.best_state)
