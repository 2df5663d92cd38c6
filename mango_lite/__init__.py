"""mango_lite: MANGO (multimodal attention-based normalizing flow fusion), derived, verified, reproduced.

Public API (stable)::

    from mango_lite import ICA, FlowConfig, MangoBlock, MangoFlow, MultiscaleMango
    ICA(dim=64, tokens=128, partition="imca", variant=2, heads=1)
    MangoBlock(dim=64, tokens=128)                                # the paper's block (FlowConfig())
    MangoFlow(dim=64, tokens=128, blocks=12, config=FlowConfig.paper(heads=4))
    MultiscaleMango(channels=16, size=32, config=FlowConfig.recommended())

Convention: ``z, logdet = module(x)`` (data -> latent, logdet of shape (B,)) and
``x, logdet_inv = module.inverse(z)`` with ``logdet_inv == -logdet``.
"""

# the notebooks' and scripts' get_preset: the named preset, else the environment's (MANGO_LITE_PRESET, CI);
# the library's own, mango_lite.presets.get_preset, reads no environment variable
from .environment import get_preset
from .flows import (
    ICA,
    ActNorm,
    Coupling,
    FlowConfig,
    InvertibleCrossAttention,
    InvertibleLinearLU,
    MangoBlock,
    MangoFlow,
    MultiscaleMango,
    Split,
    Squeeze,
)
from .models.config import ModelConfig
from .models.fusion import FlowOnlyLikelihood
from .presets import Preset
from .utils import seed_everything

__version__ = "0.1.0"

__all__ = [
    "ICA", "ActNorm", "Coupling", "FlowConfig", "FlowOnlyLikelihood", "InvertibleCrossAttention", "InvertibleLinearLU",
    "MangoBlock", "MangoFlow", "ModelConfig", "MultiscaleMango", "Preset", "Split", "Squeeze", "get_preset",
    "seed_everything", "__version__",
]
