"""The epoch loop: batches -> (augment) -> mixed-precision step -> history, with early stopping."""

from __future__ import annotations

import contextlib
import copy
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from ..batches import autocast, device_batches, split_batches
from ..params import AVERAGING, ON_DIVERGENCE, PRECISIONS, TTA  # noqa: F401 - re-exported
from .augment import random_resized_crop_flip
from .optim import lr_factor_schedule, make_optimizer, set_lr
from .steps import EagerStep, GraphedStep

#: Time constant of the weight EMA, as a share of all training steps.
EMA_HORIZON = 0.1


class TrainingDivergedError(FloatingPointError):
    """Training produced a non-finite loss or non-finite weights.

    Raised by :func:`train_model` at the end of the epoch in which it happened, so that no
    model with NaN or infinite weights is ever returned.

    Attributes
    ----------
    epoch : int
        The epoch (from 1) in which training diverged.
    step : int or None
        The first step (from 1, within the epoch) whose loss was not finite; None when every
        loss was finite but the weights were not afterwards.
    """

    def __init__(self, epoch: int, step: int | None, steps: int, detail: str = "") -> None:
        self.epoch, self.step = epoch, step
        where = (f"the loss became non-finite at epoch {epoch}, step {step} of {steps}"
                 if step is not None else
                 f"the weights became non-finite during epoch {epoch}")
        super().__init__(
            f"Training diverged: {where}{detail}. Lower lr (or use lr_schedule='cosine', "
            "which warms up), or pass on_divergence='restore' to keep the weights of the last "
            "epoch that ended with finite values."
        )


@dataclass
class TrainConfig:
    """Settings of one training run (the estimator's parameters, resolved)."""

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    optimizer: str = "adamw"
    lr_schedule: str = "cosine"
    label_smoothing: float = 0.0
    class_weights: np.ndarray | None = None
    sampling: str | None = None
    augment: bool = True
    early_stopping: bool = False
    n_iter_no_change: int = 5
    precision: str = "fp32"
    cuda_graphs: bool | str = "auto"
    on_divergence: str = "raise"
    averaging: str | None = None
    verbose: int = 1
    seed: int = 0


@dataclass
class TrainResult:
    """What a run leaves: one history entry per epoch, and the epoch whose weights were kept.

    ``diverged`` holds the error of a run that diverged and kept (``on_divergence="restore"``)
    the weights of an earlier epoch; None otherwise.
    """

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    n_epochs: int = 0
    diverged: TrainingDivergedError | None = None


def finite_weights(module: nn.Module) -> bool:
    """Whether every floating-point parameter and buffer of ``module`` is finite.

    One synchronisation with the device, however many tensors the module has.

    Examples
    --------
    >>> layer = nn.Linear(2, 2)
    >>> finite_weights(layer)
    True
    >>> with torch.no_grad():
    ...     layer.weight[0, 0] = float("nan")
    >>> finite_weights(layer)
    False
    """
    checks = [t.detach().isfinite().all() for t in (*module.parameters(), *module.buffers())
              if t.is_floating_point()]
    return bool(torch.stack(checks).all().item()) if checks else True


def check_batch_norm_batches(module: nn.Module, batch_sizes: list[int]) -> None:
    """Refuse to train batch norm on batches of one image, with a clear error.

    Batch norm normalises by the statistics of the batch, which one image does not have. The
    loop already drops a last batch of one; this catches ``batch_size=1`` and a training set of
    a single image.

    Raises
    ------
    ValueError
        If ``module`` has batch-norm layers and some batch holds one sample.

    Examples
    --------
    >>> check_batch_norm_batches(nn.Linear(2, 2), [1, 1])  # no batch norm: fine
    """
    if not any(size == 1 for size in batch_sizes):
        return
    norms = [m for m in module.modules()
             if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm))]
    if norms:
        raise ValueError(
            f"Cannot train on batches of one image: the network has {len(norms)} batch-norm "
            "layers, which need at least 2 images per batch. Use batch_size >= 2 (and at least "
            "2 training images), or finetune='head', which trains only the head."
        )


def use_cuda_graphs(setting: bool | str, device: torch.device, batch_size: int) -> bool:
    """Whether to capture the train step in a CUDA graph.

    ``"auto"``: on CUDA at batch sizes up to 128, where launching kernels one by one leaves
    the GPU idle; larger batches keep the GPU busy without it.

    Examples
    --------
    >>> use_cuda_graphs("auto", torch.device("cpu"), 32)
    False
    """
    if torch.device(device).type != "cuda" or setting is False:
        return False
    return setting is True or batch_size <= 128


