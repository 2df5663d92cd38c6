"""Fusion modules: MANGO and the baselines in one harness.

Every fusion maps the two encoder feature maps ``fa, fb: (B, C, h, w)`` (float, standardised) to a
:class:`FusionOutput`: ``features[s]: (B, out_channels[s], h / 2**(s+1), w / 2**(s+1))`` for
``s = 0 .. scales-1`` (finest first) and ``aux``, a dict of scalar tensors (auxiliary loss terms and
diagnostics). All fusions of the same ``(channels, size, scales, width)`` return identical shapes, so
the task heads are shared and only the fusion differs between rows of a comparison table.

* ``MangoFusion``: the multiscale MANGO flow (invertible cross-attention, squeeze/split); its transformed
  features of both modalities at each scale -> 1x1 projection; ``aux["flow_bpd"]`` is the exact NLL
  (bits/dim) of the encoder features, added to the loss with weight lambda.
* ``ConcatFusion``: two streams, per scale a stride-2 conv and ``blocks`` conv blocks per modality, no
  cross-modal exchange inside the streams; fused = 1x1 conv of the concatenation.
* ``TokenFusion``: as Concat, plus per block a *shared* self-attention layer (per-modality LayerNorms)
  whose update is gated by a per-token score; tokens with score < threshold are replaced by the
  co-located token of the other modality (TokenFusion, CVPR 2022); ``aux["score_l1"]`` is the L1
  sparsity penalty on the scores.
* ``CrossAttentionFusion``: as Concat, plus per block bidirectional multi-head cross-attention (A queries
  B, B queries A; residual + MLP) - ordinary, non-invertible attention.
* ``UnimodalFusion``: one stream only (modality "a" or "b"); the other input is never read.

Parameter counts differ (the flow's channels grow 4x per squeeze; ``build_model`` caps the flow's
query/key and coupling widths so MANGO stays within about 2x of the baselines): compare with
:func:`mango_lite.models.count_parameters` next to every table.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..flows import FlowConfig, InvertibleCrossAttention, MultiscaleMango, layers_for
from ..flows.config import resolve as resolve_flow_config
from .encoders import ConvBlock, group_norm

__all__ = [
    "FusionOutput",
    "scale_channels",
    "layers_for_partitions",
    "MangoFusion",
    "ConcatFusion",
    "TokenFusion",
    "CrossAttentionFusion",
    "UnimodalFusion",
    "MultiHeadAttention",
    "FlowOnlyLikelihood",
]

@dataclass
class FusionOutput:
    """``features[s]``: (B, out_channels[s], h_s, w_s) float, finest first; ``aux``: name -> scalar tensor
    (loss terms keep their graph; diagnostics are detached)."""

    features: list[Tensor]
    aux: dict[str, Tensor] = field(default_factory=dict)


def scale_channels(width: int, scales: int) -> list[int]:
    """Output channels of every fusion at each scale: ``width * 2**(s+1)`` (doubling as resolution halves)."""
    return [width * 2 ** (s + 1) for s in range(scales)]


def layers_for_partitions(partitions: Sequence[str] | None) -> list[tuple[str, int]] | None:
    """ICA layer list ``[(partition, variant), ...]`` of one MangoBlock for an ablation that keeps only
    ``partitions`` (a subset of "mmca", "imca", "lica"); ``None`` = the paper's block (2 MMCA, 4 IMCA,
    2 LICA). Depth stays at 8 ICA layers, cycling the chosen partitions and their variants
    (:func:`mango_lite.flows.layers_for`), so ablations differ only in *which* partitions are used."""
    if partitions is None:
        return None
    return [tuple(x) for x in layers_for(partitions)]  # type: ignore[misc]


def _check_pair(fa: Tensor | None, fb: Tensor | None, channels: int, size: tuple[int, int], who: str) -> None:
    for name, f in (("fa", fa), ("fb", fb)):
        if f is None:
            raise ValueError(f"{who}: {name} is None but this fusion uses both modalities")
        if f.dim() != 4 or f.shape[1] != channels or tuple(f.shape[-2:]) != tuple(size):
            raise ValueError(
                f"{who}: {name} should be (B, {channels}, {size[0]}, {size[1]}), got shape {tuple(f.shape)}"
            )
    if fa.shape[0] != fb.shape[0]:  # type: ignore[union-attr]
        raise ValueError(f"{who}: batch sizes differ, fa {fa.shape[0]} vs fb {fb.shape[0]}")  # type: ignore[union-attr]


def _check_size(size: int | Sequence[int], scales: int, who: str) -> tuple[int, int]:
    hw = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if scales < 1:
        raise ValueError(f"{who}: scales must be >= 1, got {scales}")
    if hw[0] % 2**scales or hw[1] % 2**scales:
        raise ValueError(
            f"{who}: feature map size {hw} must be divisible by 2**scales = {2**scales} "
            "(use a larger image, a smaller encoder stride or fewer scales)"
        )
    return hw


def _tokens(x: Tensor) -> Tensor:
    """(B, C, h, w) -> (B, h*w, C), row-major positions."""
    return x.flatten(2).transpose(1, 2)


def _grid(t: Tensor, h: int, w: int) -> Tensor:
    """(B, h*w, C) -> (B, C, h, w)."""
    return t.transpose(1, 2).reshape(t.shape[0], t.shape[2], h, w)


class _Down(nn.Sequential):
    """Stride-2 2x2 conv + GroupNorm: (B, c_in, h, w) -> (B, c_out, h/2, w/2) (the baselines' analogue of
    the flow's squeeze + channel mixing)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, 2, stride=2), group_norm(c_out))


class MultiHeadAttention(nn.Module):
    """Plain multi-head attention ``(B, Nq, D), (B, Nk, D) -> (B, Nq, D)`` with q/k/v/out projections.

    Set ``record_attention = True`` to keep ``last_attention`` (B, heads, Nq, Nk), rows summing to 1,
    of the last call (used by :mod:`mango_lite.models.interpret`); otherwise the fused SDPA kernel is used.
    """

    def __init__(self, dim: int, heads: int = 1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"MultiHeadAttention: dim {dim} must be divisible by heads {heads}")
        self.dim, self.heads = dim, heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)
        self.record_attention = False
        self.last_attention: Tensor | None = None

    def forward(self, xq: Tensor, xkv: Tensor) -> Tensor:
        b, nq, d = xq.shape
        nk = xkv.shape[1]
        hd = d // self.heads
        q = self.q(xq).view(b, nq, self.heads, hd).transpose(1, 2)
        k, v = self.kv(xkv).view(b, nk, 2, self.heads, hd).permute(2, 0, 3, 1, 4)
        if self.record_attention:
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
            self.last_attention = att.detach()
            y = att @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, nq, d))


