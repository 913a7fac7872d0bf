"""The epoch loop: batches -> (augment) -> mixed-precision step -> history.

Each epoch is small steps (:meth:`_Run.train_epoch`, :meth:`_Run.record`); what happens
between them is told to callbacks (:mod:`wjsentiment.training.callbacks`), two of which are the
loop's own: the progress bar and early stopping.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score
from torch import nn

from ..batches import FeatureBatches, ImageBatches, autocast, device_batches, split_batches
from ..config import get_config
from ..exceptions import DivergenceWarning, InputError, TrainingDivergedError, warn
from .augment import random_resized_crop_flip
from .callbacks import EarlyStopping, ProgressBar, overrides
from .distributed import LOCAL, Local
from .optim import make_optimizer, make_scheduler
from .steps import EagerStep, GraphedStep


@dataclass
class TrainConfig:
    """Settings of one training run.

    The fields without a default are the estimator parameters of the same names (declared
    once, with their defaults, in :data:`wjsentiment.params.CLASSIFIER_PARAMS`);
    :meth:`from_params` takes them from the estimator's ``get_params()``. The others are the
    values ``fit`` resolves: the precision and CUDA-graph setting for the device, the class
    weights for the labels, and the seed.
    """

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    optimizer: str
    lr_schedule: str
    label_smoothing: float
    augment: bool
    early_stopping: bool
    n_iter_no_change: int
    on_divergence: str
    verbose: int
    precision: str = "fp32"
    cuda_graphs: bool | str = False
    class_weights: np.ndarray | None = None
    seed: int = 0

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **resolved: Any) -> TrainConfig:
        """The configuration of estimator parameters ``params``, with ``resolved`` values
        taking the place of parameters of the same name (``precision="auto"`` -> "bf16").

        Examples
        --------
        >>> from wjsentiment.params import CLASSIFIER_PARAMS, defaults
        >>> config = TrainConfig.from_params(defaults(CLASSIFIER_PARAMS), precision="fp32")
        >>> config.epochs, config.precision
        (10, 'fp32')
        """
        names = {f.name for f in fields(cls)}
        given = {k: v for k, v in params.items() if k in names and k not in resolved}
        return cls(**given, **resolved)


@dataclass
class TrainResult:
    """What a run leaves: one history entry per epoch, and the epoch whose weights were kept."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    n_epochs: int = 0


def weighted_cross_entropy(class_weights: torch.Tensor | None, label_smoothing: float
                           ) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss of a batch: the cross-entropy of each sample, weighted by its sample weight
    times its class's weight, summed and divided by the sum of those weights.

    With equal sample weights this is torch's ``CrossEntropyLoss(weight=class_weights)``
    (the class-weighted mean); sample weights multiply class weights, as in scikit-learn.

    Examples
    --------
    >>> loss = weighted_cross_entropy(None, 0.0)
    >>> logits, target = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0])
    >>> round(float(loss(logits, target, torch.tensor([1.0, 0.0]))), 4)  # the first alone
    0.1269
    """
    per_sample = nn.CrossEntropyLoss(weight=class_weights, label_smoothing=label_smoothing,
                                     reduction="none")

    def loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        total = weight if class_weights is None else weight * class_weights[target]
        return (weight * per_sample(logits, target)).sum() / total.sum()

    return loss


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
        raise InputError(
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


@torch.inference_mode()
def predict_logits(module: nn.Module, source, batch_size: int, device: torch.device,
                   precision: str) -> torch.Tensor:
    """Logits of every sample of ``source``, in order, in eval mode, as float32 on the device."""
    was_training = module.training
    module.eval()
    order = np.arange(len(source))
    outputs = []
    with autocast(device, precision):
        for x in source.iterate(split_batches(order, batch_size)):
            outputs.append(module(x).float())
    module.train(was_training)
    if not outputs:
        return torch.empty(0, device=device)
    return torch.cat(outputs)


def _scores(split: str, pred: np.ndarray, truth: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 of ``pred`` against ``truth``, named for the ``split``."""
    return {
        f"{split}_accuracy": float((pred == truth).mean()),
        f"{split}_f1": float(f1_score(truth, pred, labels=np.arange(n_classes), average="macro",
                                      zero_division=0)),
    }


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """Run the block with ``n`` torch CPU threads (None: leave the count alone)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(previous if n is None else n)
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
    *,
    sample_weight: np.ndarray | None = None,
    epoch_order: Callable[[np.random.Generator], np.ndarray] | None = None,
    callbacks: Sequence[Any] = (),
    owner: Any = None,
    parallel: Local = LOCAL,
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
        The run's settings.
    device : torch.device
        Where ``module`` is and the batches go.
    n_classes : int
        The number of classes (for the macro-F1 of ``history_``).
    valid_source, y_valid : optional
        Holdout for the validation curves and early stopping (unweighted).
    sample_weight : numpy.ndarray, optional
        Positive weight of each training sample in the loss (see
        :func:`weighted_cross_entropy`). Default: equal weights.
    epoch_order : callable, optional
        Given the run's random generator, the positions of ``train_source`` one epoch visits,
        in order (class-balanced sampling, say). Default: a permutation of all of them.
    callbacks : sequence, optional
        Objects told of the run (see :mod:`wjsentiment.training.callbacks`), after the loop's
        own progress bar and early stopping.
    owner : object, optional
        What the callbacks are given as ``estimator``.
    parallel : Local or DataParallel, optional
        The data-parallel context (:mod:`wjsentiment.training.distributed`): each rank
        trains on its shard of every epoch's order through ``DistributedDataParallel``, the
        records of ``history_`` cover all ranks and are rank 0's on every rank, and training
        stops on every rank when a callback of some rank asks. The weights stay those of
        this rank; the caller broadcasts rank 0's at the end. Default: one process.

    Returns
    -------
    TrainResult
        With the best epoch's weights restored in ``module`` when early stopping.

    Notes
    -----
    Training a head on cached features on a CPU runs on one thread: its tensors are too
    small to gain from more (see ``benchmarks/RESULTS.md``). Otherwise torch's CPU threads
    follow ``wjsentiment.set_config(torch_threads=...)``.
    """
    small = isinstance(train_source, FeatureBatches) and device.type == "cpu"
    with cpu_threads(1 if small else get_config()["torch_threads"]):
        run = _Run(module, train_source, y_train, config, device, n_classes,
                   (valid_source, y_valid), epoch_order, parallel, sample_weight)
        return run.fit(list(callbacks), owner)