def _epoch_order(y: np.ndarray, sampling: str | None, rng: np.random.Generator) -> np.ndarray:
    if sampling is None:
        return rng.permutation(len(y))
    from ..datasets.splits import balance

    picked = balance(y, strategy=sampling, random_state=int(rng.integers(2**31)))
    return rng.permutation(np.asarray(picked))


@torch.inference_mode()
def predict_logits(module: nn.Module, source, batch_size: int, device: torch.device,
                   precision: str, tta: str | None = None) -> torch.Tensor:
    """Logits of every sample of ``source``, in order, in eval mode, as float32 on the device.

    With ``tta="flip"`` and image batches, each logit is the mean over the image and its
    horizontal mirror.
    """
    was_training = module.training
    module.eval()
    order = np.arange(len(source))
    flip = tta == "flip" and getattr(source, "kind", "") == "images"
    outputs = []
    with autocast(device, precision):
        for x in source.iterate(split_batches(order, batch_size)):
            logits = module(x).float()
            if flip:
                logits = 0.5 * (logits + module(x.flip(3)).float())
            outputs.append(logits)
    module.train(was_training)
    if not outputs:
        return torch.empty(0, device=device)
    return torch.cat(outputs)


def _valid_scores(logits: torch.Tensor, y: torch.Tensor, n_classes: int) -> dict[str, float]:
    loss = nn.functional.cross_entropy(logits, y).item()
    pred = logits.argmax(1).cpu().numpy()
    truth = y.cpu().numpy()
    return {
        "valid_loss": loss,
        "valid_accuracy": float((pred == truth).mean()),
        "valid_f1": float(f1_score(truth, pred, labels=np.arange(n_classes), average="macro",
                                   zero_division=0)),
    }


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """Run the block with ``n`` torch CPU threads (None: leave the count alone)."""
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_model(
    module: nn.Module,
    train_source,
    y_train: np.ndarray,
    config: TrainConfig,
    device: torch.device,
    n_classes: int,
    valid_source=None,
    y_valid: np.ndarray | None = None,
) -> TrainResult:
    """Train ``module`` on batches of ``train_source`` and return its history.

    Parameters
    ----------
    module : torch.nn.Module
        Network (for image batches) or head (for feature batches), already on ``device``.
    train_source : ImageBatches or FeatureBatches
        The training inputs.
    y_train : numpy.ndarray
        Encoded labels, ``0 .. n_classes - 1``.
    config : TrainConfig
    device : torch.device
    n_classes : int
    valid_source, y_valid : optional
        Holdout for the validation curves and early stopping.

    Returns
    -------
    TrainResult
        With the best epoch's weights restored in ``module`` when early stopping.

    Notes
    -----
    Training a head on cached features on a CPU runs on one thread: its tensors are too
    small to gain from more, and threads that wait for each other on a busy machine made it
    up to 8 times slower.
    """
    small = getattr(train_source, "kind", "") == "features" and device.type == "cpu"
    with cpu_threads(1 if small else None):
        return _run_epochs(module, train_source, y_train, config, device, n_classes,
                           valid_source, y_valid)


