"""A tiny generated two-modality image set for the density-model notebook (04).

Each sample is a scene of 1-3 random shapes (discs, rectangles) on a background:
  modality A: an intensity image (each shape has its own brightness and a stripe texture);
  modality B: a "depth" image of the same shapes (closer shapes occlude farther ones; smooth
  depth within a shape, a ramp on the background).
The two modalities share geometry but neither determines the other: the texture lives only in A,
the depth order only in B. So a joint density model has something to gain from modelling both.
"""

from __future__ import annotations

import numpy as np
import torch


def two_modality_shapes(n: int, size: int = 16, seed: int = 0, levels: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (a, b), each float32 (n, 1, size, size) in [0, 1), quantised to ``levels`` values
    (8-bit by default, so bits/dim can be reported on the usual discrete scale)."""
    if n < 1 or size < 4:
        raise ValueError(f"two_modality_shapes: expected n >= 1 and size >= 4, got n={n}, size={size}")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    a = np.empty((n, size, size), np.float32)
    b = np.empty((n, size, size), np.float32)
    for i in range(n):
        tilt = rng.uniform(-0.3, 0.3)
        img = np.full((size, size), rng.uniform(0.1, 0.3), np.float32)
        depth = (0.8 + tilt * (yy - 0.5)).astype(np.float32)
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(0.2, 0.8, 2)
            r = rng.uniform(0.12, 0.3)
            if rng.random() < 0.5:
                mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
            else:
                mask = (np.abs(yy - cy) < r) & (np.abs(xx - cx) < r * rng.uniform(0.5, 1.2))
            z = rng.uniform(0.2, 0.7)
            front = mask & (z < depth)
            freq = rng.uniform(3, 8)
            texture = 0.15 * np.sin(2 * np.pi * freq * (xx + yy * rng.uniform(-1, 1)))
            img = np.where(front, rng.uniform(0.45, 0.85) + texture, img)
            depth = np.where(front, z + 0.1 * ((yy - cy) ** 2 + (xx - cx) ** 2) / r**2 * r, depth)
        a[i] = img
        b[i] = depth
    q = lambda v: (np.floor(np.clip(v, 0, 1 - 1e-6) * levels) / levels).astype(np.float32)  # noqa: E731
    return torch.from_numpy(q(a))[:, None], torch.from_numpy(q(b))[:, None]
