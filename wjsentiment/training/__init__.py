"""Training: the epoch loop, its callbacks, augmentation on the device, optimizer and schedule.

What users need from here: :class:`Callback` to write their own ``callbacks`` for
:class:`~wjsentiment.SentimentClassifier`, the loop's own two callbacks as examples, the
error raised when training diverges, and :func:`is_main_process` for a script that fits under
torchrun and saves once. The modules (``loop``, ``callbacks``, ``optim``, ``steps``,
``augment``, ``distributed``) hold the rest, for the estimator.
"""

from .callbacks import Callback, EarlyStopping, ProgressBar
from .distributed import is_main_process
from .loop import TrainingDivergedError

__all__ = ["Callback", "EarlyStopping", "ProgressBar", "TrainingDivergedError",
           "is_main_process"]
