"""The three task models - encoders -> fusion -> head - and their losses.

* ``segmentation``: RGB (B, 3, H, W) and depth (B, 1 or 3, H, W) float -> logits (B, classes, H, W);
  cross-entropy with ignore_index 255.
* ``translation``: two Taskonomy domains (B, C_a, H, W), (B, C_b, H, W) float -> image
  (B, out_channels, H, W) in [-1, 1] (tanh); L1 to a target scaled to [-1, 1].
* ``genre``: poster (B, 3, H, W) float and plot (list of str, word ids (B, L) int64, or a vector (B, F))
  -> logits (B, 23); BCE with logits (optional ``pos_weight``).

Total loss = task loss + ``flow_weight`` * flow bits/dim (MANGO; the NLL term of the paper's objective)
+ ``sparsity_weight`` * score L1 (TokenFusion). Translation's task loss is the L1 reconstruction alone,
with no adversarial term: the pix2pix recipe of TokenFusion adds an adversarial loss (L1 weight 100 vs
GAN 1); a discriminator is left out here to keep CPU runs small and stable, so FID/KID of these models are
not comparable to GAN-trained ones (documented in the reproduction tables).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..tasks import CLASS_MAP, IMAGE, LABELS, get_task
from .config import FUSIONS, TASKS, ModelConfig
from .context_fusion import ContextConcatFusion
from .fusion import (
    ConcatFusion,
    CrossAttentionFusion,
    FusionOutput,
    MangoFusion,
    TokenFusion,
    UnimodalFusion,
    scale_channels,
)
from .heads import GenreHead, SegformerHead, TranslationHead
from .pretrained import PretrainedTextEncoder, build_image_encoder
from .text import HashTokenizer, SentenceEncoder, TextEncoder, VectorEncoder

__all__ = ["TASKS", "FUSIONS", "ModelConfig", "ModelOutput", "TaskModel", "build_model", "count_parameters",
           "IGNORE_INDEX"]

IGNORE_INDEX = 255


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
        config: ModelConfig | None = None,
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
        self.config = config  # what build_model built it from (stored in checkpoints as config.to_dict())
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
        if not get_task(self.task).spatial:
            return None
        ref = batch_a if self.encoder_a is not None else batch_b
        return int(ref.shape[-2]), int(ref.shape[-1])

    def forward(self, batch_a: Any, batch_b: Any = None) -> ModelOutput:
        fa, fb = self.encode(batch_a, batch_b)
        return self.decode(fa, fb, self.out_size(batch_a, batch_b))

    # -- loss ------------------------------------------------------------------------------------
    def task_loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Cross-entropy (ignore 255) / L1 / BCE-with-logits by the task's output kind, mean over valid elements."""
        return _TASK_LOSSES[get_task(self.task).output](self, pred, target)

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


