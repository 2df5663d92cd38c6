"""Does invertible cross-attention learn to align two modalities? A controlled toy, trained by likelihood alone.

Modality B is modality A shifted by ``shift`` token positions, plus a little noise: ``b_p = a_{p - shift} +
noise``. Nothing tells the layer where the matching token is. One IMCA layer (variant 0: X1 = the even tokens
of A and B, X2 = the odd ones; lower triangle, so B's tokens in X2 can receive from A's) is fitted as a density
model, ``-log N(z; 0, I) - log|det|``, in bits per dimension. The likelihood rewards subtracting from each B
token its best prediction, and the best prediction of ``b_p`` is ``a_{p - shift}``: if the attention finds that
token, each B row of S puts its weight on the A column ``shift`` places back. The control is the same layer
with gamma fixed at 0 (no attention: the identity on X2).

``gamma_mode`` (see :mod:`mango_lite.flows.ica`; "head" by default) lets each row of X2 carry its own gamma. B's
rows gain from subtracting the A token they found (gamma < 0), A's rows hold independent tokens and gain nothing
from mixing, so one gamma per head can only settle in between; "modality" and "token" let B's rows go negative
alone.

What one such layer can gain at best (:func:`layer_bound`): only B's odd tokens (a quarter of the dimensions) have
a prediction the layer can read, and with A = I + diag(gamma) S, |gamma| < 1, B's row k becomes
(1 + gamma s_kk) b + gamma (1 - s_kk) a + ..., a multiple of the residual b - a only as gamma -> -1, and then with
the factor 1 - s_kk <= 1: the layer can remove the predicted part but cannot rescale the residual (that would
need a log-det above 0 on the row, and 1 + gamma s_kk > 1 needs gamma > 0). Per B odd dimension the best is
0.5 (1 + noise^2) -> 0.5 noise^2 nats, 0.5 nats = 0.72 bits, about 0.18 bits/dim over all dimensions
(2.051 -> 1.871 at noise 0.1). A map that also rescaled the residual to unit variance would save a further
log(1 / noise) nats per such dimension (~1.22 bits/dim overall): out of reach for an ICA layer of this form,
whatever its gamma.

Per-row gamma alone does not get near the 0.18: S does not separate B's row from the A token it should read.
The queries and keys of a row are those of its X1 partner, and B's partner b_{2k} carries the same content as
the aligned A key a_{2k - shift}, so a content-matching attention gives B's row k about as much weight on itself
(s_kk) as on the aligned A token. With s_kk = s_aligned = 1/2 the best gamma of that row is about -0.39 and saves
0.14 bits per B odd dimension, ~0.036 bits/dim overall, whatever the gamma mode.

``self_logit`` (a learnable per-head offset on S's diagonal logits, also a deviation from the paper, see
:mod:`mango_lite.flows.ica`) lets the layer stop a row attending to itself. With per-row gamma, beta is learned
negative (~ -3.5 after 400 steps), B's diagonal weight drops from ~0.41 to ~0.04, the aligned share of B's
attention to A rises from ~0.73 to ~0.92, B's gamma goes to ~ -0.95 and the gain reaches 0.148-0.150 bits/dim,
82-83 % of the bound (0.048 with head gamma; 3 seeds, 16 tokens, 4 channels, shift 4, gamma rate 10). With 800
steps beta is still moving (~ -4.8) and "modality" reaches 0.158 (87 %), while the runs without it had converged.

The queries and keys come from X1 (the even tokens), the mixed values from X2 (the odd tokens). With an even
shift, B's even token at position ``2k`` carries the content of A's even token at ``2k - shift``; matching that
content is how the attention can find the A token whose odd neighbour predicts B's odd token ``2k + 1``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..flows import InvertibleCrossAttention

__all__ = ["shifted_pair", "alignment_layer", "fit_alignment", "attention_weights", "aligned_columns", "aligned_share",
           "alignment_study", "modality_gammas", "layer_bound"]


def shifted_pair(n: int, tokens: int, dim: int, shift: int, noise: float = 0.1,
                 generator: torch.Generator | None = None) -> Tensor:
    """``(n, 2 * tokens, dim)``: A's tokens i.i.d. N(0, 1), then B = A rolled by ``shift`` positions + noise."""
    if shift % 2:
        raise ValueError(f"shifted_pair: shift must be even (X1/X2 take even/odd tokens), got {shift}")
    a = torch.randn(n, tokens, dim, generator=generator)
    b = torch.roll(a, shift, dims=1) + noise * torch.randn(n, tokens, dim, generator=generator)
    return torch.cat([a, b], dim=1)


