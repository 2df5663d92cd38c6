"""Interpretability: MANGO's invertible cross-attention matrices, TokenFusion's token scores, and a
per-modality contribution measure that works for every fusion.

* :func:`attention_maps` - the triangular ICA matrices of a MANGO model (via the flows'
  ``record_attention`` switch) or the cross-attention weights of :class:`CrossAttentionFusion`.
* :func:`cross_modal_share` - for one ICA record: the fraction of attention mass (identity term removed)
  that each transformed token puts on tokens of the *other* modality (IMCA layers; MMCA transforms one
  modality only, so its share is 0 by construction and the layer's cross-modal nature is that A is
  computed from the other modality).
* :func:`token_scores` - TokenFusion's per-token scores, as maps.
* :func:`modality_contribution` - how much the prediction depends on each modality, two measures:
  ``"ablation"`` (default): replace one modality's standardised encoder features by their population mean
  (zero, since the encoders end with a non-affine standardisation) and measure the change of the output:
  total-variation distance of the class probabilities (segmentation, per pixel), mean |change| of the
  image (translation) or of the genre probabilities (genre). ``"gradient"``: gradient x input on the
  encoder features, sum of |g * f| per modality, for the score of the current prediction.
  Both are computed on encoder features, so images and text are treated alike and every fusion
  (MANGO, baselines, unimodal) is measured the same way; shares are normalised to sum to 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..errors import MangoLiteError
from ..tasks import CLASS_MAP, IMAGE, LABELS, get_task
from .fusion import CrossAttentionFusion, MangoFusion, MultiHeadAttention, TokenFusion, _TokenExchangeLayer
from .task_models import TaskModel

__all__ = ["AttentionRecord", "attention_maps", "cross_modal_share", "cross_modal_offsets", "token_scores",
           "modality_contribution"]


@dataclass
class AttentionRecord:
    """One attention matrix of the last forward pass.

    ``name``: module path inside the fusion; ``partition``: "mmca"/"imca"/"lica" (MANGO) or "a<-b"/"b<-a"
    (cross-attention: rows = query tokens of the first modality); ``index``: LongTensor (2, T), original
    token positions (0..2T-1, modality A first) of X1 (row 0) and X2 (row 1), None for LICA / baselines;
    ``attention``: (B, heads, T, T) float on CPU - for ICA the triangular matrix including the +I;
    ``triangle``: "upper" or "lower", which triangle of an ICA matrix is filled (blocks of MANGO's task
    models alternate them); ``None`` for cross-attention.
    """

    name: str
    partition: str
    index: Tensor | None
    attention: Tensor
    triangle: str | None = "upper"


class _EvalNoGrad:
    """Context: model in eval mode (restored afterwards)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model, self.was_training = model, model.training

    def __enter__(self) -> None:
        self.model.eval()

    def __exit__(self, *exc: Any) -> None:
        self.model.train(self.was_training)


def attention_maps(model: TaskModel, batch_a: Any, batch_b: Any) -> list[AttentionRecord]:
    """Run one forward pass (eval mode, no grad) and return the attention matrices of the fusion.

    MANGO: one record per InvertibleCrossAttention, in module order (scale, block, layer).
    CrossAttentionFusion: two records (a<-b, b<-a) per layer, (B, heads, T_a, T_b).
    Other fusions have no cross-modal attention: :class:`MangoLiteError` (use :func:`token_scores` for
    TokenFusion and :func:`modality_contribution` for any model).
    """
    fusion = model.fusion
    records: list[AttentionRecord] = []
    if isinstance(fusion, MangoFusion):
        from ..flows import InvertibleCrossAttention, record_attention  # noqa: PLC0415

        icas = [(n, m) for n, m in fusion.named_modules() if isinstance(m, InvertibleCrossAttention)]
        previous = [m.record_attention for _, m in icas]
        record_attention(fusion, True)
        try:
            with _EvalNoGrad(model), torch.no_grad():
                model(batch_a, batch_b)
            for name, m in icas:
                if m.last_attention is None:
                    continue
                idx = getattr(m, "last_index", None)
                records.append(
                    AttentionRecord(
                        name, str(m.last_partition), None if idx is None else idx.detach().cpu(),
                        m.last_attention.detach().cpu(), m.triangle,
                    )
                )
        finally:
            for (_, m), flag in zip(icas, previous):
                m.record_attention = flag
        return records
    if isinstance(fusion, CrossAttentionFusion):
        mhas = [(n, m) for n, m in fusion.named_modules() if isinstance(m, MultiHeadAttention)]
        for _, m in mhas:
            m.record_attention = True
        try:
            with _EvalNoGrad(model), torch.no_grad():
                model(batch_a, batch_b)
        finally:
            for _, m in mhas:
                m.record_attention = False
        for name, m in mhas:
            part = "a<-b" if name.endswith("attn_ab") else "b<-a"
            records.append(AttentionRecord(name, part, None, m.last_attention.cpu(), None))  # type: ignore[union-attr]
            m.last_attention = None
        return records
    raise MangoLiteError(
        f"attention_maps: fusion {type(fusion).__name__} has no cross-modal attention matrices "
        "(MANGO and crossattn do); use token_scores() for TokenFusion or modality_contribution() for any model"
    )


