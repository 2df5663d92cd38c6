"""A MANGO block: eight (ActNorm -> ICA) layers with the paper's 2 MMCA / 4 IMCA / 2 LICA mix,
then ActNorm -> affine coupling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..utils import check_tokens
from .actnorm import ActNorm
from .base import FlowSequence, InvertibleModule, silence_children
from .config import BLOCK_FIELDS, DEFAULT_LAYERS, FlowConfig, resolve
from .coupling import Coupling
from .ica import InvertibleCrossAttention


def layers_for(partitions: Sequence[str] | None) -> tuple[tuple[str, int], ...]:
    """Eight (partition, variant) pairs using only the given partitions, cycling their variants
    (for ablations such as MMCA-only); ``None`` gives :data:`DEFAULT_LAYERS`."""
    if partitions is None:
        return DEFAULT_LAYERS
    from .partition import PARTITIONS

    names = [str(p).lower() for p in partitions]
    bad = [p for p in names if p not in PARTITIONS]
    if bad or not names:
        raise ValueError(f"partitions must be a non-empty subset of {tuple(PARTITIONS)}, got {list(partitions)}")
    if set(names) == set(PARTITIONS):
        return DEFAULT_LAYERS
    out: list[tuple[str, int]] = []
    for i in range(len(DEFAULT_LAYERS)):
        name = names[i % len(names)]
        out.append((name, (i // len(names)) % PARTITIONS[name]))
    return tuple(out)


class MangoBlock(InvertibleModule):
    """(ActNorm -> ICA) x len(layers), then ActNorm -> Coupling, on tokens (B, 2T, D).

    Args:
        dim: channels D per token. tokens: tokens T per modality.
        config: the flow's options (:class:`~mango_lite.flows.FlowConfig`, default ``FlowConfig()``: the paper's
            block). The block reads ``layers`` (its (partition, variant) sequence), ``hidden`` (the coupling
            conditioner's width), ``alternate`` (odd-numbered ICA layers use the lower triangle, so within a
            block tokens receive from tokens before and after them - in IMCA, modality B from A as well as A
            from B; ``False`` = the paper's upper triangle everywhere), ``positions`` (fixed 2-D positional
            codes on every ICA's queries and keys) and ``conditioner`` ("tokens": the coupling conditioner
            convolves along the token sequence; "grid": 3x3 on each modality's h x w map); every ICA layer gets
            the same config (``heads``, ``gamma``, ``qk_dim``, ...: see
            :class:`~mango_lite.flows.InvertibleCrossAttention`).
        grid: (h, w) of each modality's tokens (T = h * w). Needed by ``positions`` and
            ``conditioner="grid"``.
        flip_coupling: which channel half the coupling changes (alternate it between blocks so every
            channel gets transformed).
        **options: any :class:`~mango_lite.flows.FlowConfig` field, applied on top of ``config``.
    """

    def __init__(
        self,
        dim: int,
        tokens: int,
        *,
        config: FlowConfig | None = None,
        grid: tuple[int, int] | None = None,
        flip_coupling: bool = False,
        **options: Any,
    ) -> None:
        super().__init__()
        self.dim, self.tokens = dim, tokens
        self.config = cfg = resolve(config, options, owner="MangoBlock", reads=BLOCK_FIELDS)
        if (cfg.positions or cfg.conditioner == "grid") and grid is None:
            raise ValueError("MangoBlock: positions=True and conditioner='grid' need grid=(h, w) of each modality")
        mods: list[InvertibleModule] = []
        for i, (name, variant) in enumerate(cfg.layers):
            mods.append(ActNorm(dim))
            mods.append(InvertibleCrossAttention(
                dim, tokens, name, variant, config=cfg, triangle="lower" if cfg.alternate and i % 2 else "upper",
                grid=grid if cfg.positions else None,
            ))
        mods.append(ActNorm(dim))
        mods.append(Coupling(dim, cfg.hidden, flip=flip_coupling, grid=grid if cfg.conditioner == "grid" else None))
        self.flow = FlowSequence(mods)
        silence_children(self)
        # recompute this block's activations in the backward instead of keeping them (use_activation_checkpointing)
        self.checkpoint_forward = False

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            check_tokens(x, self.tokens, self.dim)
        if self.checkpoint_forward and torch.is_grad_enabled():
            # non-reentrant: parameters get their gradients without x requiring one, a nested autograd.grad (the
            # flow-only likelihood) recomputes as the outer backward does, and the RNG state is replayed
            return checkpoint(self.flow, x, use_reentrant=False)
        return self.flow(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            check_tokens(z, self.tokens, self.dim, name="z")
        return self.flow.inverse(z)


def use_activation_checkpointing(module: nn.Module, enabled: bool = True) -> list[MangoBlock]:
    """Let every :class:`MangoBlock` inside ``module`` keep only its input for the backward and recompute its
    layers' activations there (``torch.utils.checkpoint``), or keep them all again (``enabled=False``).

    A flow's activations are most of a MANGO model's training memory (its 18 layers per block each keep several
    (B, 2T, D) tensors); with checkpointing a block keeps one, at the price of running its forward twice in a
    training step. Values and gradients are unchanged (tested in float64); evaluation, sampling and the inverse
    are unaffected. Returns the blocks switched."""
    blocks = [m for m in module.modules() if isinstance(m, MangoBlock)]
    for b in blocks:
        b.checkpoint_forward = bool(enabled)
    return blocks
