"""Training: the epoch loop, its callbacks, augmentation on the device, optimizer and schedule.

What users need from here: :class:`Callback` to write their own ``callbacks`` for
:class:`~wjsentiment.SentimentClassifier`, the loop's own two callbacks as examples, and the
error raised when training diverges. The modules (``loop``, ``callbacks``, ``optim``,
``steps``, ``augment``) hold the rest, for the estimator.
"""

from .callbacks import Callback, EarlyStopping, ProgressBar
from .loop import TrainingDivergedError

__all__ = ["Callback", "EarlyStopping", "ProgressBar", "TrainingDivergedError"]