def cross_modal_share(record: AttentionRecord) -> float | None:
    """Mean fraction of the softmax attention mass (the +I identity removed, so each row sums to 1) that a
    transformed (X2) token of an ICA layer puts on X2 tokens of the *other* modality. ``None`` when it is
    not defined: LICA (learned mixing, no fixed token->modality map) and cross-attention records."""
    if record.index is None or record.partition not in ("mmca", "imca"):
        return None
    att = record.attention.double()
    t = att.shape[-1]
    s = att - torch.eye(t, dtype=att.dtype)  # remove the identity: gamma * S, rows summing to gamma
    s = s / s.sum(-1, keepdim=True)  # -> S, rows summing to 1 (gamma is learnable and may be < 0)
    # X2 token j came from original position index[1, j]; positions < T are modality A (T = X2 size)
    mod = record.index[1] >= t
    other = (mod[:, None] != mod[None, :]).to(s.dtype)  # (T, T): 1 where row and column differ in modality
    return float((s * other).sum(-1).mean())


def cross_modal_offsets(records: list[AttentionRecord], grid: tuple[int, int]) -> dict[str, Any]:
    """Where the tokens of one modality look in the other: the attention mass that X2 rows holding modality B
    (A) put on X2 tokens of modality A (B), by grid offset (column of the token looked at minus the row's
    own column), over the IMCA records of one scale (``grid`` = its (h, w); records of other sizes are
    skipped). The attention of a row is S, recovered from A = I + diag(gamma) S as |A - I| normalised per
    row (gamma may be negative). With the depth seen from a camera to the right of the colour camera, depth
    token c shows what RGB shows at c + disparity, so B's mass should sit at positive column offsets.

    Returns ``{"b_to_a": {dc: mass}, "a_to_b": {dc: mass}, "b_to_a_mean_dc", "a_to_b_mean_dc", "layers"}``,
    each mass distribution normalised to 1 (over every row, head and sample); same-row offsets only count
    when the tokens share the grid row (``dr = 0``), as a horizontal disparity predicts."""
    h, w = int(grid[0]), int(grid[1])
    t_mod = h * w
    mass: dict[str, dict[int, float]] = {"b_to_a": {}, "a_to_b": {}}
    layers = 0
    for rec in records:
        if rec.index is None or rec.partition != "imca" or 2 * rec.attention.shape[-1] != 2 * t_mod:
            continue
        layers += 1
        att = rec.attention.double()
        t = att.shape[-1]
        s = (att - torch.eye(t, dtype=att.dtype)).abs()
        s = s / s.sum(-1, keepdim=True).clamp_min(1e-300)
        weight = s.sum((0, 1))  # (T, T): summed over samples and heads
        pos = rec.index[1]  # original position of each X2 token (< T_mod: modality A)
        is_b = pos >= t_mod
        cell = torch.where(is_b, pos - t_mod, pos)
        rows, cols = cell // w, cell % w
        for key, src, dst in (("b_to_a", is_b, ~is_b), ("a_to_b", ~is_b, is_b)):
            block = weight[src][:, dst]
            dr = rows[dst][None, :] - rows[src][:, None]
            dc = cols[dst][None, :] - cols[src][:, None]
            same_row = dr == 0
            for off in torch.unique(dc[same_row]).tolist():
                sel = same_row & (dc == off)
                mass[key][int(off)] = mass[key].get(int(off), 0.0) + float(block[sel].sum())
    out: dict[str, Any] = {"layers": layers}
    for key, dist in mass.items():
        total = sum(dist.values())
        norm = {k: v / total for k, v in sorted(dist.items()) if v > 0} if total > 0 else {}
        out[key] = norm
        out[f"{key}_mean_dc"] = sum(k * v for k, v in norm.items()) if norm else None
    return out