# ---------------------------------------------------------------------------------------------- MANGO


class MangoFusion(nn.Module):
    """MANGO fusion: the two-modality multiscale flow on the encoder features.

    ``forward(fa, fb)``: ``fa, fb`` (B, C, h, w). During training a small Gaussian noise of std
    ``noise`` is added to both (a continuous analogue of dequantisation: the noisy features have a
    density bounded above by the noise density, so the flow's bits/dim cannot fall below
    ``0.5 * log2(2 pi e noise**2)`` = -2.27 bits for 0.05 - together with the non-affine standardisation of
    the encoders this stops the NLL term from being lowered by collapsing the features). The flow's
    ``encode`` gives ``features[s]`` (B, 2, D_s, h_s, w_s), the full transformed tensor of both modalities
    at scale s; the two modalities are concatenated on channels and projected by a 1x1 conv + GroupNorm
    to ``out_channels[s]``.

    ``aux``: ``flow_bpd`` (mean bits/dim of (fa, fb) under the flow; the NLL loss term, with graph),
    ``gamma_mean`` (mean attention weight over all ICA layers, detached), ``identity_bpd`` (mean bits/dim of the same
    (fa, fb) under N(0, I) with no flow, detached: the
    baseline a useful flow must beat), ``log_prob`` (mean nats, detached), ``logdet`` (mean, detached).
    ``config``: the flow's options (:class:`~mango_lite.flows.FlowConfig`; default
    :meth:`FlowConfig.recommended() <mango_lite.flows.FlowConfig.recommended>`, the layout the selection split
    kept), any of its fields also as keywords. This module reads ``noise`` and ``nll_to_encoders``; the flow
    reads the rest. With ``gamma_mode`` "token" or "modality", :meth:`gammas` and ``gamma_mean`` report each
    layer's per-head part of gamma (:attr:`~mango_lite.flows.InvertibleCrossAttention.gamma`), not the per-row
    values. ``nll_to_encoders=False``: ``flow_bpd``'s gradient reaches the flow's parameters only
    (:class:`FlowOnlyLikelihood`, on the same forward pass), so the NLL term trains the flow but sends no
    gradient into the encoders (the task loss still does). ``hidden`` / ``qk_dim`` (``None``: the flow's
    defaults, which grow 4x per squeeze; :func:`~mango_lite.models.build_model` caps both so the flow's size
    stays near the baselines').
    """

    def __init__(
        self,
        channels: int,
        size: int | Sequence[int],
        scales: int = 2,
        blocks: int = 1,
        out_channels: Sequence[int] | None = None,
        *,
        config: FlowConfig | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self.config = cfg = resolve_flow_config(config, options, default=FlowConfig.recommended(), owner="MangoFusion")
        self.channels = channels
        self.nll_to_encoders = cfg.nll_to_encoders
        self.size = _check_size(size, scales, "MangoFusion")
        self.scales = scales
        self.noise = cfg.noise
        self.out_channels = list(out_channels) if out_channels is not None else scale_channels(channels, scales)
        if len(self.out_channels) != scales:
            raise ValueError(f"MangoFusion: out_channels needs {scales} entries, got {self.out_channels}")
        self.flow = MultiscaleMango(channels, self.size, scales, blocks, config=cfg)
        self._attention_layers = [m for m in self.flow.modules() if isinstance(m, InvertibleCrossAttention)]
        self.feature_channels = list(self.flow.feature_channels)
        self.proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2 * d, c, 1), group_norm(c)) for d, c in zip(self.feature_channels, self.out_channels)
        )

    @torch.no_grad()
    def gammas(self) -> Tensor:
        """Every ICA layer's gamma (layers x heads), in flow order (scale, block, layer), detached."""
        return torch.stack([m.gamma.detach().to(torch.float32).expand(m.heads) for m in self._attention_layers])

    def forward(self, fa: Tensor, fb: Tensor) -> FusionOutput:
        _check_pair(fa, fb, self.channels, self.size, "MangoFusion")
        if self.training and self.noise > 0:
            fa = fa + self.noise * torch.randn_like(fa)
            fb = fb + self.noise * torch.randn_like(fb)
        # the flow runs in float32 even under bf16 autocast: its log-dets sum thousands of small terms and its
        # inverse must undo the forward, which bf16 matmuls do not (the GPU window measures both)
        with torch.autocast(fa.device.type, enabled=False):
            fa32, fb32 = fa.float(), fb.float()
            # the likelihood of the same features, its gradient kept out of the encoders: it shapes the flow,
            # never the encoders (which could otherwise lower it by collapsing the features)
            flow_only = FlowOnlyLikelihood() if not self.nll_to_encoders and torch.is_grad_enabled() else None
            if flow_only is not None:
                fa32, fb32 = flow_only.inputs(fa32, fb32)
            enc = self.flow.encode((fa32, fb32))
            bpd = enc.bits_per_dim.mean()
            if flow_only is not None:
                bpd = flow_only.likelihood(bpd)
        feats = [proj(f.flatten(1, 2)) for proj, f in zip(self.proj, enc.features)]
        with torch.no_grad():  # the same features under N(0, I): what "no flow at all" would score
            nats = 0.5 * math.log(2 * math.pi) + 0.25 * (fa.square().mean() + fb.square().mean())  # mean of both
        aux = {
            "flow_bpd": bpd,
            "identity_bpd": nats / math.log(2.0),
            "gamma_mean": self.gammas().mean(),
            "log_prob": enc.log_prob.detach().mean(),
            "logdet": enc.logdet.detach().mean(),
        }
        return FusionOutput(feats, aux)


