"""Classification heads put on top of a backbone's pooled features."""

from __future__ import annotations

from torch import nn

from ..exceptions import InputError
from ..params import HEADS


def build_head(kind: str, in_features: int, n_classes: int) -> nn.Module:
    """Build a classification head.

    Parameters
    ----------
    kind : {"linear", "mlp"}
        ``"linear"``: one ``Linear(in_features, n_classes)`` (the reference ResNet152 head).
        ``"mlp"``: ``Linear(d, d/2) - Tanh - Linear(d/2, d/4) - Tanh - Linear(d/4, n_classes)``
        (the reference ResNet18 head).
    in_features : int
        Width of the backbone's pooled features.
    n_classes : int
        Number of outputs.

    Returns
    -------
    torch.nn.Module
        Maps ``(N, in_features)`` features to ``(N, n_classes)`` logits.

    Raises
    ------
    ValueError
        If ``kind`` is not one of :data:`HEADS`.

    Examples
    --------
    >>> build_head("mlp", 512, 5)
    Sequential(
      (0): Linear(in_features=512, out_features=256, bias=True)
      (1): Tanh()
      (2): Linear(in_features=256, out_features=128, bias=True)
      (3): Tanh()
      (4): Linear(in_features=128, out_features=5, bias=True)
    )
    """
    if kind == "linear":
        return nn.Linear(in_features, n_classes)
    if kind == "mlp":
        half, quarter = max(1, in_features // 2), max(1, in_features // 4)
        return nn.Sequential(
            nn.Linear(in_features, half),
            nn.Tanh(),
            nn.Linear(half, quarter),
            nn.Tanh(),
            nn.Linear(quarter, n_classes),
        )
    raise InputError(f"head must be one of {list(HEADS)}, got {kind!r}.")
