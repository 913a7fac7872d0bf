"""Batched augmentation on the device: random resized crop and horizontal flip in one resample."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_resized_crop_flip(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    scale: tuple[float, float] = (0.35, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
) -> torch.Tensor:
    """Crop a random box from each image, resize it back to full size, and flip it at random.

    Every image of the batch gets its own box and flip, and the whole batch is resampled by
    one ``grid_sample`` call on the batch's device, so augmentation costs one kernel rather
    than a Python loop over images.

    Parameters
    ----------
    x : torch.Tensor
        Batch of shape ``(N, C, H, W)``, floating point.
    generator : torch.Generator, optional
        Random generator on ``x``'s device, for reproducible augmentation.
    scale : tuple of float, default=(0.35, 1.0)
        Range of the box's area as a fraction of the image.
    ratio : tuple of float, default=(3/4, 4/3)
        Range of the box's aspect ratio (width / height).
    flip_p : float, default=0.5
        Probability of a horizontal flip.

    Returns
    -------
    torch.Tensor
        Augmented batch, same shape, dtype and device as ``x``.

    Examples
    --------
    >>> x = torch.rand(4, 3, 32, 32)
    >>> random_resized_crop_flip(x).shape
    torch.Size([4, 3, 32, 32])
    """
    n = x.shape[0]
    # one draw for every random number of the batch: area, aspect, shift x, shift y, flip
    u = torch.rand(n, 5, device=x.device, generator=generator)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1])
    width = torch.sqrt(area * aspect).clamp(max=1.0)  # fraction of the image's width
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    shift_x = (u[:, 2] * 2 - 1) * (1 - width)
    shift_y = (u[:, 3] * 2 - 1) * (1 - height)
    flip = 1.0 - 2.0 * (u[:, 4] < flip_p).float()
    zero = torch.zeros_like(width)
    theta = torch.stack([width * flip, zero, shift_x, zero, height, shift_y], dim=1).view(n, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="reflection",
                        align_corners=False)
    return out.to(x.dtype)
