"""A cross-modal Glow: the coupling-only control for "attention beats coupling".

MANGO's only cross-modal pathway is its attention: every other layer of :class:`MultiscaleMango` acts on one
modality at a time (ActNorm and the LU within a token, the grid conditioner on one modality's map, the split
prior on one token; the paper's token conditioner reaches across the A/B boundary by one token). A flow
without attention is then a weaker model *and* one without any cross-modal pathway, so "attention lowers
bits/dim" against it only shows that *some* cross-modal pathway helps. The fair control is a flow whose
layers are affine couplings that see both modalities, at MANGO's parameter budget:

:class:`CrossModalCoupling`, on tokens x (B, 2T, D) (T tokens of modality A then T of B, each an h x w map in
raster order, as :func:`~mango_lite.flows.multiscale.to_tokens` lays them out)::

    (a_id, a_ch), (b_id, b_ch) = channel halves of A's and B's tokens
    (s_a, t_a, s_b, t_b) = NN([a_id ; b_id])       # 3x3 conv -> 1x1 -> zero-initialised 3x3 on the
                                                   # channel concatenation of A's and B's maps
    a_ch' = a_ch * exp(c tanh(s_a / c)) + t_a,     b_ch' = b_ch * exp(c tanh(s_b / c)) + t_b
    log|det| = sum of the clamped log-scales over both modalities' tokens and changed channels

It is :class:`~mango_lite.flows.coupling.Coupling` with another conditioner, so A's transformed half depends
on B's untouched half (and vice versa) within one layer; the Jacobian stays triangular (the kept halves pass
through), the inverse recomputes (s, t) from them.

:class:`CrossModalGlow` is :class:`MultiscaleMango`'s skeleton (squeeze, ActNorm -> LU per scale, split
priors, standard-normal latents; the same ``encode`` / ``inverse`` / ``bits_per_dim`` / ``sample``) with
every MANGO block, eight (ActNorm -> ICA) layers and a coupling, replaced by ``steps`` Glow steps
(ActNorm -> invertible 1x1 (LU) -> :class:`CrossModalCoupling`, alternating halves). :func:`glow_hidden_for_budget`
picks the conditioner width by bisection so that the flow has as many *live* parameters
(:func:`live_parameter_count`) as a given MANGO flow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import Tensor, nn

from ..utils import check_tokens
from .actnorm import ActNorm
from .base import FlowSequence, InvertibleModule, silence_children
from .coupling import Coupling
from .ica import InvertibleCrossAttention
from .lu import InvertibleLinearLU
from .multiscale import MultiscaleMango

__all__ = [
    "CrossGridConditioner", "CrossModalCoupling", "CrossGlowBlock", "CrossModalGlow", "live_parameter_count",
    "glow_hidden_for_budget", "cross_glow_matching",
]


class CrossGridConditioner(nn.Module):
    """(B, 2*h*w, c_in) -> (B, 2*h*w, c_out) for tokens that are two h x w maps (A's, then B's; raster order).

    Both modalities' maps are stacked on the channel axis, (B, 2 c_in, h, w), and go through Glow's
    conditioner: 3x3 convolution -> GELU -> 1x1 -> GELU -> zero-initialised 3x3 (identity coupling at
    initialisation) with 2 c_out outputs, the first c_out for A's tokens, the next for B's. So every output
    token reads both modalities' 3x3 neighbourhoods around its own cell."""

    def __init__(self, c_in: int, c_out: int, hidden: int, grid: tuple[int, int]) -> None:
        super().__init__()
        if hidden < 1:
            raise ValueError(f"CrossGridConditioner: hidden must be >= 1, got {hidden}")
        self.grid = (int(grid[0]), int(grid[1]))
        self.c_out = c_out
        self.inp = nn.Conv2d(2 * c_in, hidden, 3, padding=1)
        self.mix = nn.Conv2d(hidden, hidden, 1)
        self.out = nn.Conv2d(hidden, 2 * c_out, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, h: Tensor) -> Tensor:
        b, n, c = h.shape
        gh, gw = self.grid
        if n != 2 * gh * gw:
            raise ValueError(f"CrossGridConditioner: expected 2 * {gh} * {gw} = {2 * gh * gw} tokens (two {gh}x{gw} "
                             f"maps), got {n}")
        maps = h.view(b, 2, gh, gw, c).permute(0, 1, 4, 2, 3).reshape(b, 2 * c, gh, gw)  # [A's c | B's c]
        y = nn.functional.gelu(self.inp(maps))
        y = nn.functional.gelu(self.mix(y))
        y = self.out(y)  # (B, 2 c_out, h, w): [A's c_out | B's c_out]
        return y.view(b, 2, self.c_out, gh, gw).permute(0, 1, 3, 4, 2).reshape(b, n, self.c_out)


