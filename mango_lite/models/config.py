"""ModelConfig: everything :func:`~mango_lite.models.build_model` needs to build a task model, in one frozen object.

Its ``flow_*`` fields are MANGO's :class:`~mango_lite.flows.FlowConfig` (``config.flow``), with the defaults of
:meth:`FlowConfig.recommended() <mango_lite.flows.FlowConfig.recommended>` - stated there once, read here.
Checkpoints and results store :meth:`ModelConfig.to_dict` (flat, JSON) with a ``config_version``;
:meth:`ModelConfig.from_dict` reads every version written so far, so a run is rebuilt as the model it was::

    config = ModelConfig(task="segmentation", fusion="mango", num_outputs=40, image_size=64)
    model = build_model(config)
    same = build_model(ModelConfig.from_dict(model.config.to_dict()))
    control = build_model(config.replace(flow_gamma=0.0, flow_learn_gamma=False))   # no attention
    paper = ModelConfig.paper_layout(task="segmentation", fusion="mango", num_outputs=40, image_size=64)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from ..flows import FlowConfig
from ..tasks import task_names

__all__ = ["CONFIG_VERSION", "FUSIONS", "FUSION_KEYS", "ModelConfig", "TASKS"]

TASKS = task_names()
FUSIONS = ("mango", "concat", "tokenfusion", "crossattn", "a", "b")
TEXT_ENCODERS = ("hash", "vector", "sentence", "pretrained")

#: version of :meth:`ModelConfig.to_dict`'s layout. 1: the build_model keywords of their day, no version field
#: (read with :data:`_VERSION_1_MEANT`); 2: every field, with ``config_version``.
CONFIG_VERSION = 2

_RECOMMENDED = FlowConfig.recommended()

#: ModelConfig fields that only one fusion reads: a change to them does not change another fusion's model, so a
#: finished concat run stays valid when MANGO's flow settings change
FUSION_KEYS: dict[str, frozenset[str]] = {
    "mango": frozenset({"flow_weight", "flow_noise", "flow_hidden", "flow_qk_dim", "flow_gamma", "flow_learn_gamma",
                        "flow_gamma_rate", "flow_alternate", "flow_positions", "flow_conditioner", "partitions",
                        "layers", "flow_nll_to_encoders", "flow_gamma_mode", "flow_self_logit"}),
    "tokenfusion": frozenset({"sparsity_weight", "exchange_threshold"}),
    "concat": frozenset({"context_dilations", "context_hidden"}),
}

#: what a version-1 configuration meant by a key it lacks: fields added later for every fusion (encoders
#: trained from scratch, no context branch)
_VERSION_1_MEANT: dict[str, Any] = {"encoder": "conv", "encoder_weights": None, "encoder_name": None,
                                    "text_model": None, "text_finetune": False, "context_dilations": None,
                                    "context_hidden": None}


#: ModelConfig field -> the FlowConfig field it sets
_FLOW_FIELDS: dict[str, str] = {
    "flow_noise": "noise", "flow_hidden": "hidden", "flow_qk_dim": "qk_dim", "flow_gamma": "gamma",
    "flow_learn_gamma": "learn_gamma", "flow_gamma_rate": "gamma_rate", "flow_alternate": "alternate",
    "flow_positions": "positions", "flow_conditioner": "conditioner", "flow_gamma_mode": "gamma_mode",
    "flow_self_logit": "self_logit", "flow_nll_to_encoders": "nll_to_encoders",
}


@dataclass(frozen=True)
class ModelConfig:
    """A task model: encoders -> fusion -> head (frozen; :meth:`replace` makes a changed copy).

    task: "segmentation" | "translation" | "genre"; fusion: "mango" | "concat" | "tokenfusion" | "crossattn" |
    "a" | "b" (unimodal). ``in_channels`` = (C_a, C_b) image channels; for genre C_b is ignored (the plot is
    text). ``num_outputs`` = classes / output image channels / genres. ``image_size`` = H (square) or (H, W); the
    encoders reduce it by ``encoder_stride`` to (h, w), which must be divisible by ``2**scales``. ``width`` =
    encoder channels C (= flow channels); ``blocks`` = MANGO blocks / baseline blocks per scale; ``heads`` =
    attention heads of every fusion that attends. ``embed`` = head width (default 4*width).

    MANGO: ``flow_weight`` (lambda in task loss + lambda * bits/dim; 0 is the no-likelihood control),
    ``partitions`` (ablation, a subset of ("mmca", "imca", "lica"): see
    :func:`~mango_lite.models.layers_for_partitions`) or ``layers`` (an explicit ``[(partition, variant), ...]``
    block), and the ``flow_*`` fields, :class:`~mango_lite.flows.FlowConfig`'s options (``flow_gamma`` is its
    ``gamma``, ...; :attr:`flow` assembles them). ``flow_hidden`` / ``flow_qk_dim`` default to 4*width and
    2*width at every scale: the flow's channels are 4*width, 8*width, ..., so uncapped widths would grow the flow
    4-16x per scale while the baselines grow 2x. The defaults are :meth:`FlowConfig.recommended()
    <mango_lite.flows.FlowConfig.recommended>`; :meth:`paper_layout` gives the paper's.
    ``flow_gamma=0.0, flow_learn_gamma=False`` is the no-attention control.

    TokenFusion: ``sparsity_weight``, ``exchange_threshold``. Concat: ``context_dilations`` /
    ``context_hidden`` (a large receptive field: :mod:`mango_lite.models.context_fusion`).
    Encoders: ``encoder`` "conv" (trained from scratch), "segformer" (MiT from the local folder
    ``encoder_weights``) or "timm" (model ``encoder_name``, weights file ``encoder_weights``), see
    :mod:`mango_lite.models.pretrained`; nothing is downloaded. ``encoder_depth``. Genre plots:
    ``text_encoder`` "hash" (word ids / raw strings, ``vocab_size``, ``max_text_len``), "vector" (a
    (B, ``text_dim``) feature vector), "sentence" (frozen all-MiniLM-L6-v2, optional dependency) or "pretrained"
    (a Hugging Face model from the local folder ``text_model``, frozen unless ``text_finetune``).

    Derived values are filled in on construction (``embed``, MANGO's ``flow_hidden`` / ``flow_qk_dim`` and the
    ``layers`` of a partition ablation), so two configurations that build the same model compare equal.
    """

    task: str
    fusion: str
    num_outputs: int
    image_size: tuple[int, int]
    in_channels: tuple[int, int] = (3, 1)
    width: int = 16
    blocks: int = 1
    scales: int = 2
    heads: int = 1
    embed: int | None = None
    encoder: str = "conv"
    encoder_stride: int = 4
    encoder_depth: int = 1
    encoder_weights: str | None = None
    encoder_name: str | None = None
    # MANGO
    flow_weight: float = 0.1
    partitions: tuple[str, ...] | None = None
    layers: tuple[tuple[str, int], ...] | None = None
    flow_noise: float = _RECOMMENDED.noise
    flow_hidden: int | None = None
    flow_qk_dim: int | None = None
    flow_gamma: float | None = _RECOMMENDED.gamma
    flow_learn_gamma: bool = _RECOMMENDED.learn_gamma
    # 1, not the earlier ladder's 10: re-checked on the selection split (select-defaults, 3 seeds), rate 1 had
    # the better mean (not told apart)
    flow_gamma_rate: float = _RECOMMENDED.gamma_rate
    flow_alternate: bool = _RECOMMENDED.alternate
    flow_positions: bool = _RECOMMENDED.positions
    flow_conditioner: str = _RECOMMENDED.conditioner
    flow_gamma_mode: str = _RECOMMENDED.gamma_mode
    flow_self_logit: bool = _RECOMMENDED.self_logit
    flow_nll_to_encoders: bool = _RECOMMENDED.nll_to_encoders
    # TokenFusion
    sparsity_weight: float = 1e-4
    exchange_threshold: float = 0.02
    # concat with a large receptive field
    context_dilations: tuple[int, ...] | None = None
    context_hidden: int | None = None
    # genre plots
    text_encoder: str = "hash"
    text_model: str | None = None
    text_finetune: bool = False
    vocab_size: int = 4096
    max_text_len: int = 64
    text_dim: int = 300

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        put("task", str(self.task).lower())
        put("fusion", str(self.fusion).lower())
        put("encoder", str(self.encoder).lower())
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if self.text_encoder not in TEXT_ENCODERS:
            raise ValueError(f"text_encoder must be one of {TEXT_ENCODERS}, got {self.text_encoder!r}")
        if int(self.num_outputs) < 1:
            raise ValueError(f"num_outputs must be >= 1, got {self.num_outputs}")
        size = self.image_size
        put("image_size", (int(size), int(size)) if isinstance(size, int) else tuple(int(v) for v in size))
        if len(self.image_size) != 2:
            raise ValueError(f"image_size must be H or (H, W), got {size!r}")
        put("in_channels", tuple(int(c) for c in self.in_channels))
        H, W = self.image_size
        stride = self.encoder_stride
        if H % stride or W % stride:
            raise ValueError(f"image_size {(H, W)} must be divisible by encoder_stride {stride}")
        h, w = H // stride, W // stride
        if h % 2**self.scales or w % 2**self.scales:
            raise ValueError(
                f"the encoder feature map {(h, w)} (image {(H, W)} / stride {stride}) must be divisible by "
                f"2**scales = {2**self.scales}; use a larger image, a smaller encoder_stride or fewer scales"
            )
        if self.partitions is not None:
            if self.fusion != "mango":
                raise ValueError(f"partitions is a MANGO ablation; fusion is {self.fusion!r}")
            put("partitions", tuple(str(p) for p in self.partitions))
        if self.layers is not None:
            put("layers", tuple((str(name), int(variant)) for name, variant in self.layers))
        put("context_dilations", tuple(int(d) for d in self.context_dilations) if self.context_dilations else None)
        if self.context_hidden is not None:
            put("context_hidden", int(self.context_hidden))
        for name in ("flow_nll_to_encoders", "text_finetune"):
            put(name, bool(getattr(self, name)))
        for name in ("encoder_weights", "text_model"):
            if getattr(self, name) is not None:
                put(name, str(getattr(self, name)))
        put("embed", self.embed or 4 * self.width)
        if self.fusion == "mango":
            from .fusion import layers_for_partitions

            if self.layers is None and self.partitions is not None:
                put("layers", tuple(layers_for_partitions(self.partitions)))
            put("flow_hidden", self.flow_hidden or 4 * self.width)
            put("flow_qk_dim", self.flow_qk_dim or 2 * self.width)
            self.flow  # noqa: B018 - validates the flow options (FlowConfig raises on a bad one)

    # -- the flow ------------------------------------------------------------------------------------
    @property
    def flow(self) -> FlowConfig:
        """MANGO's :class:`~mango_lite.flows.FlowConfig`: the ``flow_*`` fields, ``heads`` and the ICA ``layers``."""
        options = {target: getattr(self, name) for name, target in _FLOW_FIELDS.items()}
        return FlowConfig(heads=self.heads, layers=self.layers, **options)

    @classmethod
    def paper_layout(cls, **values: Any) -> ModelConfig:
        """A configuration whose flow has :meth:`FlowConfig.paper() <mango_lite.flows.FlowConfig.paper>`'s
        layout (upper triangles, no positions, token conditioner, the NLL reaching the encoders); ``values``
        set the other fields and may change these too."""
        paper = FlowConfig.paper()
        layout = {name: getattr(paper, target) for name, target in _FLOW_FIELDS.items()
                  if name not in ("flow_hidden", "flow_qk_dim")}  # the task models' caps stay
        return cls(**{**layout, **values})

    # -- changes and storage -------------------------------------------------------------------------
    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with ``changes`` (field names) applied; unknown names raise a ValueError naming the fields.
        Derived values (``embed``, MANGO's widths) are recomputed unless given."""
        _check_names(changes)
        derived = {}
        if "width" in changes:  # a derived width follows the new width unless it was set apart from it
            old = self.width
            derived = {k: None for k, mult in (("embed", 4), ("flow_hidden", 4), ("flow_qk_dim", 2))
                       if getattr(self, k) == mult * old and k not in changes}
        return replace(self, **{**derived, **changes})

    def to_dict(self) -> dict[str, Any]:
        """The flat JSON form stored in checkpoints and results (``config_version`` = :data:`CONFIG_VERSION`).
        ``flow_gamma_mode`` / ``flow_self_logit`` appear only when they differ from the default, as in the
        configurations written before them."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("flow_gamma_mode", "flow_self_logit"):
                if self.fusion != "mango" or value == f.default:
                    continue
            if isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
            out[f.name] = value
        out["config_version"] = CONFIG_VERSION
        return out

    @classmethod
    def from_options(cls, task: str, fusion: str, options: Mapping[str, Any]) -> ModelConfig:
        """``ModelConfig(task=task, fusion=fusion, **options)`` for options gathered as a mapping (a preset's
        model keywords, a study's overrides): today's defaults for absent fields, a ValueError naming the
        fields for an unknown one (:meth:`from_dict` reads stored configurations instead)."""
        _check_names(options)
        return cls(**{**dict(options), "task": task, "fusion": fusion})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelConfig:
        """Read :meth:`to_dict`'s form, of this version or an older one (a key a version-1 configuration
        lacks means what it meant when it was written, not today's default). Raises ValueError on unknown keys
        or a newer version."""
        values = dict(data)
        version = int(values.pop("config_version", 1))
        if version > CONFIG_VERSION:
            raise ValueError(f"model configuration version {version} is newer than this mango_lite's "
                             f"({CONFIG_VERSION}); upgrade mango_lite to read it")
        if version == 1:
            meant = dict(_VERSION_1_MEANT)
            if values.get("fusion", "mango") == "mango":
                # every flow option added to version 1 started as the paper's layout (gamma learnable from 0.1,
                # rate 1, upper triangles, no positions, token conditioner, the NLL reaching the encoders)
                paper = FlowConfig.paper()
                meant.update({name: getattr(paper, target) for name, target in _FLOW_FIELDS.items()
                              if name not in ("flow_hidden", "flow_qk_dim")})
            values = {**meant, **values}
        _check_names(values)
        return cls(**values)

    def relevant_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the version and the fields that only other fusions read: what decides
        whether two configurations build the same model."""
        return without_foreign_keys(self.to_dict())

    @property
    def feature_size(self) -> tuple[int, int]:
        """(h, w) of the encoder feature maps: ``image_size`` / ``encoder_stride``."""
        return self.image_size[0] // self.encoder_stride, self.image_size[1] // self.encoder_stride


def without_foreign_keys(config: Mapping[str, Any]) -> dict[str, Any]:
    """A stored configuration without its version and the keys that only fusions other than its own read."""
    foreign = set().union(*(keys for f, keys in FUSION_KEYS.items() if f != config.get("fusion")))
    return {k: v for k, v in config.items() if k not in foreign and k != "config_version"}


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(ModelConfig))


def _check_names(values: Mapping[str, Any] | Sequence[str]) -> None:
    unknown = sorted(set(values) - set(field_names()))
    if unknown:
        raise ValueError(f"ModelConfig: unknown field(s) {unknown}; the fields are {sorted(field_names())}")