class _Run:
    """One training run: what its epochs share, and each part of an epoch as one method.

    :meth:`fit` runs the epochs: :meth:`train_epoch` (one pass over the batches),
    :meth:`record` (the epoch's ``history_`` entry, with the validation scores), then the
    callbacks decide whether to stop.
    """

    def __init__(self, module: nn.Module, source, y_train: np.ndarray, config: TrainConfig,
                 device: torch.device, n_classes: int, valid: tuple,
                 epoch_order: Callable[[np.random.Generator], np.ndarray] | None,
                 parallel: Local = LOCAL, sample_weight: np.ndarray | None = None) -> None:
        self.module, self.source, self.config = module, source, config
        self.device, self.n_classes, self.parallel = device, n_classes, parallel
        whole = epoch_order or (lambda rng: rng.permutation(len(y_train)))
        self.order = lambda rng: parallel.shard(whole(rng))  # the same rng on every rank
        self.rng = np.random.default_rng(config.seed)
        # Augmentation differs between ranks: each crops its own images its own way.
        self.generator = torch.Generator(device=device).manual_seed(config.seed + parallel.rank)
        self.augment = config.augment and isinstance(source, ImageBatches)
        self.y = torch.as_tensor(y_train, dtype=torch.long, device=device)
        self.weights = torch.as_tensor(np.ones(len(y_train)) if sample_weight is None
                                       else sample_weight, dtype=torch.float32, device=device)
        self.valid_source = valid[0]
        self.y_valid = (torch.as_tensor(valid[1], dtype=torch.long, device=device)
                        if valid[0] is not None else None)
        self.steps_per_epoch = len(split_batches(self.order(np.random.default_rng(config.seed)),
                                                 config.batch_size, drop_single=True))
        self.steps_done = 0
        self.last_good: dict | None = None  # weights after the last finite epoch ("restore")
        self.result = TrainResult()
        # The optimizer, its learning-rate schedule and the train step (graphed or eager).
        class_weights = (None if config.class_weights is None else
                         torch.as_tensor(config.class_weights, dtype=torch.float32, device=device))
        criterion = weighted_cross_entropy(class_weights, config.label_smoothing)
        # A DDP step all-reduces between ranks: it is not captured in a CUDA graph.
        graphs = (config.optimizer == "adamw" and parallel.world_size == 1
                  and use_cuda_graphs(config.cuda_graphs, device, config.batch_size))
        optimizer = make_optimizer(module.parameters(), config.optimizer, config.lr,
                                   config.weight_decay, capturable=graphs)
        self.schedule = make_scheduler(optimizer, config.lr_schedule,
                                       self.steps_per_epoch * config.epochs)
        self.last_lr = self.schedule.get_last_lr()[0]
        args = (parallel.wrap(module), criterion, optimizer, device, config.precision)
        self.step = (GraphedStep(*args, batch_size=config.batch_size) if graphs
                     else EagerStep(*args))

    def fit(self, callbacks: list[Any], owner: Any) -> TrainResult:
        """Run the epochs, telling ``callbacks`` (after the loop's own) what happens."""
        progress = ProgressBar(self.steps_per_epoch * self.config.epochs, self.config.epochs,
                               self.config.verbose if self.parallel.rank == 0 else 0)
        early = (EarlyStopping(self.module, self.config.n_iter_no_change)
                 if self.config.early_stopping else None)
        hooks = [progress, *([early] if early is not None else []), *callbacks]
        diverged = None
        try:
            _tell(hooks, "on_fit_begin", owner)
            for epoch in range(1, self.config.epochs + 1):
                losses, pairs, seconds = self.train_epoch(epoch, hooks, owner)
                diverged = _divergence(losses, self.module, epoch, self.steps_per_epoch)
                if diverged is not None:
                    break
                # one history_ on every rank
                entry = self.parallel.from_rank0(self.record(epoch, losses, pairs, seconds))
                self.result.history.append(entry)
                self.result.n_epochs = epoch
                if self.config.on_divergence == "restore" and early is None:
                    # (with early stopping its best epoch is what a divergence restores)
                    self.last_good = copy.deepcopy(self.module.state_dict())
                if self.parallel.any(any(_tell(hooks, "on_epoch_end", owner, entry))):
                    break
            self.finish(early, diverged)
            _tell(hooks, "on_fit_end", owner)
        finally:
            progress.close()
        return self.result

    def train_epoch(self, epoch: int, hooks: list[Any], owner: Any
                    ) -> tuple[np.ndarray, np.ndarray, float]:
        """One pass over the epoch's batches: the loss x batch size of each step, the
        (predicted, true) class pairs (both of every rank's steps), and the seconds it took."""
        self.module.train()
        start = time.perf_counter()
        batches = split_batches(self.order(self.rng), self.config.batch_size, drop_single=True)
        if epoch == 1:
            check_batch_norm_batches(self.module, [len(b) for b in batches])
        per_batch = [h for h in hooks if overrides(h, "on_batch_end")]
        step_losses, correct = [], []  # on the device: no sync per step
        indices = device_batches(batches, self.device)
        targets = [(self.y.index_select(0, i), self.weights.index_select(0, i)) for i in indices]
        for (target, weight), x in zip(targets, self.source.iterate(batches)):
            if self.augment:
                x = random_resized_crop_flip(x, self.generator)
            loss, logits = self.step(x, target, weight)
            self.last_lr = self.schedule.get_last_lr()[0]  # the rate this step used
            self.schedule.step()
            self.steps_done += 1
            step_losses.append(loss.reshape(1) * len(target))
            correct.append(torch.stack([logits.argmax(1), target]))
            for hook in per_batch:
                hook.on_batch_end(owner, self.steps_done)
        # Every epoch has a step: the estimator trains on at least one image, a rank's shard
        # is never empty and split_batches keeps a lone batch of one.
        losses = torch.cat(step_losses).cpu().numpy()
        pairs = torch.cat(correct, dim=1).cpu().numpy()
        # Every rank runs as many steps of one size: the gathered arrays cover all ranks.
        return (self.parallel.gather(losses), self.parallel.gather(pairs),
                time.perf_counter() - start)

    def record(self, epoch: int, losses: np.ndarray, pairs: np.ndarray,
               seconds: float) -> dict:
        """The epoch's ``history_`` entry: its training steps' scores, and with a validation
        set those of the current weights on it."""
        seen = pairs.shape[1]
        entry = {
            "epoch": epoch,
            "train_loss": float(losses.sum() / seen),
            **_scores("train", pairs[0], pairs[1], self.n_classes),
            "samples": seen,
            "lr": float(self.last_lr),
            "seconds": seconds,
            "images_per_second": seen / seconds if seconds > 0 else float("nan"),
        }
        if self.valid_source is not None:
            logits = predict_logits(self.module, self.valid_source,
                                    max(self.config.batch_size, 64), self.device,
                                    self.config.precision)
            entry["valid_loss"] = nn.functional.cross_entropy(logits, self.y_valid).item()
            entry.update(_scores("valid", logits.argmax(1).cpu().numpy(),
                                 self.y_valid.cpu().numpy(), self.n_classes))
        return entry

    def finish(self, early: EarlyStopping | None,
               diverged: TrainingDivergedError | None) -> None:
        """Set the epoch whose weights the module keeps: the best one with early stopping
        (which restores them at ``on_fit_end``), else the last. After a non-finite epoch
        (``diverged``): raise, or with ``on_divergence="restore"`` keep those weights (of the
        last finite epoch without early stopping) and warn."""
        best = early is not None and early.best_state is not None
        if diverged is not None:
            if self.config.on_divergence != "restore" or not (best or self.last_good is not None):
                raise diverged
            if not best:
                self.module.load_state_dict(self.last_good)
        self.result.best_epoch = early.best_epoch if best else self.result.n_epochs
        if diverged is not None:
            warn(f"{diverged} Kept the weights of epoch {self.result.best_epoch}.",
                 DivergenceWarning)


def _tell(hooks: list[Any], name: str, owner: Any, *args: Any) -> list[Any]:
    """Call the hook ``name`` of every callback that has it (a record as a copy each)."""
    methods = [getattr(hook, name, None) for hook in hooks]
    return [method(owner, *(dict(a) for a in args)) for method in methods if callable(method)]




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
