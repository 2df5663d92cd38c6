"""Numerical guards: every exponentiated scale is bounded, and a trained deep flow stays invertible in
float32. (The NaN/inf guard of the training loop is tested in test_training.py.)"""

from __future__ import annotations

import math

import pytest
import torch

from mango_lite.flows import ActNorm, InvertibleLinearLU, MangoFlow, Split
from mango_lite.flows.base import soft_clamp, soft_clamp_inverse
from tests.conftest import jacobian_logdet

D64 = torch.float64


def test_soft_clamp_is_the_identity_near_zero_bounded_and_inverted():
    x = torch.linspace(-50, 50, 1001, dtype=D64)
    y = soft_clamp(x, 3.0)
    assert y.abs().max() < 3.0 and torch.all(y[1:] > y[:-1])  # bounded and strictly increasing
    small = torch.linspace(-0.05, 0.05, 11, dtype=D64)
    assert torch.allclose(soft_clamp(small, 3.0), small, atol=2e-5)
    inside = torch.linspace(-2.9, 2.9, 59, dtype=D64)
    assert torch.allclose(soft_clamp(soft_clamp_inverse(inside, 3.0), 3.0), inside, atol=1e-12)
    # beyond the bound the initialiser stores the nearest reachable value instead of inf
    assert torch.isfinite(soft_clamp_inverse(torch.tensor([-9.0, 9.0], dtype=D64), 3.0)).all()


def _three_checks(module, x, atol=1e-9):
    z, ld = module(x)
    xr, ld_inv = module.inverse(z)
    xr = torch.cat(xr, -1) if isinstance(xr, tuple) else xr
    assert torch.allclose(xr, x, atol=atol), float((xr - x).abs().max())
    assert torch.allclose(ld + ld_inv, torch.zeros_like(ld), atol=atol)

    def flat(v):
        out = module(v)[0]
        return torch.cat([t.reshape(1, -1) for t in out], 1) if isinstance(out, tuple) else out

    assert torch.allclose(ld, jacobian_logdet(flat, x), atol=1e-7)
    return z, ld


@pytest.mark.parametrize("raw", [-40.0, 40.0])
def test_actnorm_scale_is_bounded_and_logdet_exact_beyond_the_bound(raw):
    m = ActNorm(3).double()
    m.initialized.fill_(True)
    with torch.no_grad():
        m.log_scale.fill_(raw)
        m.bias.normal_()
    x = torch.randn(2, 4, 3, dtype=D64)
    z, ld = _three_checks(m, x, atol=1e-9 * math.exp(8))
    # the applied scale is exp(+-8) at most, whatever the stored parameter
    assert torch.all(m.scale_log().abs() < m.max_log_scale)
    assert torch.all(ld.abs() <= 4 * 3 * m.max_log_scale)
    assert torch.isfinite(z).all()


def test_actnorm_data_init_standardises_even_a_tiny_batch_scale():
    m = ActNorm(2)
    x = 1e-2 * torch.randn(64, 5, 2) + 3.0
    z, _ = m(x)
    flat = z.reshape(-1, 2)
    assert torch.allclose(flat.mean(0), torch.zeros(2), atol=1e-4)
    assert torch.allclose(flat.std(0, unbiased=False), torch.ones(2), atol=1e-3)


@pytest.mark.parametrize("axis", ["channels", "tokens"])
def test_lu_diagonal_is_bounded_and_the_orthogonal_start_is_kept(axis):
    m = InvertibleLinearLU(6, axis=axis).double()
    w = m.weight()
    assert torch.allclose(w @ w.T, torch.eye(6, dtype=D64), atol=1e-6)  # the clamp keeps the start
    with torch.no_grad():
        m.log_s.copy_(torch.tensor([60.0, -60.0, 3.0, -3.0, 0.5, 0.0]))
        m.lower.normal_(std=0.2)
        m.upper.normal_(std=0.2)
    assert torch.all(m.log_abs_diag().abs() < m.max_log_s)
    x = torch.randn(2, 6, 6, dtype=D64)
    _three_checks(m, x, atol=1e-6)


def test_split_sigma_is_bounded_for_extreme_inputs():
    m = Split(4).double()
    with torch.no_grad():
        m.prior.weight.normal_(std=0.5)
        m.prior.bias.normal_(std=0.5)
    x = torch.randn(2, 3, 4, dtype=D64)
    _three_checks(m, x)
    big = 1e4 * torch.randn(2, 3, 4, dtype=D64)  # log sigma of order 1e4 before the clamp
    (keep, eps), ld = m(big)
    assert torch.isfinite(eps).all() and torch.all(ld.abs() <= 3 * 2 * m.max_log_sigma)
    _, log_sigma = m._stats(keep)
    assert log_sigma.abs().max() <= m.max_log_sigma  # saturates at the bound, never beyond


def test_trained_twelve_block_flow_is_invertible_in_float32():
    """A 12-block MangoFlow (96 ICA layers) trained by maximum likelihood for 200 Adam steps on two
    correlated modalities: float32 round trip and log-det cancellation still hold after training has
    moved every parameter (gamma, temperature, LU, ActNorm, couplings) away from its start."""
    torch.manual_seed(0)
    t, d = 4, 4
    flow = MangoFlow(d, t, blocks=12, hidden=8)
    start = {k: v.detach().clone() for k, v in flow.state_dict().items()}

    def data(n: int) -> torch.Tensor:
        a = torch.randn(n, t, d)
        b = 0.8 * a.flip(1) + 0.6 * torch.randn(n, t, d)
        return torch.cat([a, b], 1)

    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    first = None
    for _ in range(200):
        z, ld = flow(data(32))
        nll = (0.5 * z.square().sum((1, 2)) - ld).mean() / (2 * t * d)
        first = float(nll.detach()) if first is None else first
        opt.zero_grad()
        nll.backward()
        opt.step()
    assert float(nll.detach()) < first - 0.2  # it did learn the correlation
    moved = [k for k, v in flow.state_dict().items() if v.is_floating_point() and not torch.equal(v, start[k])]
    assert any("gate" in k for k in moved) and any("log_s" in k for k in moved)
    flow.eval()
    x = data(64)
    with torch.no_grad():
        z, ld = flow(x)
        xr, ld_inv = flow.inverse(z)
    assert float((xr - x).abs().max() / x.abs().max()) < 1e-4
    assert float((ld + ld_inv).abs().max()) < 1e-3 * max(1.0, float(ld.abs().max()))