class CrossModalCoupling(Coupling):
    """Affine coupling on tokens (B, 2T, D) whose conditioner reads the kept channels of BOTH modalities
    (:class:`CrossGridConditioner`): the changed channels of A are scaled and shifted by a function of A's
    and B's kept channels, and so are B's. Everything else (channel split, ``flip``, soft-clamped log-scale
    ``c * tanh(s / c)``, log-det, inverse) is :class:`Coupling`'s.

    Args:
        dim: channels D per token (>= 2). grid: (h, w) of each modality's map (T = h * w).
        hidden: conditioner width (default ``max(32, 2 * dim)``, as :class:`Coupling`).
        flip: which channel half changes. clamp: bound c of the log-scale.
    """

    def __init__(self, dim: int, grid: tuple[int, int], hidden: int | None = None, flip: bool = False,
                 clamp: float = 2.0) -> None:
        if grid is None or len(grid) != 2 or int(grid[0]) < 1 or int(grid[1]) < 1:
            raise ValueError(f"CrossModalCoupling: grid must be (h, w) of each modality's map, got {grid!r}")
        super().__init__(dim, hidden, flip=flip, clamp=clamp, grid=grid)
        self.tokens = self.grid[0] * self.grid[1]

    def _conditioner(self, c_in: int, c_out: int, hidden: int) -> nn.Module:
        return CrossGridConditioner(c_in, c_out, hidden, self.grid)

    def _check(self, x: Tensor, name: str) -> None:
        check_tokens(x, self.tokens, self.dim, name=f"CrossModalCoupling {name}")


class CrossGlowBlock(InvertibleModule):
    """``steps`` Glow steps on tokens (B, 2T, D): ActNorm -> invertible 1x1 (channel LU) ->
    :class:`CrossModalCoupling`, the coupling's changed half alternating from step to step (starting with
    the second half when ``flip`` is set). The block that replaces a :class:`MangoBlock` in
    :class:`CrossModalGlow`."""

    def __init__(self, dim: int, grid: tuple[int, int], hidden: int | None = None, steps: int = 4,
                 flip: bool = False) -> None:
        super().__init__()
        if steps < 1:
            raise ValueError(f"CrossGlowBlock: steps must be >= 1, got {steps}")
        self.dim, self.grid = dim, (int(grid[0]), int(grid[1]))
        self.tokens = self.grid[0] * self.grid[1]
        mods: list[InvertibleModule] = []
        for j in range(steps):
            mods += [ActNorm(dim), InvertibleLinearLU(dim, axis="channels"),
                     CrossModalCoupling(dim, self.grid, hidden, flip=bool(j % 2) != flip)]
        self.flow = FlowSequence(mods)
        silence_children(self)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            check_tokens(x, self.tokens, self.dim, name="CrossGlowBlock x")
        return self.flow(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            check_tokens(z, self.tokens, self.dim, name="CrossGlowBlock z")
        return self.flow.inverse(z)


class CrossModalGlow(MultiscaleMango):
    """A two-modality multiscale Glow with cross-modal couplings and no attention.

    The same skeleton as :class:`MultiscaleMango` (per scale: squeeze -> ActNorm -> channel LU -> ``blocks``
    blocks over A's then B's h*w tokens -> split prior except at the last scale), with each block a
    :class:`CrossGlowBlock` of ``steps`` Glow steps instead of a MangoBlock. It inherits MultiscaleMango's
    ``encode`` / ``forward`` / ``inverse`` / ``log_prob`` / ``bits_per_dim`` / ``sample``, which read only the
    attributes set here (``channels``, ``size``, ``scales``, ``stages``, ``splits``, ``feature_channels``,
    ``latent_shapes``; a test keeps the two in step).

    Args:
        channels: channels C of each modality's input map. size: (H, W) or H, divisible by 2**scales.
        scales: squeeze/split levels. blocks: blocks per scale. hidden: conditioner width of every coupling
            (see :func:`glow_hidden_for_budget` to size it to a MANGO flow). steps: Glow steps per block.
    """

    def __init__(self, channels: int, size: int | tuple[int, int], scales: int = 2, blocks: int = 1,
                 hidden: int | None = None, steps: int = 4) -> None:
        InvertibleModule.__init__(self)
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        if channels < 1 or scales < 1 or blocks < 1 or steps < 1:
            raise ValueError(f"CrossModalGlow: expected channels, scales, blocks, steps >= 1, got {channels}, {scales}, "
                             f"{blocks}, {steps}")
        if h % (2**scales) or w % (2**scales):
            raise ValueError(f"CrossModalGlow: size {(h, w)} must be divisible by 2**scales = {2**scales}")
        self.channels, self.size, self.scales = channels, (h, w), scales
        self.hidden, self.steps = hidden, steps
        self.config = None  # no attention layers, so no FlowConfig (MultiscaleMango's is read by nothing here)
        self._build_stages(lambda d, hs, ws, s: [CrossGlowBlock(d, (hs, ws), hidden, steps, flip=bool(i % 2))
                                                 for i in range(blocks)])

    def _pair(self, x: tuple[Tensor, Tensor] | Tensor) -> Tensor:
        try:
            return super()._pair(x)
        except ValueError as exc:  # the inherited check names MultiscaleMango: name this class instead
            raise ValueError(str(exc).replace("MultiscaleMango", type(self).__name__)) from None

    def inverse(self, latents: Sequence[Tensor]) -> tuple[tuple[Tensor, Tensor], Tensor]:  # type: ignore[override]
        try:
            return super().inverse(latents)
        except ValueError as exc:
            raise ValueError(str(exc).replace("MultiscaleMango", type(self).__name__)) from None

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, size={self.size}, scales={self.scales}, steps={self.steps}, "
                f"hidden={self.hidden}")


