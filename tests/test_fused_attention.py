"""ICA's fused forward (S @ X2 and S's diagonal from fused attention kernels, S never formed) against the
materialised reference: values, log-dets and every gradient in float64, parameters perturbed away from their
initial values, every partition and variant, both triangles, every gamma mode, positions on and off; and the
three flow checks of the fused layer (round trip, log-det cancellation, log-det = slogdet of the Jacobian)."""

from __future__ import annotations

import pytest
import torch

from mango_lite import ICA, MultiscaleMango
from mango_lite.flows import fused_attention, perturb_parameters, use_fused_attention
from mango_lite.flows.fused_attention import masked_attention_terms, masked_lse_reference
from tests.conftest import jacobian_logdet

D64 = torch.float64
PARTITION_VARIANTS = {"mmca": (0, 1), "imca": (0, 1, 2, 3), "lica": (0,)}


def _pair(partition: str, variant: int, triangle: str, mode: str, grid=None, tokens: int = 6, dim: int = 4, heads: int = 2,
          qk_dim=None, seed: int = 0) -> tuple[ICA, ICA]:
    torch.manual_seed(seed)
    kw = dict(grid=grid) if grid else {}
    if qk_dim:
        kw["qk_dim"] = qk_dim
    ref = ICA(dim=dim, tokens=tokens, partition=partition, variant=variant, heads=heads, triangle=triangle,
              gamma_mode=mode, **kw).double()
    perturb_parameters(ref, 0.3, torch.Generator().manual_seed(seed + 1))
    fused = ICA(dim=dim, tokens=tokens, partition=partition, variant=variant, heads=heads, triangle=triangle,
                gamma_mode=mode, **kw).double()
    fused.load_state_dict(ref.state_dict())
    use_fused_attention(fused)
    return ref, fused


def _values_and_grads(m: ICA, x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list]:
    x = x.clone().requires_grad_()
    y, ld = m(x)
    ((y * w).sum() + (ld * torch.arange(1, len(ld) + 1, dtype=ld.dtype)).sum()).backward()
    return y.detach(), ld.detach(), [x.grad] + [p.grad for p in m.parameters()]


@pytest.mark.parametrize("mode", ["head", "token", "modality"])
@pytest.mark.parametrize("triangle", ["upper", "lower"])
@pytest.mark.parametrize("partition", ["mmca", "imca", "lica"])
def test_fused_forward_equals_the_materialised_one_with_its_gradients(partition, triangle, mode):
    for variant in PARTITION_VARIANTS[partition]:
        for grid in (None, (2, 3)):
            ref, fused = _pair(partition, variant, triangle, mode, grid=grid)
            g = torch.Generator().manual_seed(7)
            x, w = torch.randn(3, 12, 4, dtype=D64, generator=g), torch.randn(3, 12, 4, dtype=D64, generator=g)
            y0, ld0, g0 = _values_and_grads(ref, x, w)
            y1, ld1, g1 = _values_and_grads(fused, x, w)
            assert torch.allclose(y1, y0, atol=1e-12, rtol=0) and torch.allclose(ld1, ld0, atol=1e-12, rtol=0)
            for a, b in zip(g0, g1):
                assert (a is None) == (b is None)
                if a is not None:
                    assert torch.allclose(b, a, atol=1e-10, rtol=1e-10), (
                        f"{partition}{variant} {triangle} {mode}: {(b - a).abs().max():.3g}")


def test_fused_layer_three_checks_with_a_narrow_query_key_width():
    """qk width below the value width (the kernel that returns the log-sum-exp needs equal widths for its own
    product, S K, so nothing depends on them matching)."""
    ref, fused = _pair("imca", 1, "upper", "token", tokens=6, dim=8, heads=2, qk_dim=2)
    assert fused.qk_head_dim != fused.head_dim
    x = torch.randn(2, 12, 8, dtype=D64, generator=torch.Generator().manual_seed(3))
    z, ld = fused(x)
    xr, ld_inv = fused.inverse(z)
    assert torch.allclose(xr, x, atol=1e-10, rtol=0) and torch.allclose(ld_inv, -ld, atol=1e-10, rtol=0)
    assert torch.allclose(ld, jacobian_logdet(lambda v: fused(v)[0], x), atol=1e-9, rtol=1e-9)
    assert torch.allclose(ld, ref(x)[1], atol=1e-12, rtol=0)


