"""FlowConfig: every option of a MANGO flow, stated once.

One frozen object travels down the stack - :class:`~mango_lite.models.MangoFusion` ->
:class:`~mango_lite.flows.MultiscaleMango` / :class:`~mango_lite.flows.MangoFlow` ->
:class:`~mango_lite.flows.MangoBlock` -> :class:`~mango_lite.flows.InvertibleCrossAttention` - and each module
reads the fields it uses; the sizes that belong to one module (``dim``, ``tokens``, ``grid``, ``scales``) stay
its own arguments. Two named layouts::

    FlowConfig.paper()        # Truong et al. 2025 (arXiv 2508.10133): upper triangles, no positions,
                              # a conditioner along the token sequence, the NLL reaching the encoders
    FlowConfig.recommended()  # what this library's selection split kept (results/selection): alternating
                              # triangles, 2-D positions on Q/K, a 3x3 grid conditioner, NLL for the flow only

``FlowConfig()`` is the paper's layout with the attention weight gamma learnable from 0.1 (``gamma=None`` is
the paper's fixed A = S + I). The flows default to it; the fusion and task models, whose tokens always lie
on a grid, default to :meth:`FlowConfig.recommended`. Every module also takes the fields as keywords, applied
on top of its ``config`` (``MangoBlock(4, 16, heads=2)``), so a notebook can change one option in place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .partition import PARTITIONS

__all__ = ["FlowConfig", "GAMMA_MODES", "CONDITIONERS", "DEFAULT_LAYERS"]

#: values of ``gamma_mode``: one gamma per head (the paper's layer, with gamma learnable), per X2 row from X1's
#: token, per modality of the X2 row (deviations from the paper: :mod:`mango_lite.flows.ica`)
GAMMA_MODES: tuple[str, ...] = ("head", "token", "modality")

#: values of ``conditioner``: the coupling's conditioner convolves along the token sequence, or 3x3 on each
#: modality's h x w map
CONDITIONERS: tuple[str, ...] = ("tokens", "grid")

#: The paper's block layout (architecture figure): MMCA in both directions, the four IMCA
#: configurations, two independent learnable partitions.
DEFAULT_LAYERS: tuple[tuple[str, int], ...] = (
    ("mmca", 0), ("mmca", 1),
    ("imca", 0), ("imca", 1), ("imca", 2), ("imca", 3),
    ("lica", 0), ("lica", 1),
)


@dataclass(frozen=True)
class FlowConfig:
    """How every MANGO block of a flow is built (frozen; compare, hash and :meth:`replace` freely).

    :class:`~mango_lite.flows.InvertibleCrossAttention` reads ``heads``, ``qk_dim``, ``gamma``, ``learn_gamma``,
    ``gamma_rate``, ``gamma_mode`` and ``self_logit``; :class:`~mango_lite.flows.MangoBlock` also ``layers``,
    ``hidden``, ``alternate``, ``positions`` and ``conditioner``; :class:`~mango_lite.models.MangoFusion` (the
    flow on a network's features) ``noise`` and ``nll_to_encoders``.

    Attributes:
        heads: channel groups, each re-mixed by its own triangular A_h (the log-det factor is D / heads).
        qk_dim: query/key width (``None`` = the token width D; in :class:`~mango_lite.flows.MultiscaleMango` a
            cap, ``min(qk_dim, D_s)``). It shapes S, never the log-det.
        gamma: initial attention weight in A = I + gamma S, in (-1, 1); ``None`` = the paper's fixed A = S + I.
        learn_gamma: ``False`` fixes gamma (``gamma=0.0, learn_gamma=False`` is the no-attention control).
        gamma_rate: gamma = tanh(gamma_rate * g) for the stored parameter g (how fast Adam can move gamma).
        gamma_mode: "head" (the paper's one gamma per head), "token" or "modality" (a gamma per X2 row).
        self_logit: a learnable per-head offset on the diagonal attention logits (a deviation from the paper).
        layers: the block's ICA layers as (partition, variant) pairs (default :data:`DEFAULT_LAYERS`).
        hidden: the coupling conditioner's width (``None``: max(32, 2 D) for tokens of width D).
        alternate: odd-numbered ICA layers use the lower triangle, so tokens receive from both sides.
        positions: fixed 2-D positional codes on every ICA's queries and keys (needs the tokens' grid).
        conditioner: "tokens" or "grid" (3x3 on each modality's map; needs the grid).
        noise: std of the Gaussian noise added to the features in training (bounds the bits/dim below).
        nll_to_encoders: ``True`` (the paper's joint objective): the NLL's gradient reaches the encoders;
            ``False``: it trains the flow only (:class:`~mango_lite.models.fusion.FlowOnlyLikelihood`).
    """

    heads: int = 1
    qk_dim: int | None = None
    gamma: float | None = 0.1
    learn_gamma: bool = True
    gamma_rate: float = 1.0
    gamma_mode: str = "head"
    self_logit: bool = False
    layers: tuple[tuple[str, int], ...] = DEFAULT_LAYERS
    hidden: int | None = None
    alternate: bool = False
    positions: bool = False
    conditioner: str = "tokens"
    noise: float = 0.05
    nll_to_encoders: bool = True

    def __post_init__(self) -> None:
        # normal forms, so that two configurations that build the same flow compare equal
        layers = _layers(self.layers)
        object.__setattr__(self, "layers", layers)
        for name in ("learn_gamma", "alternate", "positions", "self_logit", "nll_to_encoders"):
            object.__setattr__(self, name, bool(getattr(self, name)))
        object.__setattr__(self, "heads", int(self.heads))
        object.__setattr__(self, "gamma_rate", float(self.gamma_rate))
        object.__setattr__(self, "noise", float(self.noise))
        if self.gamma is not None:
            object.__setattr__(self, "gamma", float(self.gamma))
        for name in ("qk_dim", "hidden"):
            value = getattr(self, name)
            if value is not None:
                if int(value) < 1:
                    raise ValueError(f"FlowConfig: {name} must be a positive width or None, got {value!r}")
                object.__setattr__(self, name, int(value))
        if self.heads < 1:
            raise ValueError(f"FlowConfig: heads must be >= 1, got {self.heads}")
        if self.gamma is not None and not -1.0 < self.gamma < 1.0:
            raise ValueError(f"FlowConfig: gamma must lie in (-1, 1) (or be None for the paper's 1), got {self.gamma}")
        if not self.gamma_rate > 0:
            raise ValueError(f"FlowConfig: gamma_rate must be > 0, got {self.gamma_rate}")
        if self.gamma_mode not in GAMMA_MODES:
            raise ValueError(f"FlowConfig: gamma_mode must be one of {GAMMA_MODES}, got {self.gamma_mode!r}")
        if self.gamma_mode != "head" and self.gamma is None:
            raise ValueError(f"FlowConfig: gamma_mode={self.gamma_mode!r} needs a gamma in (-1, 1); gamma=None is "
                             "the paper's fixed A = S + I, the same for every row")
        if self.conditioner not in CONDITIONERS:
            raise ValueError(f"FlowConfig: conditioner must be one of {CONDITIONERS}, got {self.conditioner!r}")
        if self.noise < 0:
            raise ValueError(f"FlowConfig: noise must be >= 0, got {self.noise}")

    # -- named layouts -------------------------------------------------------------------------------
    @classmethod
    def paper(cls, **changes: Any) -> FlowConfig:
        """The paper's layout (with a learnable gamma from 0.1; ``gamma=None`` for its fixed A = S + I)."""
        return cls().replace(**changes)

    @classmethod
    def recommended(cls, **changes: Any) -> FlowConfig:
        """The layout the selection split kept for flows on feature grids (``select-defaults``): the paper's,
        with alternating triangles, 2-D positions on Q/K, a 3x3 grid conditioner and the NLL training the flow
        only. Needs the tokens' grid, which :class:`~mango_lite.flows.MultiscaleMango` supplies."""
        return cls(alternate=True, positions=True, conditioner="grid", nll_to_encoders=False).replace(**changes)

    # -- changes -------------------------------------------------------------------------------------
    def replace(self, **changes: Any) -> FlowConfig:
        """A copy with ``changes`` (field names of this class) applied; unknown names are an error."""
        if not changes:
            return self
        unknown = sorted(set(changes) - set(field_names()))
        if unknown:
            raise ValueError(f"FlowConfig: unknown option(s) {unknown}; expected some of {sorted(field_names())}")
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly fields (``layers`` as a list of [partition, variant])."""
        out = asdict(self)
        out["layers"] = [list(layer) for layer in self.layers]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FlowConfig:
        return cls().replace(**dict(data))


def field_names() -> tuple[str, ...]:
    """The option names of :class:`FlowConfig`."""
    return tuple(f.name for f in fields(FlowConfig))


#: the fields an ICA layer reads; a block reads these and :data:`BLOCK_FIELDS`; MangoFusion the rest
ICA_FIELDS = frozenset({"heads", "qk_dim", "gamma", "learn_gamma", "gamma_rate", "gamma_mode", "self_logit"})
BLOCK_FIELDS = ICA_FIELDS | {"layers", "hidden", "alternate", "positions", "conditioner"}


def resolve(config: FlowConfig | None, options: Mapping[str, Any], default: FlowConfig | None = None,
            owner: str = "flow", reads: frozenset[str] | None = None) -> FlowConfig:
    """``config`` (or ``default``, or ``FlowConfig()``) with the keyword ``options`` of a module applied.
    An option that is not a field, or (given ``reads``) one the module would not read, raises a TypeError
    naming ``owner``: ``ICA(alternate=True)`` would otherwise be silently ignored."""
    if config is not None and not isinstance(config, FlowConfig):
        raise TypeError(f"{owner}: config must be a FlowConfig, got {type(config).__name__}")
    base = config if config is not None else (default if default is not None else FlowConfig())
    accepted = set(field_names()) if reads is None else set(reads)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"{owner}: unexpected keyword(s) {unknown}; it reads the flow options {sorted(accepted)}")
    return base.replace(**dict(options))


def _layers(layers: Sequence[Sequence[Any]] | None) -> tuple[tuple[str, int], ...]:
    if layers is None:
        return DEFAULT_LAYERS
    out: list[tuple[str, int]] = []
    for layer in layers:
        if isinstance(layer, str) or len(layer) != 2:
            raise ValueError(f"FlowConfig: layers must be (partition, variant) pairs, got {layer!r}")
        name, variant = str(layer[0]).lower(), int(layer[1])
        if name not in PARTITIONS:
            raise ValueError(f"FlowConfig: layer partition must be one of {tuple(PARTITIONS)}, got {layer[0]!r}")
        out.append((name, variant))
    if not out:
        raise ValueError("FlowConfig: layers must hold at least one (partition, variant) pair")
    return tuple(out)
