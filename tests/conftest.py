"""Shared test fixtures: float64 by default for invertibility checks, seeded RNG, quiet threads."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("MANGO_LITE_PRESET", "quick")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def jacobian_logdet(fn, x: torch.Tensor) -> torch.Tensor:
    """slogdet of the autograd Jacobian of ``fn`` (flat -> flat) at each sample of ``x``: (B,)."""
    out = []
    for xi in x:
        flat = xi.reshape(-1)
        jac = torch.autograd.functional.jacobian(lambda v: fn(v.view(1, *xi.shape)).reshape(-1), flat)
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign.abs() > 0, "Jacobian is singular"
        out.append(logabs)
    return torch.stack(out)