# ------------------------------------------------------------------------ per output kind
def _class_map_loss(model: TaskModel, pred: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy over the labelled pixels (label 255 ignored)."""
    if target.dim() == 4 and target.shape[1] == 1:
        target = target[:, 0]
    if target.shape != (pred.shape[0], *pred.shape[2:]):
        raise ValueError(
            f"{model.task} target should be (B, H, W) = {(pred.shape[0], *pred.shape[2:])}, got {tuple(target.shape)}"
        )
    target = target.long()
    valid = target != IGNORE_INDEX
    bad = valid & ((target < 0) | (target >= pred.shape[1]))
    if bool(bad.any()):
        raise ValueError(
            f"{model.task} labels must be in [0, {pred.shape[1]}) or {IGNORE_INDEX}, "
            f"got values {torch.unique(target[bad])[:10].tolist()}"
        )
    if not bool(valid.any()):  # every pixel ignored: zero loss that still has a graph
        return pred.sum() * 0.0
    return F.cross_entropy(pred, target, ignore_index=IGNORE_INDEX)


def _image_loss(model: TaskModel, pred: Tensor, target: Tensor) -> Tensor:
    """L1 against a target image in [-1, 1] (the head ends with tanh)."""
    if target.shape != pred.shape:
        raise ValueError(f"{model.task} target should have shape {tuple(pred.shape)}, got {tuple(target.shape)}")
    if target.numel() and float(target.detach().abs().max()) > 1.0 + 1e-4:
        raise ValueError(
            f"{model.task} targets must be scaled to [-1, 1] (the head ends with tanh), got max |value| "
            f"{float(target.detach().abs().max()):.3g}"
        )
    return F.l1_loss(pred, target.to(pred.dtype))


def _labels_loss(model: TaskModel, pred: Tensor, target: Tensor) -> Tensor:
    """Binary cross-entropy with logits per label (``pos_weight`` for rare labels)."""
    if target.shape != pred.shape:
        raise ValueError(f"{model.task} target should be multi-hot (B, {pred.shape[1]}), got {tuple(target.shape)}")
    return F.binary_cross_entropy_with_logits(pred, target.to(pred.dtype), pos_weight=model.pos_weight)


_TASK_LOSSES = {CLASS_MAP: _class_map_loss, IMAGE: _image_loss, LABELS: _labels_loss}
#: the head of each output kind, from the model configuration and the fused features' channels per scale
_HEADS = {
    CLASS_MAP: lambda c, outs: SegformerHead(outs, c.embed, c.num_outputs),
    IMAGE: lambda c, outs: TranslationHead(outs, c.embed, c.num_outputs, stride=c.encoder_stride * 2),
    LABELS: lambda c, outs: GenreHead(outs, c.num_outputs, hidden=max(c.embed, 64)),
}



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


def build_model(config: ModelConfig, *, pos_weight: Tensor | None = None) -> TaskModel:
    """Build the task model ``config`` describes (:class:`~mango_lite.models.ModelConfig`: task, fusion, sizes,
    MANGO's flow options, encoders). ``pos_weight``: the genre BCE's per-genre positive weights, (num_outputs,)
    (data-dependent, so not part of the configuration).

    The flow defaults are the changes of the mechanisms study (``python -m mango_lite mechanisms``) that the
    selection split kept (``python -m mango_lite select-defaults``, results/selection/summary-defaults.md):
    alternating triangles, 2-D positional codes on Q/K, 3x3 grid conditioner, the NLL kept out of the
    encoders (it trains the flow only, which costs a nested pass back through the flow in training, input
    gradients only, none when ``flow_weight`` is 0); gamma rate 1 (the study's rate 10 lost on the selection split's mean).
    :meth:`ModelConfig.paper_layout` gives the paper's layout.
    """
    if not isinstance(config, ModelConfig):
        raise TypeError(f"build_model expects a ModelConfig, got {type(config).__name__}; write "
                        "build_model(ModelConfig(task=..., fusion=..., num_outputs=..., image_size=...))")
    c = config
    h, w = c.feature_size
    use_a = c.fusion != "b"
    use_b = c.fusion != "a"

    def image_encoder(channels: int) -> nn.Module:
        return build_image_encoder(c.encoder, channels, c.width, c.encoder_stride, c.encoder_depth,
                                   c.encoder_weights, c.encoder_name)

    enc_a = image_encoder(c.in_channels[0]) if use_a else None
    tokenizer: HashTokenizer | None = None
    enc_b: nn.Module | None = None
    if use_b:
        if get_task(c.task).text_b:
            tokenizer, enc_b = _text_encoder(c)
        else:
            enc_b = image_encoder(c.in_channels[1])

    outs = scale_channels(c.width, c.scales)
    size = (h, w)
    if c.fusion == "mango":
        # with weight 0 no NLL gradient reaches anything: skip the flow-only backward pass
        flow = c.flow.replace(nll_to_encoders=c.flow_nll_to_encoders or not c.flow_weight)
        fuse: nn.Module = MangoFusion(c.width, size, c.scales, c.blocks, outs, config=flow)
    elif c.fusion == "concat" and c.context_dilations:  # concat with a large receptive field (context_fusion.py)
        fuse = ContextConcatFusion(c.width, size, c.scales, c.blocks, outs, dilations=c.context_dilations,
                                   hidden=c.context_hidden)
    elif c.fusion == "concat":
        fuse = ConcatFusion(c.width, size, c.scales, c.blocks, outs)
    elif c.fusion == "tokenfusion":
        fuse = TokenFusion(c.width, size, c.scales, c.blocks, c.heads, outs, threshold=c.exchange_threshold)
    elif c.fusion == "crossattn":
        fuse = CrossAttentionFusion(c.width, size, c.scales, c.blocks, c.heads, outs)
    else:
        fuse = UnimodalFusion(c.fusion, c.width, size, c.scales, c.blocks, outs)

    head = _HEADS[get_task(c.task).output](c, outs)
    return TaskModel(
        c.task, c.fusion, enc_a, enc_b, fuse, head, flow_weight=c.flow_weight, sparsity_weight=c.sparsity_weight,
        tokenizer=tokenizer, pos_weight=pos_weight, config=c,
    )


def _text_encoder(c: ModelConfig) -> tuple[HashTokenizer | None, nn.Module]:
    """The genre model's plot encoder (and its tokenizer for raw text), sized to the image features' grid."""
    h, w = c.feature_size
    if c.text_encoder == "hash":
        tokenizer = HashTokenizer(c.vocab_size, c.max_text_len)
        return tokenizer, TextEncoder(c.vocab_size, c.width, h * w, grid=(h, w), max_len=c.max_text_len,
                                      heads=c.heads)
    if c.text_encoder == "vector":
        return None, VectorEncoder(c.text_dim, c.width, h * w, grid=(h, w))
    if c.text_encoder == "sentence":
        return None, SentenceEncoder(c.width, h * w, grid=(h, w))
    if c.text_encoder == "pretrained":
        return None, PretrainedTextEncoder(c.text_model, c.width, h * w, grid=(h, w), finetune=c.text_finetune)
    raise ValueError(f"text_encoder must be 'hash', 'vector', 'sentence' or 'pretrained', got {c.text_encoder!r}")