class _WatchedInput(torch.autograd.Function):
    """Identity on one flow input; its backward removes the likelihood's part of the gradient it receives."""

    @staticmethod
    def forward(ctx, x, owner, index):  # type: ignore[no-untyped-def, override]
        # a weak reference: the owner holds this node's output, so a strong one would make a cycle; the
        # likelihood's node keeps the owner alive while there is a likelihood gradient to remove
        ctx.owner, ctx.index = weakref.ref(owner), index
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def, override]
        owner = ctx.owner()
        part = None if owner is None else owner._take(ctx.index)
        return (grad if part is None else grad - part), None, None


class _Likelihood(torch.autograd.Function):
    """Identity on the likelihood; its backward first measures the likelihood's gradient at the watched inputs
    (a nested pass that computes input gradients only), then lets the gradient on into the flow."""

    @staticmethod
    def forward(ctx, loss, owner):  # type: ignore[no-untyped-def, override]
        ctx.owner = owner
        ctx.held = [loss]  # in a list: the nested pass below needs the tensor with its graph
        return loss.view_as(loss)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def, override]
        (loss,) = ctx.held
        ctx.held = None
        ctx.owner._measure(loss, grad)
        return grad, None


class FlowOnlyLikelihood:
    """Let a flow's likelihood train the flow while its gradient never reaches the flow's inputs (the encoders,
    which could otherwise lower it by collapsing their features).

        flow_only = FlowOnlyLikelihood()
        enc = flow.encode(flow_only.inputs(fa, fb))            # the one forward pass
        nll = flow_only.likelihood(enc.bits_per_dim.mean())
        (task(enc.features) + weight * nll).backward()        # the flow gets both gradients, fa and fb the task's only

    One backward pass carries the task's and the likelihood's gradients through the flow together, so every
    flow parameter gets their sum. The likelihood's node runs before any flow node (it was created after the
    flow's forward) and measures the likelihood's gradient at the watched inputs in a nested pass that
    computes input gradients only, no parameter gradients; the watched inputs subtract it from what reaches
    them, so the encoders receive the task's gradient alone. Differentiating the likelihood a second time
    for the flow's parameters instead (what mango_lite did before) costs a whole second backward pass; the
    nested pass here skips every weight gradient, about half of it (``benchmarks/bench_train_step.py``). The
    gradients equal those of the two separate passes up to rounding (tested in float64). One object serves
    one forward pass."""

    def __init__(self) -> None:
        self._inputs: list[Tensor] = []
        self._parts: dict[int, Tensor | None] = {}

    # torch.compile must not trace these two: their autograd nodes pass tensors between backward calls through
    # this object, which a traced backward would freeze at trace time (the encoders then got the likelihood's
    # gradient too); left out of the graph, they run eagerly between the compiled parts (tested)
    @torch.compiler.disable
    def inputs(self, *xs: Tensor) -> tuple[Tensor, ...]:
        """The flow's inputs, unchanged in value (those that need no gradient returned as they are)."""
        return tuple(self._watch(x) for x in xs)

    def _watch(self, x: Tensor) -> Tensor:
        if not x.requires_grad:
            return x
        out = _WatchedInput.apply(x, self, len(self._inputs))
        self._inputs.append(out)
        return out

    @torch.compiler.disable
    def likelihood(self, loss: Tensor) -> Tensor:
        """``loss`` unchanged in value; its gradient reaches the flow but not the inputs given to :meth:`inputs`."""
        if not self._inputs or not loss.requires_grad:
            return loss
        return _Likelihood.apply(loss, self)

    def _measure(self, loss: Tensor, grad: Tensor) -> None:
        parts = torch.autograd.grad(loss, self._inputs, grad, retain_graph=True, allow_unused=True)
        self._parts = dict(enumerate(parts))
        self._inputs = []  # the watched tensors are not needed again; free them with the graph

    def _take(self, index: int) -> Tensor | None:
        return self._parts.pop(index, None)


