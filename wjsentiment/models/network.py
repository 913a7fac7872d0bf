"""The full network: input normalisation, backbone and head, built from a small JSON-able spec."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from .backbones import create_backbone
from .heads import build_head


class SentimentNet(nn.Module):
    """Normalise ``[0, 1]`` float images, run the backbone, then the head.

    The normalisation lives in the network (as buffers), so a saved model carries it and
    the data path only has to hand over pixels.

    Parameters
    ----------
    backbone : torch.nn.Module
        Headless timm model returning pooled features.
    head : torch.nn.Module
        Maps features to logits.
    mean, std : tuple of float
        Per-channel input normalisation.

    Examples
    --------
    >>> net = SentimentNet(torch.nn.Flatten(), torch.nn.Linear(12, 5), (0.5,) * 3, (0.5,) * 3)
    >>> net(torch.rand(2, 3, 2, 2)).shape
    torch.Size([2, 5])
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, mean, std) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features of a ``(N, 3, H, W)`` batch with values in ``[0, 1]``."""
        return self.backbone((x - self.mean) / self.std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of a ``(N, 3, H, W)`` batch with values in ``[0, 1]``."""
        return self.head(self.features(x))


def build_network(
    spec: dict[str, Any], weights: str | os.PathLike | None = None
) -> tuple[SentimentNet, dict[str, Any]]:
    """Build a :class:`SentimentNet` from a spec.

    Parameters
    ----------
    spec : dict
        ``backbone`` (timm name), ``head`` ("linear" or "mlp") and ``n_classes``.
    weights : "imagenet", None or path
        Backbone weights, as in :func:`~wjsentiment.models.backbones.create_backbone`.
        Use None when a full state dict will be loaded next.

    Returns
    -------
    net : SentimentNet
        The network, in training mode.
    info : dict
        The backbone's info (``num_features``, ``mean``, ``std``, ``weights_source``).

    Examples
    --------
    >>> net, info = build_network({"backbone": "resnet18", "head": "linear", "n_classes": 5})
    >>> net(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 5])
    """
    backbone, info = create_backbone(spec["backbone"], weights)
    head = build_head(spec["head"], info["num_features"], int(spec["n_classes"]))
    return SentimentNet(backbone, head, info["mean"], info["std"]), info