def alignment_layer(tokens: int, dim: int, attention: bool = True, gamma_mode: str = "head", gamma: float = 0.1,
                    gamma_rate: float = 10.0, self_logit: bool = False) -> InvertibleCrossAttention:
    """The IMCA layer of the study; ``attention=False`` is the control (gamma fixed at 0, whatever the other
    options). ``gamma_mode`` / ``gamma`` (initial value) / ``gamma_rate`` / ``self_logit`` (learnable offset of the
    diagonal logits): see :class:`InvertibleCrossAttention`."""
    return InvertibleCrossAttention(dim, tokens, partition="imca", variant=0, triangle="lower",
                                    gamma=gamma if attention else 0.0, learn_gamma=attention, gamma_rate=gamma_rate,
                                    gamma_mode=gamma_mode if attention else "head",
                                    self_logit=self_logit and attention)


def layer_bound(noise: float = 0.1) -> tuple[float, float]:
    """``(control, best)``: expected bits/dim of the gamma = 0 control, and the least one layer
    A = I + diag(gamma) S (|gamma| < 1) can reach on this toy, B's odd rows reduced to their residual without
    rescaling (module docstring). Independent of the number of tokens and channels."""
    const = 0.5 * math.log(2 * math.pi)
    a = 0.5 + const  # nats per dimension of A's tokens under N(0, 1)
    b = 0.5 * (1 + noise**2) + const  # B's tokens under N(0, 1)
    b_residual = 0.5 * noise**2 + const  # B's odd tokens minus their prediction, log-det 0
    control = (2 * a + 2 * b) / 4 / math.log(2.0)
    best = (2 * a + b + b_residual) / 4 / math.log(2.0)
    return control, best


def _bits_per_dim(layer: InvertibleCrossAttention, x: Tensor) -> Tensor:
    z, logdet = layer(x)
    log_prob = -0.5 * (z**2).sum((1, 2)) - 0.5 * z[0].numel() * math.log(2 * math.pi) + logdet
    return -log_prob.mean() / (z[0].numel() * math.log(2.0))


