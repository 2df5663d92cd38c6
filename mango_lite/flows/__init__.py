"""Invertible building blocks of MANGO. Convention: ``z, logdet = m(x)``; ``x, -logdet = m.inverse(z)``."""

from .actnorm import ActNorm
from .base import FlowSequence, InvertibleModule, standard_normal_log_prob
from .block import MangoBlock, layers_for, use_activation_checkpointing
from .config import DEFAULT_LAYERS, FlowConfig
from .coupling import Coupling
from .cross_coupling import CrossModalCoupling, CrossModalGlow, live_parameter_count
from .flow import MangoFlow
from .ica import ICA, InvertibleCrossAttention, record_attention, use_fused_attention
from .lu import InvertibleLinearLU
from .multiscale import MultiscaleEncoding, MultiscaleMango, from_tokens, to_tokens
from .partition import (
    PARTITIONS,
    IMCAPartition,
    LICAPartition,
    MMCAPartition,
    Partition,
    make_partition,
)
from .perturb import perturb_parameters
from .reshape import Split, Squeeze, Unsqueeze, squeeze2d, unsqueeze2d

__all__ = [
    "ActNorm", "Coupling", "CrossModalCoupling", "CrossModalGlow", "DEFAULT_LAYERS", "FlowConfig", "FlowSequence", "ICA",
    "IMCAPartition", "InvertibleCrossAttention",
    "InvertibleLinearLU", "InvertibleModule", "LICAPartition", "MMCAPartition", "MangoBlock", "MangoFlow",
    "MultiscaleEncoding", "MultiscaleMango", "PARTITIONS", "Partition", "Split", "Squeeze", "Unsqueeze",
    "from_tokens", "layers_for", "live_parameter_count", "make_partition", "perturb_parameters", "record_attention",
    "squeeze2d", "standard_normal_log_prob", "use_activation_checkpointing", "use_fused_attention",
    "to_tokens", "unsqueeze2d",
]
