"""Augmented views of image batches in plain torch (torchvision does not import beside the CPU torch build)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from spacl_hf.core.checks import check_int, check_tensor


class ViewPipeline:
    """Make ``num_views`` augmented views of every image: random resized crop, horizontal flip, brightness and
    contrast jitter, optional Gaussian blur. One batched affine warp does crop + resize + flip, so it runs on
    whatever device the images are on; randomness comes from a ``torch.Generator`` seeded with ``seed``.

    Args:
        num_views: views per image.
        crop_scale: range of the crop's area as a fraction of the image.
        crop_ratio: range of the crop's aspect ratio.
        flip: random horizontal flips.
        brightness: brightness factor drawn from ``[1 - b, 1 + b]``.
        contrast: contrast factor drawn from ``[1 - c, 1 + c]``.
        blur_probability: chance of a Gaussian blur per view.
        blur_sigma: range of the blur's standard deviation in pixels.
        seed: seed of the pipeline's generator (``None``: the global RNG).

    Shape:
        - images: ``[B, C, H, W]`` floats in ``[0, 1]``
        - output: ``[B, num_views, C, H, W]``

    Raises:
        ValueError: on out-of-range settings or images of the wrong rank.

    Examples:
        >>> pipeline = ViewPipeline(num_views=2, seed=0)
        >>> pipeline(torch.rand(4, 1, 28, 28)).shape
        torch.Size([4, 2, 1, 28, 28])
    """

    def __init__(
        self,
        num_views: int = 2,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: bool = True,
        brightness: float = 0.4,
        contrast: float = 0.4,
        blur_probability: float = 0.0,
        blur_sigma: tuple[float, float] = (0.1, 1.5),
        seed: int | None = None,
    ) -> None:
        self.num_views = check_int("num_views", num_views, 1)
        if not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"`crop_scale` must satisfy 0 < low <= high <= 1, got {crop_scale}.")
        if not 0 < crop_ratio[0] <= crop_ratio[1]:
            raise ValueError(f"`crop_ratio` must satisfy 0 < low <= high, got {crop_ratio}.")
        for name, value in (("brightness", brightness), ("contrast", contrast)):
            if not 0 <= value < 1:
                raise ValueError(f"`{name}` must be in [0, 1), got {value}.")
        if not 0 <= blur_probability <= 1:
            raise ValueError(f"`blur_probability` must be in [0, 1], got {blur_probability}.")
        if not 0 < blur_sigma[0] <= blur_sigma[1]:
            raise ValueError(f"`blur_sigma` must satisfy 0 < low <= high, got {blur_sigma}.")
        self.crop_scale, self.crop_ratio, self.flip = crop_scale, crop_ratio, flip
        self.brightness, self.contrast = brightness, contrast
        self.blur_probability, self.blur_sigma = blur_probability, blur_sigma
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def _uniform(self, low: float, high: float, size: tuple[int, ...], device: torch.device) -> Tensor:
        return low + (high - low) * torch.rand(size, generator=self._generator(device), device=device)

    def view(self, images: Tensor) -> Tensor:
        """One augmented view of every image, ``[B, C, H, W]``."""
        n, device = images.shape[0], images.device
        area = self._uniform(*self.crop_scale, (n,), device)
        log_ratio = self._uniform(math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1]), (n,), device)
        ratio = log_ratio.exp()
        width = (area * ratio).sqrt().clamp(max=1.0)  # crop size as a fraction of the image
        height = (area / ratio).sqrt().clamp(max=1.0)
        centre_x = (1 - width) * (2 * self._uniform(0, 1, (n,), device) - 1)
        centre_y = (1 - height) * (2 * self._uniform(0, 1, (n,), device) - 1)
        sign = torch.ones(n, device=device)
        if self.flip:
            sign = torch.where(self._uniform(0, 1, (n,), device) < 0.5, -1.0, 1.0)
        theta = torch.zeros(n, 2, 3, device=device, dtype=images.dtype)
        theta[:, 0, 0], theta[:, 1, 1] = width * sign, height
        theta[:, 0, 2], theta[:, 1, 2] = centre_x, centre_y
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        out = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        if self.brightness or self.contrast:
            shape = (n, 1, 1, 1)
            bright = self._uniform(1 - self.brightness, 1 + self.brightness, shape, device)
            contrast = self._uniform(1 - self.contrast, 1 + self.contrast, shape, device)
            mean = out.mean(dim=(1, 2, 3), keepdim=True)
            out = ((out - mean) * contrast + mean) * bright
        if self.blur_probability > 0:
            out = self._blur(out)
        return out.clamp(0.0, 1.0)

    def _blur(self, images: Tensor) -> Tensor:
        n, channels, height, width = images.shape
        device = images.device
        sigma = self._uniform(*self.blur_sigma, (n,), device)
        apply = self._uniform(0, 1, (n,), device) < self.blur_probability
        radius = max(1, int(math.ceil(2 * self.blur_sigma[1])))
        offsets = torch.arange(-radius, radius + 1, device=device, dtype=images.dtype)
        kernel = torch.exp(-(offsets[None] ** 2) / (2 * sigma[:, None] ** 2))
        kernel = kernel / kernel.sum(dim=1, keepdim=True)  # [n, k], one 1-D Gaussian per image
        kernel = kernel.repeat_interleave(channels, dim=0)  # per image and channel
        flat = images.reshape(1, n * channels, height, width)
        pad = (radius, radius, radius, radius)
        blurred = F.conv2d(F.pad(flat, pad, mode="reflect"), kernel[:, None, None, :], groups=n * channels)
        blurred = F.conv2d(blurred, kernel[:, None, :, None], groups=n * channels)
        blurred = blurred.reshape(n, channels, height, width)
        return torch.where(apply[:, None, None, None], blurred, images)

    def __call__(self, images: Tensor) -> Tensor:
        check_tensor("images", images, ndim=4, floating=True, finite=True)
        return torch.stack([self.view(images) for _ in range(self.num_views)], dim=1)