def fit_alignment(layer: InvertibleCrossAttention, shift: int, steps: int = 400, batch: int = 128,
                  lr: float = 1e-2, seed: int = 0, noise: float = 0.1) -> dict[str, Any]:
    """Fit ``layer`` by maximum likelihood on fresh shifted pairs each step; returns validation bits/dim (512
    held-out pairs) and the trained gamma; ``steps=0`` only evaluates."""
    g = torch.Generator().manual_seed(seed)
    T, D = layer.tokens, layer.dim
    params = [p for p in layer.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr) if params else None
    for _ in range(steps if opt else 0):  # noqa: B007
        loss = _bits_per_dim(layer, shifted_pair(batch, T, D, shift, noise, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    val = shifted_pair(512, T, D, shift, noise, torch.Generator().manual_seed(10_000 + seed))
    with torch.no_grad():
        bpd = float(_bits_per_dim(layer, val))
    gamma_a, gamma_b = modality_gammas(layer, val)
    return {"val_bpd": bpd, "gamma": float(layer.gamma.detach().reshape(-1)[0]), "gamma_a": gamma_a,
            "gamma_b": gamma_b, "val": val}


def modality_gammas(layer: InvertibleCrossAttention, x: Tensor) -> tuple[float, float]:
    """Mean gamma (first head) of X2's rows that hold A's tokens and of those that hold B's, over the batch ``x``
    (both equal to ``layer.gamma`` in head mode)."""
    with torch.no_grad():
        x1 = layer.partition.partition(x)[0]
        g = layer.row_gamma(x1)[:, 0].mean(0)  # (T,)
    rows = layer.x2_modality()
    return float(g[rows == 0].mean()), float(g[rows == 1].mean())


def attention_weights(layer: InvertibleCrossAttention, x: Tensor) -> Tensor:
    """The attention S of ``layer`` (first head), mean over the batch ``x``: ``(T, T)`` in X2's token order (A's
    odd tokens, then B's), each row summing to 1 over what the triangle allows. Read from the softmax itself
    (not as (A - I) / gamma), so rows whose gamma is near 0 are measured as well as the others."""
    with torch.no_grad():
        x1 = layer.partition.partition(x)[0]
        return layer.attention_probs(x1).mean(0)[0]


def aligned_columns(tokens: int, shift: int) -> list[int]:
    """For each of B's rows ``k`` of X2 (B's odd token ``2k + 1``), the X2 column of A's odd token with the same
    content, ``2k + 1 - shift``."""
    half = tokens // 2
    return [(k - shift // 2) % half for k in range(half)]


def aligned_share(s: Tensor, shift: int) -> Tensor:
    """``(T / 2,)``: of the attention each of B's rows of ``s`` (from :func:`attention_weights`) gives to A's
    tokens, the share on the A token carrying its content (1 / (T / 2) if spread evenly over A)."""
    half = s.shape[0] // 2
    return torch.stack([s[half + k, j] / s[half + k, :half].sum() for k, j in enumerate(aligned_columns(s.shape[0], shift))])


def alignment_study(seeds: Sequence[int] = (0, 1, 2), tokens: int = 16, dim: int = 4, shift: int = 4,
                    steps: int = 400, gamma_mode: str = "head", gamma: float = 0.1,
                    gamma_rate: float = 10.0, self_logit: bool = False) -> dict[str, Any]:
    """Per seed: the trained layer's and the control's validation bits/dim, gamma (``gamma``: the per-head part;
    ``gamma_a`` / ``gamma_b``: mean over X2's rows of A / of B, see :func:`modality_gammas`), and the share of B's attention
    to A that lands on the aligned A token (mean and min over B's rows; ``uniform_share`` if spread evenly);
    ``rows_aligned``: how many of B's rows give their largest weight among A's tokens to the aligned one;
    ``self_weight_b``: mean diagonal weight s_kk of B's rows; ``self_logit_offset``: the learned diagonal logit
    offset (first head; 0.0 without ``self_logit``). Means and standard deviations over the seeds; the last seed's
    trained layer and its mean attention S for plotting."""
    rows = []
    layer, last_s = None, None
    for seed in seeds:
        torch.manual_seed(seed)
        layer = alignment_layer(tokens, dim, gamma_mode=gamma_mode, gamma=gamma, gamma_rate=gamma_rate,
                                self_logit=self_logit)
        fit = fit_alignment(layer, shift, steps=steps, seed=seed)
        # gamma fixed at 0: nothing in the layer changes its output, so there is nothing to fit
        control = fit_alignment(alignment_layer(tokens, dim, attention=False), shift, steps=0, seed=seed)
        s = attention_weights(layer, fit["val"])
        share = aligned_share(s, shift)
        half = tokens // 2
        top = [int(s[half + k, :half].argmax()) == j for k, j in enumerate(aligned_columns(tokens, shift))]
        offset = float(layer.self_logit_offset.detach()[0]) if layer.self_logit else 0.0
        rows.append({"seed": seed, "val_bpd": fit["val_bpd"], "control_bpd": control["val_bpd"], "gamma": fit["gamma"],
                     "gamma_a": fit["gamma_a"], "gamma_b": fit["gamma_b"],
                     "aligned_share": float(share.mean()), "aligned_share_min": float(share.min()),
                     "rows_aligned": sum(top), "rows": half,
                     "self_weight_b": float(torch.diagonal(s)[half:].mean()), "self_logit_offset": offset})
        last_s = s

    def ms(key: str) -> tuple[float, float]:
        v = [r[key] for r in rows]
        return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)

    half = tokens // 2
    return {"rows": rows, "tokens": tokens, "dim": dim, "shift": shift, "steps": steps, "gamma_mode": gamma_mode,
            "self_logit": bool(self_logit), "uniform_share": 1.0 / half,
            **{f"{k}_mean_std": ms(k) for k in ("val_bpd", "control_bpd", "gamma", "gamma_a", "gamma_b", "aligned_share",
                                                 "self_weight_b", "self_logit_offset")},
            "layer": layer, "attention": last_s}
