"""A MANGO block: eight (ActNorm -> ICA) layers with the paper's 2 MMCA / 4 IMCA / 2 LICA mix,
then ActNorm -> affine coupling."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from ..utils import check_tokens
from .actnorm import ActNorm
from .base import FlowSequence, InvertibleModule, silence_children
from .coupling import Coupling
from .ica import InvertibleCrossAttention

#: The paper's block layout (architecture figure): MMCA in both directions, the four IMCA
#: configurations, two independent learnable partitions.
DEFAULT_LAYERS: tuple[tuple[str, int], ...] = (
    ("mmca", 0), ("mmca", 1),
    ("imca", 0), ("imca", 1), ("imca", 2), ("imca", 3),
    ("lica", 0), ("lica", 1),
)


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
        heads: attention heads of every ICA. hidden: coupling conditioner width.
        layers: sequence of (partition, variant); default :data:`DEFAULT_LAYERS`.
        flip_coupling: which channel half the coupling changes (alternate it between blocks so every
            channel gets transformed).
        gamma: initial attention weight of every ICA (A = I + gamma S); ``None`` = the paper's A = S + I.
        qk_dim: query/key width of every ICA (``None`` = ``dim``); it shapes the attention, not the log-det.
        alternate: odd-numbered ICA layers use the lower triangle (``triangle="lower"``), so within a
            block tokens receive from tokens before and after them - in IMCA, modality B from A as well
            as A from B. ``False`` = the paper's upper triangle everywhere.
        learn_gamma / gamma_rate / gamma_mode: see :class:`InvertibleCrossAttention` (``gamma=0.0,
            learn_gamma=False``: the no-attention control; ``gamma_mode`` "token" / "modality": a gamma per X2
            row, a deviation from the paper, default "head").
        grid: (h, w) of each modality's tokens (T = h * w). Needed by ``positions`` and
            ``conditioner="grid"``.
        positions: fixed 2-D positional codes on every ICA's queries and keys.
        conditioner: "tokens" (coupling conditioner convolves along the token sequence) or "grid" (3x3 on
            each modality's h x w map).
        self_logit: a learnable per-head offset on every ICA's diagonal attention logits (a deviation from the
            paper, see :mod:`mango_lite.flows.ica`; default ``False``).
    """

    def __init__(
        self,
        dim: int,
        tokens: int,
        heads: int = 1,
        hidden: int | None = None,
        layers: Sequence[tuple[str, int]] | None = None,
        flip_coupling: bool = False,
        gamma: float | None = 0.1,
        qk_dim: int | None = None,
        alternate: bool = False,
        learn_gamma: bool = True,
        gamma_rate: float = 1.0,
        grid: tuple[int, int] | None = None,
        positions: bool = False,
        conditioner: str = "tokens",
        gamma_mode: str = "head",
        self_logit: bool = False,
    ) -> None:
        super().__init__()
        self.dim, self.tokens = dim, tokens
        layers = tuple(layers) if layers is not None else DEFAULT_LAYERS
        if conditioner not in ("tokens", "grid"):
            raise ValueError(f"MangoBlock: conditioner must be 'tokens' or 'grid', got {conditioner!r}")
        if (positions or conditioner == "grid") and grid is None:
            raise ValueError("MangoBlock: positions=True and conditioner='grid' need grid=(h, w) of each modality")
        mods: list[InvertibleModule] = []
        for i, (name, variant) in enumerate(layers):
            mods.append(ActNorm(dim))
            mods.append(InvertibleCrossAttention(
                dim, tokens, name, variant, heads, gamma=gamma, qk_dim=qk_dim,
                triangle="lower" if alternate and i % 2 else "upper", learn_gamma=learn_gamma,
                gamma_rate=gamma_rate, grid=grid if positions else None, gamma_mode=gamma_mode,
                self_logit=self_logit,
            ))
        mods.append(ActNorm(dim))
        mods.append(Coupling(dim, hidden, flip=flip_coupling, grid=grid if conditioner == "grid" else None))
        self.flow = FlowSequence(mods)
        silence_children(self)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            check_tokens(x, self.tokens, self.dim)
        return self.flow(x)

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            check_tokens(z, self.tokens, self.dim, name="z")
        return self.flow.inverse(z)
