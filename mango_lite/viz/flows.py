"""Figures for the invertible core: partition diagrams, attention maps, Jacobian structure."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap

from ..flows.partition import Partition

MODALITY_COLOURS = ("#1f77b4", "#ff7f0e")  # modality A blue, modality B orange


def partition_assignment(p: Partition) -> np.ndarray:
    """(2, 2T) array: row 0 = modality of each original token (0 = A, 1 = B), row 1 = group
    (0 = X1 conditioning, 1 = X2 re-mixed, 0.5 = mixed by LICA's matrix) of each original token."""
    t = p.tokens
    modality = np.r_[np.zeros(t), np.ones(t)]
    idx = p.token_index()
    group = np.full(2 * t, 0.5)
    if idx is not None:
        group[idx[0].numpy()] = 0
        group[idx[1].numpy()] = 1
    return np.stack([modality, group])


def draw_partition(p: Partition, ax: Axes | None = None, title: str | None = None) -> Axes:
    """Token-assignment diagram: top row = modality of each token, bottom row = X1 / X2 group.
    For LICA the bottom row shows the learned token-mixing matrix's weight on X1 (rows < T)."""
    ax = ax or plt.gca()
    t = p.tokens
    arr = partition_assignment(p)
    ax.imshow(arr[:1], cmap=ListedColormap(MODALITY_COLOURS), vmin=0, vmax=1, aspect="auto", extent=(-0.5, 2 * t - 0.5, 1.5, 0.5))
    if p.token_index() is not None:
        ax.imshow(arr[1:], cmap=ListedColormap(["#2ca02c", "#d62728"]), vmin=0, vmax=1, aspect="auto",
                  extent=(-0.5, 2 * t - 0.5, 2.5, 1.5))
    else:
        w = p.mixer.weight().detach().abs()  # type: ignore[attr-defined]
        share = (w[:t].sum(0) / w.sum(0)).numpy()  # how much of each token lands in X1
        ax.imshow(share[None], cmap="RdYlGn", vmin=0, vmax=1, aspect="auto", extent=(-0.5, 2 * t - 0.5, 2.5, 1.5))
    ax.set_yticks([1, 2], ["modality", "group"])
    ax.set_xticks(range(0, 2 * t, max(1, t // 4)))
    ax.axvline(t - 0.5, color="k", lw=1)
    ax.set_ylim(2.5, 0.5)
    ax.set_title(title or f"{p.name.upper()} variant {getattr(p, 'variant', 0)}")
    return ax


def draw_partition_legend(ax: Axes) -> None:
    from matplotlib.patches import Patch

    handles = [
        Patch(color=MODALITY_COLOURS[0], label="modality A"), Patch(color=MODALITY_COLOURS[1], label="modality B"),
        Patch(color="#2ca02c", label="X1: gives Q, K (unchanged)"), Patch(color="#d62728", label="X2: re-mixed by A"),
    ]
    ax.legend(handles=handles, loc="center", ncol=4, frameon=False)
    ax.axis("off")


def plot_attention(a: torch.Tensor, ax: Axes | None = None, title: str = "", log: bool = False) -> Axes:
    """Heat map of one (T, T) attention matrix A = I + gamma S (triangular). A matrix with negative entries (a
    learned gamma < 0) is drawn on a diverging scale centred at 0, so a negative weight never looks like a small
    positive one; otherwise (and on the ``log`` scale) on viridis."""
    ax = ax or plt.gca()
    m = a.detach().cpu().double().numpy()
    if log:
        m = np.log10(np.where(m > 0, m, np.nan))
    if not log and np.nanmin(m) < 0:
        lim = float(np.nanmax(np.abs(m)))
        im = ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
    else:
        im = ax.imshow(m, cmap="viridis")
    plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(title)
    ax.set_xlabel("key / source token j")
    ax.set_ylabel("query / output token i")
    return ax


def plot_jacobian(jac: torch.Tensor, ax: Axes | None = None, title: str = "Jacobian", split: Sequence[int] = ()) -> Axes:
    """Show |J| on a log colour scale with optional block boundaries."""
    ax = ax or plt.gca()
    m = jac.detach().abs().cpu().double().numpy()
    im = ax.imshow(np.log10(m + 1e-16), cmap="magma", vmin=-8, vmax=1)
    plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="log10 |J|")
    for s in split:
        ax.axhline(s - 0.5, color="c", lw=1)
        ax.axvline(s - 0.5, color="c", lw=1)
    ax.set_title(title)
    ax.set_xlabel("input coordinate")
    ax.set_ylabel("output coordinate")
    return ax


def image_grid(images: torch.Tensor, nrow: int = 8, pad: int = 1, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """(N, C, H, W) with C in {1, 3} -> one (H', W', C) or (H', W') array for ``imshow``."""
    x = images.detach().cpu().float().clamp(*value_range)
    x = (x - value_range[0]) / (value_range[1] - value_range[0])
    n, c, h, w = x.shape
    ncol = min(nrow, n)
    nrows = (n + ncol - 1) // ncol
    grid = torch.ones(c, nrows * (h + pad) + pad, ncol * (w + pad) + pad)
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[:, pad + r * (h + pad): pad + r * (h + pad) + h, pad + q * (w + pad): pad + q * (w + pad) + w] = x[i]
    arr = grid.permute(1, 2, 0).numpy()
    return arr[..., 0] if c == 1 else arr


def plot_conditioning(gamma: float, log_temperature: float, tokens: int = 16, seed: int = 0,
                      ax: Axes | None = None) -> float:
    """The mixing part of one ICA layer, ``A - I = diag(gamma) S`` (IMCA, lower triangle, one draw of random
    tokens), on a diverging colour scale centred at 0, titled with cond_inf(A) and the bound
    (1 + |gamma|) / (1 - |gamma|). ``log_temperature`` below 0 sharpens the attention. Returns cond_inf(A)."""
    from ..flows import InvertibleCrossAttention
    from ..flows.reference import attention_matrix

    if not -1.0 < gamma < 1.0:
        raise ValueError(f"plot_conditioning: expected -1 < gamma < 1, got {gamma}")
    used = gamma if gamma != 0.0 else 1e-6  # the layer's gamma must be non-zero to be a parameter
    layer = InvertibleCrossAttention(4, tokens, "imca", gamma=used, triangle="lower").double()
    with torch.no_grad():
        layer.log_temperature.fill_(log_temperature)
        x = torch.randn(1, 2 * tokens, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        a = attention_matrix(layer, x)[0, 0]
    cond = float(torch.linalg.matrix_norm(a, ord=float("inf")) * torch.linalg.matrix_norm(torch.linalg.inv(a),
                                                                                             ord=float("inf")))
    bound = (1 + abs(used)) / (1 - abs(used))
    mix = (a - torch.eye(tokens, dtype=a.dtype)).numpy()
    lim = max(float(np.abs(mix).max()), 1e-12)
    ax = ax or plt.gca()
    im = ax.imshow(mix, cmap="RdBu_r", vmin=-lim, vmax=lim)  # signed: 0 is white, the masked zeros too
    ax.set_title(f"γ={gamma:+.2f}, log τ={log_temperature:+.1f}\ncond∞(A)={cond:.2f} ≤ {bound:.2f}", fontsize=9)
    ticks = list(range(0, tokens, max(1, tokens // 4)))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    plt.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return cond