# -- parameter budget -----------------------------------------------------------------------------------
def live_parameter_count(module: nn.Module) -> int:
    """Trainable parameters that can change in training: ``numel`` of every parameter that requires a gradient,
    less the entries no gradient ever reaches.

    * :class:`InvertibleLinearLU` stores L and U as full size x size matrices and masks them: the diagonal and
      upper triangle of ``lower`` and the diagonal and lower triangle of ``upper`` (size * (size + 1) entries)
      never move. In MANGO that is most of the raw count: LICA's token mixers are (2T)^2 each.
    * an inert :class:`InvertibleCrossAttention` (gamma fixed at 0: the no-attention control) skips its attention
      and partition, so all of its parameters are dead.

    A test checks the count against the entries a backward pass reaches after :func:`perturb_parameters`. Not
    detected: taps of a 3x3 convolution that only ever read padding (on maps one cell high or wide)."""
    dead: set[int] = set()
    for m in module.modules():
        if isinstance(m, InvertibleCrossAttention) and getattr(m, "inert", False):
            dead |= {id(p) for p in m.parameters()}
    masked = sum(m.size * (m.size + 1) for m in module.modules()
                 if isinstance(m, InvertibleLinearLU) and m.lower.requires_grad and id(m.lower) not in dead)
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad and id(p) not in dead) - masked)


def glow_hidden_for_budget(build: Callable[[int], nn.Module], target: int,
                           count: Callable[[nn.Module], int] = live_parameter_count, limit: int = 4096) -> int:
    """The conditioner width ``hidden`` whose flow ``build(hidden)`` has the parameter count (``count``, live
    parameters by default) closest to ``target``. The count grows with ``hidden``: doubling until the target
    is reached (never building a flow far wider than needed), bisection for the smallest width that reaches
    it, then the closer of it and the width below."""
    if target < 1:
        raise ValueError(f"glow_hidden_for_budget: target must be >= 1, got {target}")
    hi = 1
    while count(build(hi)) < target:
        if hi >= limit:
            raise ValueError(f"glow_hidden_for_budget: no width up to {limit} reaches {target} parameters")
        hi = min(2 * hi, limit)
    lo = hi // 2 + 1 if hi > 1 else 1  # invariant: count(build(hi)) >= target > count(build(lo - 1))
    while lo < hi:
        mid = (lo + hi) // 2
        if count(build(mid)) >= target:
            hi = mid
        else:
            lo = mid + 1
    if hi > 1 and target - count(build(hi - 1)) < count(build(hi)) - target:
        return hi - 1
    return hi


def cross_glow_matching(channels: int, size: int | tuple[int, int], scales: int = 2, blocks: int = 1,
                        mango: Mapping | None = None, steps: int = 4) -> dict:
    """Size a :class:`CrossModalGlow` to the live parameter count of ``MultiscaleMango(channels, size, scales,
    blocks, **mango)``. Returns ``{"hidden", "steps", "params", "target", "ratio"}`` (params / target, live
    counts); build the flow with ``CrossModalGlow(channels, size, scales, blocks, hidden=..., steps=...)``.
    Uses the global RNG (flows are built to count them): call it before seeding a run."""
    target = live_parameter_count(MultiscaleMango(channels, size, scales, blocks, **dict(mango or {})))

    def build(hidden: int) -> nn.Module:
        return CrossModalGlow(channels, size, scales, blocks, hidden=hidden, steps=steps)

    hidden = glow_hidden_for_budget(build, target)
    params = live_parameter_count(build(hidden))
    return {"hidden": hidden, "steps": steps, "params": params, "target": target, "ratio": params / target}
