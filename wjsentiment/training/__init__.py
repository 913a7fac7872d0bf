"""Training: batches on the device, augmentation, optimizer and schedule, the step, the loop."""

from ..batches import FeatureBatches, ImageBatches, autocast, device_batches, split_batches
from .augment import random_resized_crop_flip
from .loop import (
    ON_DIVERGENCE,
    PRECISIONS,
    TrainConfig,
    TrainingDivergedError,
    TrainResult,
    predict_logits,
    train_model,
    use_cuda_graphs,
)
from .optim import LR_SCHEDULES, OPTIMIZERS, lr_factor_schedule, make_optimizer, set_lr
from .steps import EagerStep, GraphedStep

__all__ = [
    "LR_SCHEDULES",
    "ON_DIVERGENCE",
    "OPTIMIZERS",
    "PRECISIONS",
    "EagerStep",
    "FeatureBatches",
    "GraphedStep",
    "ImageBatches",
    "TrainConfig",
    "TrainResult",
    "TrainingDivergedError",
    "autocast",
    "device_batches",
    "lr_factor_schedule",
    "make_optimizer",
    "predict_logits",
    "random_resized_crop_flip",
    "set_lr",
    "split_batches",
    "train_model",
    "use_cuda_graphs",
]
