"""Training: batches on the device, augmentation, optimizer and schedule, the epoch loop."""

from .augment import random_resized_crop_flip
from .batches import FeatureBatches, ImageBatches, split_batches
from .loop import PRECISIONS, TrainConfig, TrainResult, autocast, predict_logits, train_model
from .optim import LR_SCHEDULES, OPTIMIZERS, make_optimizer, make_schedule

__all__ = [
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "PRECISIONS",
    "FeatureBatches",
    "ImageBatches",
    "TrainConfig",
    "TrainResult",
    "autocast",
    "make_optimizer",
    "make_schedule",
    "predict_logits",
    "random_resized_crop_flip",
    "split_batches",
    "train_model",
]
