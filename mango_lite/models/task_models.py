"""The three task models - encoders -> fusion -> head - and their losses.

* ``segmentation``: RGB (B, 3, H, W) and depth (B, 1 or 3, H, W) float -> logits (B, classes, H, W);
  cross-entropy with ignore_index 255.
* ``translation``: two Taskonomy domains (B, C_a, H, W), (B, C_b, H, W) float -> image
  (B, out_channels, H, W) in [-1, 1] (tanh); L1 to a target scaled to [-1, 1].
* ``genre``: poster (B, 3, H, W) float and plot (list of str, word ids (B, L) int64, or a vector (B, F))
  -> logits (B, 23); BCE with logits (optional ``pos_weight``).

Total loss = task loss + ``flow_weight`` * flow bits/dim (MANGO; the NLL term of the paper's objective)
+ ``sparsity_weight`` * score L1 (TokenFusion). Translation uses the L1 reconstruction loss only: the
pix2pix recipe of TokenFusion adds an adversarial loss (L1 weight 100 vs GAN 1); a discriminator is left
out here to keep CPU runs small and stable, so FID/KID of these models are not comparable to GAN-trained
ones (documented in the reproduction tables).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..tasks import task_names
from .context_fusion import ContextConcatFusion
from .fusion import (
    ConcatFusion,
    CrossAttentionFusion,
    FusionOutput,
    MangoFusion,
    TokenFusion,
    UnimodalFusion,
    layers_for_partitions,
    scale_channels,
)
from .heads import GenreHead, SegformerHead, TranslationHead
from .pretrained import PretrainedTextEncoder, build_image_encoder
from .text import HashTokenizer, SentenceEncoder, TextEncoder, VectorEncoder

__all__ = ["TASKS", "FUSIONS", "ModelOutput", "TaskModel", "build_model", "count_parameters", "IGNORE_INDEX"]

TASKS = task_names()
FUSIONS = ("mango", "concat", "tokenfusion", "crossattn", "a", "b")
IGNORE_INDEX = 255

#: build_model keywords that only one fusion reads: a change to them does not change another fusion's
#: model, so a finished concat run stays valid when MANGO's flow settings change
FUSION_KEYS: dict[str, frozenset[str]] = {
    "mango": frozenset({"flow_weight", "flow_noise", "flow_hidden", "flow_qk_dim", "flow_gamma", "flow_learn_gamma",
                        "flow_gamma_rate", "flow_alternate", "flow_positions", "flow_conditioner", "partitions",
                        "layers", "flow_nll_to_encoders", "flow_gamma_mode", "flow_self_logit"}),
    "tokenfusion": frozenset({"sparsity_weight", "exchange_threshold"}),
    "concat": frozenset({"context_dilations", "context_hidden"}),
}


#: build_model keywords whose default changed, with the value that configurations written before the
#: keyword was stored meant (until the mechanisms study, MANGO's NLL always reached the encoders)
LEGACY_DEFAULTS: dict[str, Any] = {"flow_nll_to_encoders": True}

#: build_model keywords added later for every fusion, with the value that every configuration stored
#: before them meant (encoders trained from scratch)
ADDED_DEFAULTS: dict[str, Any] = {"encoder": "conv", "encoder_weights": None, "encoder_name": None,
                                  "text_model": None, "text_finetune": False, "context_dilations": None,
                                  "context_hidden": None}


def complete_config(config: dict[str, Any]) -> dict[str, Any]:
    """A stored configuration with :data:`ADDED_DEFAULTS` (and, for MANGO, :data:`LEGACY_DEFAULTS`) filled in
    where it lacks them, so an old run is rebuilt (and compared) as the model it was, not as today's default."""
    if config.get("fusion", "mango") != "mango":
        return {**ADDED_DEFAULTS, **config}
    return {**ADDED_DEFAULTS, **LEGACY_DEFAULTS, **config}