def token_scores(model: TaskModel, batch_a: Any, batch_b: Any) -> list[Tensor]:
    """TokenFusion's per-token scores of every exchange layer as maps ``(B, 2, h_s, w_s)`` (modality on
    axis 1, values in (0, 1); below the threshold a token is replaced by the other modality's)."""
    fusion = model.fusion
    if not isinstance(fusion, TokenFusion):
        raise MangoLiteError(f"token_scores: needs a TokenFusion model, got {type(fusion).__name__}")
    with _EvalNoGrad(model), torch.no_grad():
        model(batch_a, batch_b)
    out = []
    for s, layers in enumerate(fusion.exchange):
        h, w = fusion.size[0] // 2 ** (s + 1), fusion.size[1] // 2 ** (s + 1)
        for layer in layers:
            assert isinstance(layer, _TokenExchangeLayer) and layer.last_scores is not None
            out.append(layer.last_scores.reshape(-1, 2, h, w).cpu())
    return out


#: a prediction in the units the ablation distance is measured in (probabilities / image), per output kind
_READOUT: dict[str, Callable[[Tensor], Tensor]] = {
    CLASS_MAP: lambda pred: torch.softmax(pred, dim=1),
    LABELS: torch.sigmoid,
    IMAGE: lambda pred: pred,
}
#: the distance between two read-out predictions, per output kind
_DISTANCE: dict[str, Callable[[Tensor, Tensor], float]] = {
    # mean per-pixel total-variation distance, in [0, 1]
    CLASS_MAP: lambda p, q: float(0.5 * (p - q).abs().sum(1).mean()),
    LABELS: lambda p, q: float((p - q).abs().mean()),
    IMAGE: lambda p, q: float((p - q).abs().mean()),
}
#: the scalar whose gradient is attributed: evidence for the model's current prediction, per output kind
_SCORE: dict[str, Callable[[Tensor], Tensor]] = {
    CLASS_MAP: lambda pred: torch.log_softmax(pred, 1).max(1).values.sum(),
    LABELS: lambda pred: (pred * torch.sign(pred).detach()).sum(),
    IMAGE: lambda pred: (pred * pred.detach()).sum(),  # output projected on its own direction (= d/dy of |y|^2 / 2)
}


def _readout(model: TaskModel, pred: Tensor) -> Tensor:
    return _READOUT[get_task(model.task).output](pred)


def _distance(model: TaskModel, p: Tensor, q: Tensor) -> float:
    return _DISTANCE[get_task(model.task).output](p, q)


def _score(model: TaskModel, pred: Tensor) -> Tensor:
    return _SCORE[get_task(model.task).output](pred)


def modality_contribution(model: TaskModel, batch_a: Any, batch_b: Any, method: str = "ablation") -> dict[str, Any]:
    """Per-modality contribution to the model's output on this batch (eval mode).

    Returns ``{"method", "a", "b", "raw_a", "raw_b"}``: ``raw_m`` the unnormalised measure (ablation:
    output distance when modality m's features are replaced by their mean; gradient: sum |grad * feature|),
    ``a`` and ``b`` the shares ``raw_m / (raw_a + raw_b)`` (sum to 1; both 0.0 if nothing changes). A
    modality the model does not read gets raw 0 exactly.
    """
    if method not in ("ablation", "gradient"):
        raise ValueError(f"method must be 'ablation' or 'gradient', got {method!r}")
    raw = {"a": 0.0, "b": 0.0}
    with _EvalNoGrad(model):
        size = model.out_size(batch_a, batch_b)
        if method == "ablation":
            with torch.no_grad():
                fa, fb = model.encode(batch_a, batch_b)
                base = _readout(model, model.decode(fa, fb, size).pred)
                if fa is not None:
                    raw["a"] = _distance(model, base, _readout(model, model.decode(torch.zeros_like(fa), fb, size).pred))
                if fb is not None:
                    raw["b"] = _distance(model, base, _readout(model, model.decode(fa, torch.zeros_like(fb), size).pred))
        else:
            with torch.no_grad():
                fa, fb = model.encode(batch_a, batch_b)
            fa = None if fa is None else fa.detach().requires_grad_(True)
            fb = None if fb is None else fb.detach().requires_grad_(True)
            score = _score(model, model.decode(fa, fb, size).pred)
            named = [(n, f) for n, f in (("a", fa), ("b", fb)) if f is not None]
            grads = torch.autograd.grad(score, [f for _, f in named], allow_unused=True)
            for (name, f), g in zip(named, grads):
                raw[name] = 0.0 if g is None else float((g * f.detach()).abs().sum())
    total = raw["a"] + raw["b"]
    share = {m: (raw[m] / total if total > 0 else 0.0) for m in raw}
    return {"method": method, "a": share["a"], "b": share["b"], "raw_a": raw["a"], "raw_b": raw["b"]}