def _run_epochs(module, train_source, y_train, config, device, n_classes, valid_source,
                y_valid) -> TrainResult:
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator(device=device).manual_seed(config.seed)
    augment = config.augment and getattr(train_source, "kind", "") == "images"
    y_all = torch.as_tensor(y_train, dtype=torch.long, device=device)
    y_valid_t = (torch.as_tensor(y_valid, dtype=torch.long, device=device)
                 if valid_source is not None else None)
    weight = (torch.as_tensor(config.class_weights, dtype=torch.float32, device=device)
              if config.class_weights is not None else None)
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)

    steps_per_epoch = len(split_batches(_epoch_order(y_train, config.sampling,
                                                     np.random.default_rng(config.seed)),
                                        config.batch_size, drop_single=True))
    graphs = (config.optimizer == "adamw"
              and use_cuda_graphs(config.cuda_graphs, device, config.batch_size))
    optimizer = make_optimizer(module.parameters(), config.optimizer, config.lr,
                               config.weight_decay, capturable=graphs)
    lr_factor = lr_factor_schedule(config.lr_schedule, steps_per_epoch * config.epochs)
    args = (module, criterion, optimizer, device, config.precision)
    step = GraphedStep(*args, batch_size=config.batch_size) if graphs else EagerStep(*args)
    step_count = 0

    averaged = _weight_average(module, config.averaging, steps_per_epoch * config.epochs)
    watched = averaged.module if averaged is not None else module  # validated and kept
    result = TrainResult()
    best_f1, best_state, stale = -np.inf, None, 0
    last_good = None  # weights at the end of the last finite epoch, for on_divergence="restore"
    bar = tqdm(total=steps_per_epoch * config.epochs, unit="step", disable=config.verbose <= 0,
               leave=config.verbose > 0, desc="fit")
    for epoch in range(1, config.epochs + 1):
        module.train()
        start = time.perf_counter()
        batches = split_batches(_epoch_order(y_train, config.sampling, rng), config.batch_size,
                                drop_single=True)
        if epoch == 1:
            check_batch_norm_batches(module, [len(b) for b in batches])
        step_losses = []  # loss x batch size, per step, on the device: no sync per step
        correct = []
        seen = 0
        targets = [y_all.index_select(0, index) for index in device_batches(batches, device)]
        for target, x in zip(targets, train_source.iterate(batches)):
            if augment:
                x = random_resized_crop_flip(x, generator)
            set_lr(optimizer, config.lr * lr_factor(step_count))
            loss, logits = step(x, target)
            if averaged is not None:
                averaged.update_parameters(module)
            step_count += 1
            step_losses.append(loss.reshape(1) * len(target))
            correct.append(torch.stack([logits.argmax(1), target]))
            seen += len(target)
            bar.update(1)
        losses = (torch.cat(step_losses).cpu().numpy() if step_losses
                  else np.zeros(0, dtype=np.float32))
        diverged = _divergence(losses, module, epoch, len(batches))
        if diverged is not None:
            restore = best_state if config.early_stopping and best_state is not None else last_good
            if config.on_divergence != "restore" or restore is None:
                bar.close()
                raise diverged
            module.load_state_dict(restore)
            result.diverged = diverged
            if not (config.early_stopping and best_state is not None):
                result.best_epoch = result.n_epochs
            warnings.warn(f"{diverged} Kept the weights of epoch {result.best_epoch}.",
                          RuntimeWarning, stacklevel=3)
            bar.close()
            return result
        pairs = torch.cat(correct, dim=1).cpu().numpy() if correct else np.zeros((2, 0), int)
        seconds = time.perf_counter() - start
        entry = {
            "epoch": epoch,
            "train_loss": float(losses.sum() / max(1, seen)),
            "train_accuracy": float((pairs[0] == pairs[1]).mean()) if seen else float("nan"),
            "train_f1": float(f1_score(pairs[1], pairs[0], labels=np.arange(n_classes),
                                       average="macro", zero_division=0)),
            "samples": seen,
            "lr": config.lr * lr_factor(step_count - 1),
            "seconds": seconds,
            "images_per_second": seen / seconds if seconds > 0 else float("nan"),
        }
        if valid_source is not None:
            logits = predict_logits(watched, valid_source, max(config.batch_size, 64), device,
                                    config.precision)
            entry.update(_valid_scores(logits, y_valid_t, n_classes))
        result.history.append(entry)
        result.n_epochs = epoch
        if config.on_divergence == "restore":
            last_good = copy.deepcopy(module.state_dict())
        postfix = {"loss": f"{entry['train_loss']:.3f}"}
        if "valid_f1" in entry:
            postfix["valid_f1"] = f"{entry['valid_f1']:.3f}"
        bar.set_postfix(postfix, refresh=False)
        bar.set_description(f"fit epoch {epoch}/{config.epochs}")

        score = entry.get("valid_f1", -entry["train_loss"])
        if score > best_f1:
            best_f1, stale, result.best_epoch = score, 0, epoch
            if config.early_stopping:
                best_state = copy.deepcopy(watched.state_dict())
        else:
            stale += 1
        if config.early_stopping and stale >= config.n_iter_no_change:
            break
    bar.close()
    if config.early_stopping and best_state is not None:
        module.load_state_dict(best_state)
    else:
        result.best_epoch = result.n_epochs
        if averaged is not None:
            module.load_state_dict(averaged.module.state_dict())
    return result


def _weight_average(module: nn.Module, averaging: str | None,
                    total_steps: int) -> AveragedModel | None:
    """An exponential moving average of ``module``'s weights and batch-norm statistics, with
    a time constant of :data:`EMA_HORIZON` of the run's steps; None without averaging."""
    if averaging is None:
        return None
    if averaging != "ema":
        raise ValueError(f"averaging must be one of {list(AVERAGING)}, got {averaging!r}.")
    decay = 1.0 - 1.0 / max(1.0, EMA_HORIZON * total_steps)
    return AveragedModel(module, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _divergence(losses: np.ndarray, module: nn.Module, epoch: int,
                steps: int) -> TrainingDivergedError | None:
    """The error to raise if this epoch's losses or the weights after it are not finite."""
    bad = np.flatnonzero(~np.isfinite(losses))
    if len(bad):
        return TrainingDivergedError(epoch, int(bad[0]) + 1, steps,
                                     f" (loss {float(losses[bad[0]])})")
    if not finite_weights(module):
        return TrainingDivergedError(epoch, None, steps)
    return None