@pytest.mark.parametrize("upper", [True, False])
def test_attention_terms_are_the_product_and_the_diagonal_of_the_masked_softmax(upper):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 9, d, dtype=D64, generator=g, requires_grad=True) for d in (4, 4, 5))
    sv, diag = masked_attention_terms(q, k, v, upper)
    logits = q @ k.transpose(-1, -2)
    keep = torch.ones(9, 9, dtype=torch.bool)
    keep = keep.triu() if upper else keep.tril()
    s = torch.softmax(logits.masked_fill(~keep, float("-inf")), -1)
    assert torch.allclose(sv, s @ v, atol=1e-12) and torch.allclose(diag, torch.diagonal(s, dim1=-2, dim2=-1), atol=1e-12)
    # the chunked fallback's log-sum-exp (devices whose kernels do not return it)
    lse = masked_lse_reference(q.detach(), k.detach(), chunk=4)
    tril = torch.ones(9, 9, dtype=torch.bool).tril()
    assert torch.allclose(lse, (q @ k.transpose(-1, -2)).masked_fill(~tril, float("-inf")).logsumexp(-1), atol=1e-12)


def _materialised_terms(q, k, v, upper):
    logits = q @ k.transpose(-1, -2)
    t = logits.shape[-1]
    keep = torch.ones(t, t, dtype=torch.bool)
    s = torch.softmax(logits.masked_fill(~(keep.triu() if upper else keep.tril()), float("-inf")), -1)
    return s @ v, torch.diagonal(s, dim1=-2, dim2=-1)


@pytest.mark.parametrize("path", ["single pass", "portable"])
@pytest.mark.parametrize("weights", ["product and diagonal", "product only", "diagonal only"])
@pytest.mark.parametrize("widths", [(4, 4), (3, 5), (6, 2)])
def test_attention_terms_have_the_gradients_of_the_materialised_softmax(path, weights, widths, monkeypatch):
    """Both routes (one fused forward and one fused backward with lse's gradient folded into it, and the
    portable two-product one) give the gradients of S V and of S's diagonal, alone and together, in float64;
    the query/key width may differ from the values'."""
    if path == "portable":
        monkeypatch.setattr(fused_attention, "_single_pass_terms", lambda q, k, v: None)
    elif fused_attention._single_pass_terms(*(torch.zeros(1, 1, 2, 2, dtype=D64) for _ in range(3))) is None:
        pytest.skip("this build has no CPU flash kernel pair")
    g = torch.Generator().manual_seed(5)
    d_qk, d_v = widths
    q, k, v = (torch.randn(2, 3, 9, d, dtype=D64, generator=g, requires_grad=True) for d in (d_qk, d_qk, d_v))
    w_sv, w_diag = torch.randn(2, 3, 9, d_v, dtype=D64, generator=g), torch.randn(2, 3, 9, dtype=D64, generator=g)
    use_sv, use_diag = weights != "diagonal only", weights != "product only"
    for upper in (True, False):
        results = []
        for terms in (masked_attention_terms, _materialised_terms):
            sv, diag = terms(q, k, v, upper)
            loss = use_sv * (sv * w_sv).sum() + use_diag * (torch.log1p(0.7 * diag) * w_diag).sum()
            results.append((sv.detach(), diag.detach(), torch.autograd.grad(loss, (q, k, v), allow_unused=True)))
        (sv1, d1, g1), (sv0, d0, g0) = results
        assert torch.allclose(sv1, sv0, atol=1e-12, rtol=0) and torch.allclose(d1, d0, atol=1e-12, rtol=0)
        for name, a, b in zip("qkv", g1, g0):
            b = torch.zeros_like(a) if b is None else b
            a = torch.zeros_like(b) if a is None else a
            assert torch.allclose(a, b, atol=1e-11, rtol=1e-10), f"{path} {weights} d{name}: {(a - b).abs().max():.3g}"


def test_self_logit_and_recording_keep_the_materialised_path_and_a_whole_flow_switches():
    flow = MultiscaleMango(channels=1, size=8, scales=2, blocks=1).double()
    perturb_parameters(flow, 0.2, torch.Generator().manual_seed(0))
    a, b = (torch.rand(2, 1, 8, 8, dtype=D64, generator=torch.Generator().manual_seed(s)) for s in (1, 2))
    before = flow.encode((a, b)).log_prob
    layers = use_fused_attention(flow)
    assert layers and all(m.fused_forward for m in layers)
    assert torch.allclose(flow.encode((a, b)).log_prob, before, atol=1e-9, rtol=0)
    m = ICA(dim=4, tokens=4, heads=1, self_logit=True).double()
    use_fused_attention(m)
    m.record_attention = True
    m(torch.randn(1, 8, 4, dtype=D64))
    assert m.last_attention is not None  # recorded: the materialised path ran