def relevant_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (a task model's stored build_model keywords, completed by :func:`complete_config`)
    without the keys that only other fusions read: what decides whether two configurations build the
    same model."""
    config = complete_config(config)
    fusion = config.get("fusion")
    foreign = set().union(*(keys for f, keys in FUSION_KEYS.items() if f != fusion))
    return {k: v for k, v in config.items() if k not in foreign}


@dataclass
class ModelOutput:
    """``pred``: task prediction (see module table); ``aux``: the fusion's scalar terms (``flow_bpd`` etc.)."""

    pred: Tensor
    aux: dict[str, Tensor] = field(default_factory=dict)


class TaskModel(nn.Module):
    """Encoders (one per used modality) -> fusion -> head.

    ``forward(batch_a, batch_b) -> ModelOutput``. For a unimodal model the unused input may be ``None``
    and is never read (its encoder is not even built). ``loss(output, target) -> (loss, parts)``.
    """

    def __init__(
        self,
        task: str,
        fusion_name: str,
        encoder_a: nn.Module | None,
        encoder_b: nn.Module | None,
        fusion: nn.Module,
        head: nn.Module,
        *,
        flow_weight: float = 0.1,
        sparsity_weight: float = 1e-4,
        tokenizer: HashTokenizer | None = None,
        pos_weight: Tensor | None = None,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.task = task
        self.fusion_name = fusion_name
        self.encoder_a = encoder_a
        self.encoder_b = encoder_b
        self.fusion = fusion
        self.head = head
        self.flow_weight = float(flow_weight)
        self.sparsity_weight = float(sparsity_weight)
        self.tokenizer = tokenizer
        self.config = dict(config or {})
        if pos_weight is not None:
            self.register_buffer("pos_weight", torch.as_tensor(pos_weight, dtype=torch.float32))
        else:
            self.pos_weight = None

    # -- pieces, also used by mango_lite.models.interpret ------------------------------------------
    @property
    def modalities(self) -> tuple[str, ...]:
        """The modalities the model reads: ("a", "b"), ("a",) or ("b",)."""
        return tuple(m for m, e in (("a", self.encoder_a), ("b", self.encoder_b)) if e is not None)

    def _text_input(self, batch_b: Any) -> Any:
        if isinstance(self.encoder_b, TextEncoder):
            if isinstance(batch_b, str) or (isinstance(batch_b, Sequence) and not isinstance(batch_b, Tensor)):
                if self.tokenizer is None:
                    raise ValueError("TaskModel: got raw text but the model has no tokenizer")
                batch_b = self.tokenizer(batch_b)
            return batch_b.to(self.encoder_b.embed.weight.device)
        return batch_b

    def encode(self, batch_a: Any, batch_b: Any) -> tuple[Tensor | None, Tensor | None]:
        """Encoder feature maps ``(fa, fb)``, each (B, width, h, w) standardised float, or None if unused."""
        fa = self.encoder_a(batch_a) if self.encoder_a is not None else None
        fb = self.encoder_b(self._text_input(batch_b)) if self.encoder_b is not None else None
        return fa, fb

    def decode(self, fa: Tensor | None, fb: Tensor | None, out_size: tuple[int, int] | None) -> ModelOutput:
        """Fusion + head on encoder features; ``out_size`` = (H, W) of the prediction (ignored for genre)."""
        fo: FusionOutput = self.fusion(fa, fb)
        return ModelOutput(self.head(fo.features, out_size), fo.aux)

    def out_size(self, batch_a: Any, batch_b: Any) -> tuple[int, int] | None:
        if self.task == "genre":
            return None
        ref = batch_a if self.encoder_a is not None else batch_b
        return int(ref.shape[-2]), int(ref.shape[-1])

    def forward(self, batch_a: Any, batch_b: Any = None) -> ModelOutput:
        fa, fb = self.encode(batch_a, batch_b)
        return self.decode(fa, fb, self.out_size(batch_a, batch_b))

    # -- loss ------------------------------------------------------------------------------------
    def task_loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy (ignore 255) / L1 / BCE-with-logits, mean over valid elements."""
        if self.task == "segmentation":
            if target.dim() == 4 and target.shape[1] == 1:
                target = target[:, 0]
            if target.shape != (pred.shape[0], *pred.shape[2:]):
                raise ValueError(
                    f"segmentation target should be (B, H, W) = {(pred.shape[0], *pred.shape[2:])}, got {tuple(target.shape)}"
                )
            target = target.long()
            valid = target != IGNORE_INDEX
            bad = valid & ((target < 0) | (target >= pred.shape[1]))
            if bool(bad.any()):
                raise ValueError(
                    f"segmentation labels must be in [0, {pred.shape[1]}) or {IGNORE_INDEX}, "
                    f"got values {torch.unique(target[bad])[:10].tolist()}"
                )
            if not bool(valid.any()):  # every pixel ignored: zero loss that still has a graph
                return pred.sum() * 0.0
            return F.cross_entropy(pred, target, ignore_index=IGNORE_INDEX)
        if self.task == "translation":
            if target.shape != pred.shape:
                raise ValueError(f"translation target should have shape {tuple(pred.shape)}, got {tuple(target.shape)}")
            if target.numel() and float(target.detach().abs().max()) > 1.0 + 1e-4:
                raise ValueError(
                    f"translation targets must be scaled to [-1, 1] (the head ends with tanh), got max |value| "
                    f"{float(target.detach().abs().max()):.3g}"
                )
            return F.l1_loss(pred, target.to(pred.dtype))
        if target.shape != pred.shape:
            raise ValueError(f"genre target should be multi-hot (B, {pred.shape[1]}), got {tuple(target.shape)}")
        return F.binary_cross_entropy_with_logits(pred, target.to(pred.dtype), pos_weight=self.pos_weight)

    def loss(self, output: ModelOutput, target: Tensor) -> tuple[Tensor, dict[str, float]]:
        """``(total, parts)``: total = task + flow_weight * flow_bpd + sparsity_weight * score_l1 (terms
        present for the fusion), a scalar tensor with graph; ``parts`` = floats for logging:
        ``task``, ``flow_bpd`` / ``score_l1`` where present, ``total``. Note the flow bits/dim of
        continuous features can be negative, so the total can be too."""
        task = self.task_loss(output.pred, target)
        total = task
        parts: dict[str, float] = {"task": float(task.detach())}
        if "flow_bpd" in output.aux:
            if self.flow_weight:  # weight 0 (the no-likelihood control): logged, no gradient
                total = total + self.flow_weight * output.aux["flow_bpd"]
            parts["flow_bpd"] = float(output.aux["flow_bpd"].detach())
            for key in ("identity_bpd", "gamma_mean"):  # logged beside the NLL, never part of the loss
                if key in output.aux:
                    parts[key] = float(output.aux[key])
        if "score_l1" in output.aux:
            total = total + self.sparsity_weight * output.aux["score_l1"]
            parts["score_l1"] = float(output.aux["score_l1"].detach())
        parts["total"] = float(total.detach())
        return total, parts


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Trainable parameter counts: ``total`` and, for a :class:`TaskModel`, ``encoders``, ``fusion``,
    ``head`` (so a comparison table can show that baselines and MANGO differ only in the fusion)."""

    def n(m: nn.Module | None) -> int:
        return 0 if m is None else sum(p.numel() for p in m.parameters() if p.requires_grad)

    out = {"total": n(model)}
    if isinstance(model, TaskModel):
        out.update(
            encoders=n(model.encoder_a) + n(model.encoder_b), fusion=n(model.fusion), head=n(model.head)
        )
    return out


def _hw(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return image_size, image_size
    h, w = image_size
    return int(h), int(w)


def build_model(
    task: str,
    fusion: str,
    *,
    in_channels: tuple[int, int] = (3, 1),
    num_outputs: int,
    image_size: int | tuple[int, int],
    width: int = 16,
    blocks: int = 1,
    scales: int = 2,
    heads: int = 1,
    flow_weight: float = 0.1,
    partitions: Sequence[str] | None = None,
    layers: Sequence[tuple[str, int]] | None = None,
    encoder_stride: int = 4,
    encoder_depth: int = 1,
    embed: int | None = None,
    flow_noise: float = 0.05,
    flow_hidden: int | None = None,
    flow_qk_dim: int | None = None,
    flow_gamma: float | None = 0.1,
    flow_learn_gamma: bool = True,
    # 1, not the earlier ladder's 10: re-checked on the selection split (select-defaults, 3 seeds), rate 1 had
    # the better mean (not told apart)
    flow_gamma_rate: float = 1.0,
    flow_alternate: bool = True,
    flow_positions: bool = True,
    flow_conditioner: str = "grid",
    flow_gamma_mode: str = "head",
    flow_self_logit: bool = False,
    flow_nll_to_encoders: bool = False,
    sparsity_weight: float = 1e-4,
    exchange_threshold: float = 0.02,
    context_dilations: Sequence[int] | None = None,
    context_hidden: int | None = None,
    encoder: str = "conv",
    encoder_weights: str | None = None,
    encoder_name: str | None = None,
    text_encoder: str = "hash",
    text_model: str | None = None,
    text_finetune: bool = False,
    vocab_size: int = 4096,
    max_text_len: int = 64,
    text_dim: int = 300,
    pos_weight: Tensor | None = None,
) -> TaskModel:
    """Build a task model.

    task: "segmentation" | "translation" | "genre"; fusion: "mango" | "concat" | "tokenfusion" |
    "crossattn" | "a" | "b" (unimodal). ``in_channels`` = (C_a, C_b) image channels; for genre C_b is
    ignored (the plot is text). ``num_outputs`` = classes / output image channels / genres.
    ``image_size`` = H (square) or (H, W); the encoders reduce it by ``encoder_stride`` to (h, w), which
    must be divisible by ``2**scales``. ``width`` = encoder channels C (= flow channels);
    ``blocks`` = MANGO blocks / baseline blocks per scale. ``partitions``: MANGO ablation, a subset of
    ("mmca", "imca", "lica") (see :func:`layers_for_partitions`); ``layers`` overrides it with an explicit
    ``[(partition, variant), ...]`` block. ``text_encoder`` (genre): "hash" (word ids / raw strings ->
    :class:`TextEncoder`), "vector" (a (B, text_dim) feature vector, e.g. MM-IMDb's 300-d word2vec mean),
    "sentence" (frozen all-MiniLM-L6-v2, optional dependency), "pretrained" (a Hugging Face model from the
    local folder ``text_model``, mean-pooled, frozen unless ``text_finetune``: :class:`PretrainedTextEncoder`).
    ``encoder``: the image encoders, "conv" (:class:`ConvEncoder`, trained from scratch), "segformer" (MiT from
    the local folder ``encoder_weights``) or "timm" (model ``encoder_name``, weights file ``encoder_weights``),
    see :mod:`mango_lite.models.pretrained`; nothing is downloaded. ``embed`` = head width (default 4*width).
    ``flow_hidden`` / ``flow_qk_dim``: MANGO's coupling width and ICA query/key width (defaults 4*width and
    2*width at every scale; the flow's channels are 4*width, 8*width, ... so uncapped widths would grow
    the flow 4-16x per scale while the baselines grow 2x).
    ``flow_gamma`` (initial attention weight; ``None`` = the paper's fixed A = S + I),
    ``flow_learn_gamma``, ``flow_gamma_rate``, ``flow_alternate``, ``flow_positions``,
    ``flow_conditioner``: MANGO's ICA and coupling options (see :class:`~mango_lite.flows.MangoBlock`).
    ``flow_gamma_mode``: "head" (default: one gamma per ICA head), "token" or "modality" (a gamma per X2 row, a
    deviation from the paper: :mod:`mango_lite.flows.ica`); stored in ``config`` only when not "head", so
    configurations written before it still describe the same model.
    ``flow_self_logit``: a learnable per-head offset on every ICA's diagonal attention logits (a deviation from the
    paper: :mod:`mango_lite.flows.ica`); stored in ``config`` only when ``True``, likewise.
    ``flow_nll_to_encoders``: ``False`` (default): the NLL term trains the flow only (stop-gradient on the
    flow's input for the likelihood; the task loss still trains everything), so the encoders cannot lower it
    by shrinking or collapsing the features; costs a second backward pass through the flow in training (none
    when ``flow_weight`` is 0). ``True``: the paper's joint objective, the NLL's gradient reaches the encoders too.
    The defaults are the changes of the mechanisms study (``python -m mango_lite mechanisms``) that the
    selection split kept (``python -m mango_lite select-defaults``, results/selection/summary-defaults.md):
    alternating triangles, 2-D positional codes on Q/K, 3x3 grid conditioner, the NLL kept out of the
    encoders; gamma rate 1 (the study's rate 10 lost on the selection split's mean). The paper's layout is
    ``flow_alternate=False, flow_positions=False, flow_gamma_rate=1, flow_conditioner="tokens",
    flow_nll_to_encoders=True`` (and ``flow_gamma=None`` for its fixed
    A = S + I). ``flow_gamma=0.0, flow_learn_gamma=False`` is the no-attention control, ``flow_weight=0``
    the no-likelihood control.
    """
    task = task.lower()
    fusion = fusion.lower()
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {fusion!r}")
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
    H, W = _hw(image_size)
    if H % encoder_stride or W % encoder_stride:
        raise ValueError(f"image_size {(H, W)} must be divisible by encoder_stride {encoder_stride}")
    h, w = H // encoder_stride, W // encoder_stride
    if h % 2**scales or w % 2**scales:
        raise ValueError(
            f"the encoder feature map {(h, w)} (image {(H, W)} / stride {encoder_stride}) must be divisible by "
            f"2**scales = {2**scales}; use a larger image, a smaller encoder_stride or fewer scales"
        )
    if partitions is not None and fusion != "mango":
        raise ValueError(f"partitions is a MANGO ablation; fusion is {fusion!r}")
    use_a = fusion != "b"
    use_b = fusion != "a"

    def image_encoder(channels: int) -> nn.Module:
        return build_image_encoder(encoder, channels, width, encoder_stride, encoder_depth, encoder_weights,
                                   encoder_name)

    enc_a = image_encoder(in_channels[0]) if use_a else None
    tokenizer: HashTokenizer | None = None
    enc_b: nn.Module | None = None
    if use_b:
        if task == "genre":
            if text_encoder == "hash":
                tokenizer = HashTokenizer(vocab_size, max_text_len)
                enc_b = TextEncoder(vocab_size, width, h * w, grid=(h, w), max_len=max_text_len, heads=heads)
            elif text_encoder == "vector":
                enc_b = VectorEncoder(text_dim, width, h * w, grid=(h, w))
            elif text_encoder == "sentence":
                enc_b = SentenceEncoder(width, h * w, grid=(h, w))
            elif text_encoder == "pretrained":
                enc_b = PretrainedTextEncoder(text_model, width, h * w, grid=(h, w), finetune=text_finetune)
            else:
                raise ValueError(
                    f"text_encoder must be 'hash', 'vector', 'sentence' or 'pretrained', got {text_encoder!r}"
                )
        else:
            enc_b = image_encoder(in_channels[1])

    outs = scale_channels(width, scales)
    if fusion == "mango":
        if layers is None:
            layers = layers_for_partitions(partitions)
        flow_hidden = flow_hidden or 4 * width
        flow_qk_dim = flow_qk_dim or 2 * width
        fuse: nn.Module = MangoFusion(
            width, (h, w), scales, blocks, heads, outs, layers=layers, noise=flow_noise,
            hidden=flow_hidden, qk_dim=flow_qk_dim, gamma=flow_gamma, learn_gamma=flow_learn_gamma,
            gamma_rate=flow_gamma_rate, alternate=flow_alternate, positions=flow_positions,
            conditioner=flow_conditioner, gamma_mode=flow_gamma_mode, self_logit=bool(flow_self_logit),
            # with weight 0 no NLL gradient reaches anything: skip the flow-only backward pass
            nll_to_encoders=flow_nll_to_encoders or not flow_weight,
        )
    elif fusion == "concat" and context_dilations:  # concat with a large receptive field (context_fusion.py)
        fuse = ContextConcatFusion(width, (h, w), scales, blocks, outs, dilations=tuple(context_dilations),
                                   hidden=context_hidden)
    elif fusion == "concat":
        fuse = ConcatFusion(width, (h, w), scales, blocks, outs)
    elif fusion == "tokenfusion":
        fuse = TokenFusion(width, (h, w), scales, blocks, heads, outs, threshold=exchange_threshold)
    elif fusion == "crossattn":
        fuse = CrossAttentionFusion(width, (h, w), scales, blocks, heads, outs)
    else:
        fuse = UnimodalFusion(fusion, width, (h, w), scales, blocks, outs)

    embed = embed or 4 * width
    if task == "segmentation":
        head: nn.Module = SegformerHead(outs, embed, num_outputs)
    elif task == "translation":
        head = TranslationHead(outs, embed, num_outputs, stride=encoder_stride * 2)
    else:
        head = GenreHead(outs, num_outputs, hidden=max(embed, 64))

    config = dict(
        task=task, fusion=fusion, in_channels=tuple(in_channels), num_outputs=num_outputs, image_size=(H, W),
        width=width, blocks=blocks, scales=scales, heads=heads, flow_weight=flow_weight,
        partitions=None if partitions is None else tuple(partitions),
        layers=None if layers is None else [tuple(x) for x in layers], encoder_stride=encoder_stride,
        encoder_depth=encoder_depth, embed=embed, flow_noise=flow_noise, flow_hidden=flow_hidden,
        flow_qk_dim=flow_qk_dim, flow_gamma=flow_gamma, flow_learn_gamma=flow_learn_gamma,
        flow_gamma_rate=flow_gamma_rate, flow_alternate=flow_alternate, flow_positions=flow_positions,
        flow_conditioner=flow_conditioner, sparsity_weight=sparsity_weight,
        exchange_threshold=exchange_threshold,
        context_dilations=None if not context_dilations else tuple(int(d) for d in context_dilations),
        context_hidden=None if context_hidden is None else int(context_hidden), text_encoder=text_encoder, vocab_size=vocab_size,
        max_text_len=max_text_len, text_dim=text_dim, flow_nll_to_encoders=bool(flow_nll_to_encoders),
        encoder=str(encoder).lower(), encoder_weights=None if encoder_weights is None else str(encoder_weights),
        encoder_name=encoder_name, text_model=None if text_model is None else str(text_model),
        text_finetune=bool(text_finetune),
    )
    if fusion == "mango" and flow_gamma_mode != "head":
        config["flow_gamma_mode"] = flow_gamma_mode
    if fusion == "mango" and flow_self_logit:
        config["flow_self_logit"] = True
    return TaskModel(
        task, fusion, enc_a, enc_b, fuse, head, flow_weight=flow_weight, sparsity_weight=sparsity_weight,
        tokenizer=tokenizer, pos_weight=pos_weight, config=config,
    )
