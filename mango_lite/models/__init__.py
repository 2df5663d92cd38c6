"""Task models: per-modality encoders -> fusion (MANGO or a baseline) -> task head.

Quick start::

    from mango_lite.models import ModelConfig, build_model
    config = ModelConfig(task="segmentation", fusion="mango", in_channels=(3, 1), num_outputs=40, image_size=64,
                         width=16, blocks=1, scales=2, flow_weight=0.01)
    model = build_model(config)
    out = model(rgb, depth)            # out.pred (B, 40, 64, 64), out.aux["flow_bpd"]
    loss, parts = model.loss(out, labels)

Fusions: "mango", "concat", "tokenfusion", "crossattn", and unimodal "a" / "b" - same encoders and
heads, so a comparison isolates the fusion. Interpretability: :mod:`mango_lite.models.interpret`.
"""

from .config import ModelConfig
from .encoders import ConvBlock, ConvEncoder, FlowStandardize, group_norm
from .fusion import (
    ConcatFusion,
    CrossAttentionFusion,
    FusionOutput,
    MangoFusion,
    MultiHeadAttention,
    TokenFusion,
    UnimodalFusion,
    layers_for_partitions,
    scale_channels,
)
from .heads import GenreHead, SegformerHead, TranslationHead
from .interpret import (
    AttentionRecord,
    attention_maps,
    cross_modal_offsets,
    cross_modal_share,
    modality_contribution,
    token_scores,
)
from .pretrained import (
    IMAGE_ENCODERS,
    PretrainedTextEncoder,
    SegformerEncoder,
    TimmEncoder,
    build_image_encoder,
    split_pretrained_parameters,
)
from .task_models import FUSIONS, IGNORE_INDEX, TASKS, ModelOutput, TaskModel, build_model, count_parameters
from .text import BOS_ID, PAD_ID, HashTokenizer, SentenceEncoder, TextEncoder, VectorEncoder

__all__ = [
    "AttentionRecord", "BOS_ID", "IMAGE_ENCODERS", "PretrainedTextEncoder", "SegformerEncoder", "ConcatFusion",
    "ConvBlock", "ConvEncoder", "CrossAttentionFusion", "FUSIONS",
    "FlowStandardize", "FusionOutput", "GenreHead", "HashTokenizer", "IGNORE_INDEX", "MangoFusion",
    "ModelConfig", "ModelOutput", "MultiHeadAttention", "PAD_ID", "SegformerHead", "SentenceEncoder", "TASKS", "TaskModel",
    "TextEncoder", "TimmEncoder", "TokenFusion", "TranslationHead", "UnimodalFusion", "VectorEncoder",
    "attention_maps", "build_image_encoder", "build_model", "split_pretrained_parameters", "count_parameters",
    "cross_modal_offsets", "cross_modal_share", "group_norm",
    "layers_for_partitions", "modality_contribution", "scale_channels", "token_scores",
]
