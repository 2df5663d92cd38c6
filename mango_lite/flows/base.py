"""The contract every invertible module follows.

Direction convention (one, everywhere in mango_lite)::

    z, logdet = module(x)            # data -> latent; logdet = log|det dz/dx| per sample, shape (B,)
    x, logdet_inv = module.inverse(z)   # latent -> data; logdet_inv == -logdet

``logdet`` is summed over every dimension of a sample (not averaged), so stacking modules adds them.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


def soft_clamp(x: Tensor, bound: float) -> Tensor:
    """``bound * tanh(x / bound)``: equal to x near 0 (slope 1), never beyond +-bound.

    Every exponentiated scale in mango_lite goes through it, so no single layer can scale by more than
    ``exp(bound)`` or less than ``exp(-bound)``: a few wild parameters then cost accuracy, not an
    overflow to inf/NaN in a deep stack (the coupling's form, as in RealNVP / Glow implementations)."""
    return bound * torch.tanh(x / bound)


def soft_clamp_inverse(y: Tensor, bound: float) -> Tensor:
    """The raw value whose :func:`soft_clamp` is ``y`` (``y`` first pulled inside 99.9 % of the bound):
    what an initialiser stores to start the clamped quantity at ``y``."""
    limit = 0.999 * bound
    return bound * torch.atanh(y.clamp(-limit, limit) / bound)


class InvertibleModule(nn.Module):
    """Base class: subclasses implement :meth:`forward` and :meth:`inverse`.

    ``check_inputs`` controls the (cheap but not free) validation of shapes and finiteness; containers
    switch it off for their children, so a 96-layer stack validates its input once, at the top.
    """

    check_inputs: bool = True

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError


def silence_children(module: nn.Module) -> None:
    """Turn off input checks of every invertible module below ``module`` (not ``module`` itself)."""
    for child in module.modules():
        if child is not module and isinstance(child, InvertibleModule):
            child.check_inputs = False


class FlowSequence(InvertibleModule):
    """Composition ``m_n o ... o m_1``; log-dets add up, the inverse runs the list backwards."""

    def __init__(self, modules: Iterable[InvertibleModule]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(modules)
        silence_children(self)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, i: int) -> InvertibleModule:
        return self.layers[i]  # type: ignore[return-value]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        logdet = z.new_zeros(z.shape[0])
        for layer in reversed(self.layers):
            z, ld = layer.inverse(z)
            logdet = logdet + ld
        return z, logdet


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over all but the batch axis: (B, ...) -> (B,)."""
    const = 0.5 * torch.log(torch.tensor(2 * torch.pi, dtype=z.dtype, device=z.device))
    return (-0.5 * z.pow(2) - const).flatten(1).sum(1)
