"""Moving a flow's parameters away from their initial values, for checks.

Many flow layers start as the identity (zero-initialised coupling outputs, ActNorm before its data-dependent
init, the split prior at zero, a small attention gate). A log-det check at that start passes even when a
term is missing, because the missing term is exactly 0 there. :func:`perturb_parameters` is what every
Jacobian check in mango_lite (tests, the GPU window's flow checks) applies first.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["perturb_parameters"]


def perturb_parameters(module: nn.Module, std: float = 0.3, generator: torch.Generator | None = None) -> nn.Module:
    """Add ``std * N(0, 1)`` to every parameter of ``module`` in place and return it.

    An ICA gate (and its per-row offsets) is moved by ``std`` in units of the argument of its tanh (``gamma_rate *
    gate``), like every
    other scale, so a fast gate rate does not turn the perturbation into a saturated gamma. The diagonal logit
    offset of ``self_logit`` (``self_logit_offset``, zero at init) is a logit like those of Q K^T / tau and
    moves by ``std``, like the log-temperature: S's diagonal changes, nothing saturates. ``generator``
    (a CPU generator) makes the draw independent of the global RNG; ``None`` uses the global RNG."""
    from .ica import InvertibleCrossAttention

    # the gate and the per-row gamma offsets (gamma_mode "token" / "modality") enter tanh(gamma_rate * ...);
    # the token read (gamma_proj) does not
    rates = {id(p): m.gamma_rate for m in module.modules() if isinstance(m, InvertibleCrossAttention)
             for name in ("gate", "gamma_row", "gamma_modality")
             if isinstance(p := getattr(m, name, None), nn.Parameter)}
    with torch.no_grad():
        for p in module.parameters():
            if generator is None:
                noise = torch.randn(p.shape, dtype=p.dtype, device=p.device)
            else:
                noise = torch.randn(p.shape, generator=generator, dtype=torch.float64).to(p.device, p.dtype)
            p.add_(std / rates.get(id(p), 1.0) * noise)
    return module