# ------------------------------------------------------------------------------------------ baselines


class _TokenExchangeLayer(nn.Module):
    """One TokenFusion layer on token sets ``a, b: (B, N, C)`` (co-located: token i of a and of b come from
    the same grid cell). Shared weights for both modalities, per-modality LayerNorms (TokenFusion's
    ``ModuleParallel`` + ``LayerNormParallel``).

    score s_m = sigmoid(MLP(LN_m(x_m)))  in (0, 1), one per token
    x_m <- x_m + s_m * SelfAttn(LN_m(x_m))   (the gate is what gives the scores a task gradient)
    exchange: a token of A with s_A < threshold is replaced by the co-located token of B, and vice versa
    x_m <- x_m + MLP(LN'_m(x_m))
    Keeps ``last_scores`` (B, 2, N) and ``last_exchanged`` (B, 2, N) bool for inspection.
    """

    def __init__(self, dim: int, heads: int, threshold: float) -> None:
        super().__init__()
        self.threshold = float(threshold)
        self.norm1 = nn.ModuleList([nn.LayerNorm(dim), nn.LayerNorm(dim)])
        self.norm2 = nn.ModuleList([nn.LayerNorm(dim), nn.LayerNorm(dim)])
        self.score = nn.Sequential(nn.Linear(dim, max(dim // 4, 4)), nn.GELU(), nn.Linear(max(dim // 4, 4), 1))
        self.attn = MultiHeadAttention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.last_scores: Tensor | None = None
        self.last_exchanged: Tensor | None = None

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        ha, hb = self.norm1[0](a), self.norm1[1](b)
        sa = torch.sigmoid(self.score(ha)).squeeze(-1)  # (B, N)
        sb = torch.sigmoid(self.score(hb)).squeeze(-1)
        a = a + sa.unsqueeze(-1) * self.attn(ha, ha)
        b = b + sb.unsqueeze(-1) * self.attn(hb, hb)
        ex_a = (sa < self.threshold).unsqueeze(-1)
        ex_b = (sb < self.threshold).unsqueeze(-1)
        a, b = torch.where(ex_a, b, a), torch.where(ex_b, a, b)
        a = a + self.mlp(self.norm2[0](a))
        b = b + self.mlp(self.norm2[1](b))
        self.last_scores = torch.stack([sa, sb], 1).detach()
        self.last_exchanged = torch.stack([ex_a.squeeze(-1), ex_b.squeeze(-1)], 1)
        # TokenFusion's L1 penalty: sum of |score| over the tokens of both modalities, per sample
        return a, b, sa.sum(1) + sb.sum(1)


class _CrossAttentionLayer(nn.Module):
    """Bidirectional cross-attention on ``a, b: (B, N, C)``: a <- a + Attn(q=a, kv=b), b <- b + Attn(q=b,
    kv=a) (both from the inputs of the layer, so the two directions are symmetric), then per-modality
    residual MLPs. Separate weights per direction. Not invertible, no log-det: the "implicit" attention
    fusion MANGO is compared with."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.nq = nn.ModuleList([nn.LayerNorm(dim), nn.LayerNorm(dim)])
        self.nkv = nn.ModuleList([nn.LayerNorm(dim), nn.LayerNorm(dim)])
        self.attn_ab = MultiHeadAttention(dim, heads)  # A reads B
        self.attn_ba = MultiHeadAttention(dim, heads)  # B reads A
        self.n2 = nn.ModuleList([nn.LayerNorm(dim), nn.LayerNorm(dim)])
        self.mlp = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim)) for _ in range(2)
        )

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        a2 = a + self.attn_ab(self.nq[0](a), self.nkv[1](b))
        b2 = b + self.attn_ba(self.nq[1](b), self.nkv[0](a))
        return a2 + self.mlp[0](self.n2[0](a2)), b2 + self.mlp[1](self.n2[1](b2))


class _TwoStream(nn.Module):
    """Shared harness of the two-stream baselines. Per scale s: each modality goes through a stride-2
    :class:`_Down` to ``out_channels[s]`` and ``blocks`` x [its own :class:`ConvBlock`, then the
    subclass's cross-modal ``_mix`` (identity for Concat)]; the scale's fused output is a 1x1 conv + GN
    of the concatenated streams. The streams (not the fused map) continue to the next scale."""

    who = "TwoStream"

    def __init__(
        self, channels: int, size: int | Sequence[int], scales: int = 2, blocks: int = 1,
        out_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.channels = channels
        self.size = _check_size(size, scales, self.who)
        self.scales = scales
        self.blocks = blocks
        self.out_channels = list(out_channels) if out_channels is not None else scale_channels(channels, scales)
        if len(self.out_channels) != scales:
            raise ValueError(f"{self.who}: out_channels needs {scales} entries, got {self.out_channels}")
        ins = [channels] + self.out_channels[:-1]
        self.down = nn.ModuleList(
            nn.ModuleList([_Down(ci, co), _Down(ci, co)]) for ci, co in zip(ins, self.out_channels)
        )
        self.conv = nn.ModuleList(
            nn.ModuleList(nn.ModuleList([ConvBlock(c), ConvBlock(c)]) for _ in range(blocks)) for c in self.out_channels
        )
        self.fuse = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2 * c, c, 1), group_norm(c)) for c in self.out_channels
        )

    def _mix(self, s: int, k: int, a: Tensor, b: Tensor, aux: dict[str, list[Tensor]]) -> tuple[Tensor, Tensor]:
        return a, b

    def _finish_aux(self, aux: dict[str, list[Tensor]]) -> dict[str, Tensor]:
        return {}

    def forward(self, fa: Tensor, fb: Tensor) -> FusionOutput:
        _check_pair(fa, fb, self.channels, self.size, self.who)
        a, b = fa, fb
        feats: list[Tensor] = []
        aux: dict[str, list[Tensor]] = {}
        for s in range(self.scales):
            a, b = self.down[s][0](a), self.down[s][1](b)
            for k in range(self.blocks):
                a, b = self.conv[s][k][0](a), self.conv[s][k][1](b)
                a, b = self._mix(s, k, a, b, aux)
            feats.append(self._fuse(s, torch.cat([a, b], dim=1)))
        return FusionOutput(feats, self._finish_aux(aux))

    def _fuse(self, s: int, both: Tensor) -> Tensor:
        """The scale's fused map from the concatenated streams (B, 2C, h, w): 1x1 conv + GN."""
        return self.fuse[s](both)


class ConcatFusion(_TwoStream):
    """Two streams, fused only by concatenation + 1x1 conv at every scale (no exchange inside)."""

    who = "ConcatFusion"


class TokenFusion(_TwoStream):
    """TokenFusion-style exchange (Wang et al., CVPR 2022): see :class:`_TokenExchangeLayer`.

    ``threshold`` (TokenFusion: 0.02) can be changed after construction with :meth:`set_threshold`.
    ``aux["score_l1"]``: batch mean of the per-sample sum of scores over all layers, tokens and both
    modalities (TokenFusion's ``L1_loss``, weighted by ``lamda`` = 1e-4 in its config);
    ``aux["exchanged_frac"]``: fraction of tokens replaced (detached)."""

    who = "TokenFusion"

    def __init__(
        self, channels: int, size: int | Sequence[int], scales: int = 2, blocks: int = 1, heads: int = 1,
        out_channels: Sequence[int] | None = None, threshold: float = 0.02,
    ) -> None:
        super().__init__(channels, size, scales, blocks, out_channels)
        self.exchange = nn.ModuleList(
            nn.ModuleList(_TokenExchangeLayer(c, heads, threshold) for _ in range(blocks)) for c in self.out_channels
        )

    def set_threshold(self, threshold: float) -> None:
        for layer in self.modules():
            if isinstance(layer, _TokenExchangeLayer):
                layer.threshold = float(threshold)

    def _mix(self, s: int, k: int, a: Tensor, b: Tensor, aux: dict[str, list[Tensor]]) -> tuple[Tensor, Tensor]:
        h, w = a.shape[-2:]
        layer = self.exchange[s][k]
        ta, tb, l1 = layer(_tokens(a), _tokens(b))
        aux.setdefault("score_l1", []).append(l1)
        aux.setdefault("exchanged", []).append(layer.last_exchanged.float().mean())
        return _grid(ta, h, w), _grid(tb, h, w)

    def _finish_aux(self, aux: dict[str, list[Tensor]]) -> dict[str, Tensor]:
        return {
            "score_l1": torch.stack(aux["score_l1"]).sum(0).mean(),
            "exchanged_frac": torch.stack(aux["exchanged"]).mean().detach(),
        }


class CrossAttentionFusion(_TwoStream):
    """Bidirectional multi-head cross-attention between the co-located token sets of each scale (see
    :class:`_CrossAttentionLayer`). No auxiliary loss."""

    who = "CrossAttentionFusion"

    def __init__(
        self, channels: int, size: int | Sequence[int], scales: int = 2, blocks: int = 1, heads: int = 1,
        out_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__(channels, size, scales, blocks, out_channels)
        self.cross = nn.ModuleList(
            nn.ModuleList(_CrossAttentionLayer(c, heads) for _ in range(blocks)) for c in self.out_channels
        )

    def _mix(self, s: int, k: int, a: Tensor, b: Tensor, aux: dict[str, list[Tensor]]) -> tuple[Tensor, Tensor]:
        h, w = a.shape[-2:]
        ta, tb = self.cross[s][k](_tokens(a), _tokens(b))
        return _grid(ta, h, w), _grid(tb, h, w)


class UnimodalFusion(nn.Module):
    """One modality only (``which`` = "a" or "b"): a single stream of the :class:`_TwoStream` design
    (stride-2 down, ``blocks`` conv blocks, 1x1 + GN per scale). ``forward(fa, fb)`` never reads the other
    input, which may be ``None``."""

    def __init__(
        self, which: str, channels: int, size: int | Sequence[int], scales: int = 2, blocks: int = 1,
        out_channels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if which not in ("a", "b"):
            raise ValueError(f"UnimodalFusion: which must be 'a' or 'b', got {which!r}")
        self.which = which
        self.channels = channels
        self.size = _check_size(size, scales, "UnimodalFusion")
        self.scales = scales
        self.out_channels = list(out_channels) if out_channels is not None else scale_channels(channels, scales)
        ins = [channels] + self.out_channels[:-1]
        self.down = nn.ModuleList(_Down(ci, co) for ci, co in zip(ins, self.out_channels))
        self.conv = nn.ModuleList(nn.Sequential(*[ConvBlock(c) for _ in range(blocks)]) for c in self.out_channels)
        self.fuse = nn.ModuleList(nn.Sequential(nn.Conv2d(c, c, 1), group_norm(c)) for c in self.out_channels)

    def forward(self, fa: Tensor | None, fb: Tensor | None) -> FusionOutput:
        x = fa if self.which == "a" else fb
        if x is None or x.dim() != 4 or x.shape[1] != self.channels or tuple(x.shape[-2:]) != self.size:
            got = None if x is None else tuple(x.shape)
            raise ValueError(
                f"UnimodalFusion({self.which!r}): f{self.which} should be (B, {self.channels}, "
                f"{self.size[0]}, {self.size[1]}), got {got}"
            )
        feats = []
        for s in range(self.scales):
            x = self.conv[s](self.down[s](x))
            feats.append(self.fuse[s](x))
        return FusionOutput(feats, {})
