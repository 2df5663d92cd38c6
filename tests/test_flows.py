"""Three checks for every invertible module in float64 (round trip, log-det cancellation, log-det ==
slogdet of the autograd Jacobian), plus gradients, state, train/eval, partitions and errors."""

from __future__ import annotations

import io
import math

import pytest
import torch

from mango_lite import ICA, MangoBlock, MangoFlow, MultiscaleMango
from mango_lite.flows import (
    ActNorm,
    Coupling,
    FlowSequence,
    InvertibleLinearLU,
    Split,
    Squeeze,
    Unsqueeze,
    layers_for,
    make_partition,
    record_attention,
    reference,
)
from tests.conftest import jacobian_logdet, multiscale_jacobian_logdet

D64 = torch.float64


def _init(module: torch.nn.Module, x) -> torch.nn.Module:
    """Run one training-mode forward (ActNorm data init), then switch to eval."""
    module.train()
    with torch.no_grad():
        module(x)
    return module.eval()


def _check_tensor_module(module, x, atol=1e-9):
    z, ld = module(x)
    assert ld.shape == (x.shape[0],)
    xr, ld_inv = module.inverse(z)
    assert torch.allclose(xr, x, atol=atol, rtol=0), f"round trip error {(xr - x).abs().max():.3g}"
    assert torch.allclose(ld + ld_inv, torch.zeros_like(ld), atol=atol), "log-dets do not cancel"
    jac = jacobian_logdet(lambda v: module(v)[0], x)
    assert torch.allclose(ld, jac, atol=1e-7, rtol=1e-9), f"logdet {ld} vs Jacobian {jac}"


# ----------------------------------------------------------------------------------------------------
# elementary modules


def test_actnorm_three_checks_and_data_init():
    x = torch.randn(5, 6, 3, dtype=D64) * 3 + 2
    m = ActNorm(3).double()
    z, _ = m.train()(x)
    assert torch.allclose(z.reshape(-1, 3).mean(0), torch.zeros(3, dtype=D64), atol=1e-10)
    assert torch.allclose(z.reshape(-1, 3).std(0, unbiased=False), torch.ones(3, dtype=D64), atol=1e-5)
    m.eval()
    _check_tensor_module(m, torch.randn(2, 6, 3, dtype=D64))


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("dim", [2, 5])
def test_coupling_three_checks(flip, dim):
    m = Coupling(dim, hidden=8, flip=flip).double()
    for p in m.net.out.parameters():  # leave the zero-init identity: make the map non-trivial
        torch.nn.init.normal_(p, std=0.5)
    _check_tensor_module(m, torch.randn(2, 4, dim, dtype=D64))


def test_coupling_is_identity_at_init():
    m = Coupling(4).double()
    x = torch.randn(2, 3, 4, dtype=D64)
    z, ld = m(x)
    assert torch.equal(z, x) and torch.equal(ld, torch.zeros(2, dtype=D64))


def test_coupling_scale_is_soft_clamped():
    m = Coupling(4, clamp=1.5).double()
    torch.nn.init.constant_(m.net.out.bias, 100.0)
    _, ld = m(torch.randn(1, 3, 4, dtype=D64))
    assert ld.item() <= 1.5 * 3 * 2 + 1e-9


@pytest.mark.parametrize("axis", ["channels", "tokens"])
@pytest.mark.parametrize("init", ["orthogonal", "identity"])
def test_lu_three_checks(axis, init):
    m = InvertibleLinearLU(4, axis=axis, init=init).double()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 4, 4, dtype=D64) if axis == "tokens" else torch.randn(2, 3, 4, dtype=D64)
    _check_tensor_module(m, x)
    w = m.weight()
    count = x.shape[2] if axis == "tokens" else x.shape[1]
    assert math.isclose(m(x)[1][0].item(), count * torch.linalg.slogdet(w)[1].item(), rel_tol=1e-10)


def test_lu_orthogonal_init_is_volume_preserving():
    m = InvertibleLinearLU(6).double()
    w = m.weight()
    assert torch.allclose(w @ w.T, torch.eye(6, dtype=D64), atol=1e-6)


@pytest.mark.parametrize("cls", [Squeeze, Unsqueeze])
def test_squeeze_three_checks(cls):
    x = torch.randn(2, 2, 4, 4, 4, dtype=D64) if cls is Squeeze else torch.randn(2, 8, 2, 2, dtype=D64)
    _check_tensor_module(cls(), x)


def test_squeeze_moves_2x2_patches_to_channels():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    z, _ = Squeeze()(x)
    assert z.shape == (1, 4, 2, 2)
    # top-left 2x2 patch of the image becomes the channel vector of output pixel (0, 0)
    assert z[0, :, 0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]


def test_split_three_checks_and_prior():
    m = Split(5).double()
    torch.nn.init.normal_(m.prior.weight, std=0.3)
    torch.nn.init.normal_(m.prior.bias, std=0.3)
    x = torch.randn(2, 3, 5, dtype=D64)
    (keep, eps), ld = m(x)
    xr, ld_inv = m.inverse((keep, eps))
    assert torch.allclose(xr, x, atol=1e-12) and torch.allclose(ld + ld_inv, torch.zeros(2, dtype=D64))
    jac = jacobian_logdet(lambda v: torch.cat([t.reshape(1, -1) for t in m(v)[0]], 1), x)
    assert torch.allclose(ld, jac, atol=1e-9)
    # folding the prior into the bijection = Glow's conditional Gaussian prior on the factored half
    mu, log_sigma = m._stats(keep)
    glow = torch.distributions.Normal(mu, log_sigma.exp()).log_prob(x[..., 2:]).flatten(1).sum(1)
    ours = torch.distributions.Normal(0.0, 1.0).log_prob(eps).flatten(1).sum(1) + ld
    assert torch.allclose(glow, ours, atol=1e-10)


# ----------------------------------------------------------------------------------------------------
# partitions


@pytest.mark.parametrize("name,variant",
                         [("mmca", 0), ("mmca", 1), ("imca", 0), ("imca", 1), ("imca", 2), ("imca", 3), ("lica", 0)])
def test_partition_merge_is_a_bijection(name, variant):
    p = make_partition(name, tokens=4, dim=3, variant=variant).double()
    x = torch.randn(2, 8, 3, dtype=D64)
    x1, x2, ld1 = p.partition(x)
    assert x1.shape == x2.shape == (2, 4, 3)
    xr, ld2 = p.merge(x1, x2)
    assert torch.allclose(xr, x, atol=1e-12)
    assert torch.allclose(ld1 + ld2, torch.zeros(2, dtype=D64), atol=1e-12)
    jac = jacobian_logdet(lambda v: torch.cat(p.partition(v)[:2], 1), x)
    assert torch.allclose(ld1, jac, atol=1e-9)


def test_partition_token_sets_follow_the_paper():
    t = 4  # A = 0..3 (A1 = 0, 2; A2 = 1, 3), B = 4..7 (B1 = 4, 6; B2 = 5, 7)
    idx = lambda n, v: make_partition(n, t, 1, v).token_index().tolist()  # noqa: E731
    assert idx("mmca", 0) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert idx("mmca", 1) == [[4, 5, 6, 7], [0, 1, 2, 3]]
    assert idx("imca", 0) == [[0, 2, 4, 6], [1, 3, 5, 7]]  # (A1, B1 | A2, B2)
    assert idx("imca", 1) == [[0, 2, 5, 7], [1, 3, 4, 6]]  # (A1, B2 | A2, B1)
    assert idx("imca", 2) == [[1, 3, 4, 6], [0, 2, 5, 7]]  # (A2, B1 | A1, B2)
    assert idx("imca", 3) == [[1, 3, 5, 7], [0, 2, 4, 6]]  # (A2, B2 | A1, B1)
    assert make_partition("lica", t, 1).token_index() is None


def test_lica_partition_logdet_is_d_times_logabsdet_w():
    p = make_partition("lica", tokens=3, dim=5).double()
    with torch.no_grad():
        p.mixer.log_s.add_(0.3)
    x = torch.randn(1, 6, 5, dtype=D64)
    _, _, ld = p.partition(x)
    assert math.isclose(ld.item(), 5 * torch.linalg.slogdet(p.mixer.weight())[1].item(), rel_tol=1e-10)


# ----------------------------------------------------------------------------------------------------
# ICA


ICA_CASES = [(p, v, h) for p, n in (("mmca", 2), ("imca", 4), ("lica", 1)) for v in range(n) for h in (1, 2)]


@pytest.mark.parametrize("partition,variant,heads", ICA_CASES)
def test_ica_three_checks(partition, variant, heads):
    m = ICA(dim=4, tokens=4, partition=partition, variant=variant, heads=heads).double()
    _check_tensor_module(m, torch.randn(3, 8, 4, dtype=D64))


@pytest.mark.parametrize("partition", ["mmca", "imca", "lica"])
@pytest.mark.parametrize("heads,qk_dim", [(1, 2), (2, 2), (2, 4)])
def test_ica_with_narrow_query_key_passes_three_checks(partition, heads, qk_dim):
    # qk_dim only shapes the attention; the log-det factor stays the value width D / heads
    m = ICA(dim=6, tokens=4, partition=partition, heads=heads, qk_dim=qk_dim).double()
    assert m.query.out_features == qk_dim and m.head_dim == 6 // heads
    _check_tensor_module(m, torch.randn(3, 8, 6, dtype=D64))


def test_ica_rejects_bad_qk_dim():
    with pytest.raises(ValueError, match="qk_dim"):
        ICA(dim=4, tokens=4, heads=2, qk_dim=3)


def test_multiscale_mango_caps_query_key_width_per_scale():
    m = MultiscaleMango(channels=2, size=8, scales=2, blocks=1, qk_dim=8, hidden=8).double()
    icas = [mod for mod in m.modules() if isinstance(mod, ICA)]
    assert {mod.qk_dim for mod in icas} == {8} and {mod.dim for mod in icas} == {8, 16}
    x = (torch.randn(2, 2, 8, 8, dtype=D64), torch.randn(2, 2, 8, 8, dtype=D64))
    z, ld = m(x)
    back, ld_inv = m.inverse(z)
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(x, back))
    assert torch.allclose(ld, -ld_inv, atol=1e-10)


def test_ica_logdet_matches_finite_differences():
    m = ICA(dim=3, tokens=4, partition="imca", variant=1).double()
    x = torch.randn(1, 8, 3, dtype=D64)
    flat = x.reshape(-1)
    n, h = flat.numel(), 1e-6
    jac = torch.zeros(n, n, dtype=D64)
    for i in range(n):
        e = torch.zeros(n, dtype=D64)
        e[i] = h
        jac[:, i] = (m((flat + e).view_as(x))[0] - m((flat - e).view_as(x))[0]).reshape(-1) / (2 * h)
    assert abs(torch.linalg.slogdet(jac)[1].item() - m(x)[1].item()) < 1e-6


def test_ica_gradcheck_forward_and_inverse():
    m = ICA(dim=2, tokens=2, partition="mmca", heads=1).double()
    x = torch.randn(1, 4, 2, dtype=D64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: m(v)[0], (x,))
    assert torch.autograd.gradcheck(lambda v: m(v)[1], (x,))
    assert torch.autograd.gradcheck(lambda v: m.inverse(v)[0], (x,))


@pytest.mark.parametrize("gamma", [None, 0.1, 0.7])
def test_ica_attention_is_upper_triangular_with_positive_diagonal(gamma):
    m = ICA(dim=4, tokens=5, partition="mmca", gamma=gamma).double()
    g = 1.0 if gamma is None else gamma
    x = torch.randn(2, 10, 4, dtype=D64)
    a = reference.attention_matrix(m, x)
    assert torch.equal(torch.tril(a[..., :, :], -1), torch.zeros_like(a))
    d = torch.diagonal(a, dim1=-2, dim2=-1)
    assert (d > 1).all() and (d <= 1 + g + 1e-12).all()
    assert torch.allclose(a.sum(-1), torch.full_like(a.sum(-1), 1 + g))  # identity + gamma * softmax rows


@pytest.mark.parametrize("gamma", [-0.95, -0.5, 0.3, 0.95])
def test_ica_inverse_norm_bound(gamma):
    """Strict row diagonal dominance: ||A^-1||_inf <= 1 / (1 - |gamma|), even for peaked attention."""
    m = ICA(dim=4, tokens=16, partition="imca", gamma=gamma).double()
    with torch.no_grad():
        m.log_temperature.fill_(-3.0)  # sharp, arbitrary attention
    a = reference.attention_matrix(m, torch.randn(3, 32, 4, dtype=D64))
    inv_norm = torch.linalg.matrix_norm(torch.linalg.inv(a), ord=float("inf"))
    g = m.gamma.abs().max().item()
    assert (inv_norm <= (1 / (1 - g)) * (1 + 1e-12)).all()  # attained for gamma < 0 (last row)
    # gamma is learnable and stays inside (-1, 1) whatever the raw parameter does
    with torch.no_grad():
        m.gate.fill_(50.0)
    assert m.gamma.item() <= 1.0 and "gate" in dict(m.named_parameters())


def test_paper_form_has_fixed_gamma_one():
    m = ICA(dim=2, tokens=2, gamma=None)
    assert m.gamma.item() == 1.0 and "gate" not in dict(m.named_parameters())
    with pytest.raises(ValueError, match="gamma must lie in"):
        ICA(dim=2, tokens=2, gamma=1.0)


def test_ica_jacobian_is_block_triangular_with_kron_structure():
    """dY1/dX2 = 0 and dY2/dX2 = A (x) I_D (here MMCA v0: X1 = modality A, X2 = modality B)."""
    t, d = 3, 2
    m = ICA(dim=d, tokens=t, partition="mmca", variant=0).double()
    x = torch.randn(1, 2 * t, d, dtype=D64)
    jac = torch.autograd.functional.jacobian(lambda v: m(v.view(1, 2 * t, d))[0].reshape(-1), x.reshape(-1))
    n = t * d
    assert torch.equal(jac[:n, n:], torch.zeros(n, n, dtype=D64))  # Y1 does not depend on X2
    assert torch.allclose(jac[:n, :n], torch.eye(n, dtype=D64))  # Y1 = X1
    a = reference.attention_matrix(m, x)[0, 0]
    assert torch.allclose(jac[n:, n:], torch.kron(a, torch.eye(d, dtype=D64)), atol=1e-12)


@pytest.mark.parametrize("dim,tokens", [(3, 4), (8, 2), (4, 4)])
@pytest.mark.parametrize("gamma", [None, 0.1])
def test_published_factor_disagrees_with_jacobian_unless_d_equals_t(dim, tokens, gamma):
    """The official code scales slogdet(A) by (total tokens)/2 = T; the Jacobian says D."""
    m = ICA(dim=dim, tokens=tokens, partition="mmca", gamma=gamma).double()
    x = torch.randn(1, 2 * tokens, dim, dtype=D64)
    exact = jacobian_logdet(lambda v: m(v)[0], x)
    published = reference.published_logdet(m, x)
    assert torch.allclose(m(x)[1], exact, atol=1e-9)
    assert torch.allclose(reference.dense_logdet(m, x), exact, atol=1e-9)
    if dim == tokens:
        assert torch.allclose(published, exact, atol=1e-9)
    else:
        assert not torch.allclose(published, exact, rtol=1e-3)
        assert math.isclose(published.item() / exact.item(), tokens / dim, rel_tol=1e-9)


def test_triangular_inverse_equals_published_pinv_inverse():
    m = ICA(dim=4, tokens=6, partition="imca", variant=2).double()
    x = torch.randn(2, 12, 4, dtype=D64)
    z, _ = m(x)
    assert torch.allclose(reference.published_inverse(m, z), m.inverse(z)[0], atol=1e-10)


def test_record_attention():
    f = MangoFlow(dim=4, tokens=4, blocks=1).double()
    layers = record_attention(f)
    assert len(layers) == 8
    f(torch.randn(2, 8, 4, dtype=D64))
    assert all(layer.last_attention is not None and layer.last_attention.shape == (2, 1, 4, 4) for layer in layers)
    assert layers[0].last_index.tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    record_attention(f, False)
    assert all(layer.last_attention is None for layer in layers)


# ----------------------------------------------------------------------------------------------------
# blocks and flows


def test_mango_block_layout_and_three_checks():
    m = MangoBlock(dim=4, tokens=4).double()
    icas = [mod for mod in m.modules() if isinstance(mod, ICA)]
    assert [(i.partition_name, i.variant) for i in icas] == [
        ("mmca", 0), ("mmca", 1), ("imca", 0), ("imca", 1), ("imca", 2), ("imca", 3), ("lica", 0), ("lica", 1)
    ]
    x = torch.randn(3, 8, 4, dtype=D64)
    _init(m, x)
    for p in m.flow[-1].net.out.parameters():
        torch.nn.init.normal_(p, std=0.3)
    _check_tensor_module(m, torch.randn(2, 8, 4, dtype=D64), atol=1e-8)


def test_mango_flow_three_checks_density_and_sampling():
    f = MangoFlow(dim=4, tokens=2, blocks=2).double()
    x = torch.randn(4, 4, 4, dtype=D64)
    _init(f, x)
    _check_tensor_module(f, x[:2], atol=1e-8)
    z, ld = f(x)
    lp = f.log_prob(x)
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).flatten(1).sum(1) + ld
    assert torch.allclose(lp, expected)
    assert torch.allclose(f.bits_per_dim(x), -lp / (16 * math.log(2)))
    s = f.sample(3)
    assert s.shape == (3, 4, 4) and torch.isfinite(s).all()


def test_multiscale_three_checks_and_shapes():
    m = MultiscaleMango(channels=1, size=(4, 8), scales=2, blocks=1).double()
    xa, xb = torch.randn(3, 1, 4, 8, dtype=D64), torch.randn(3, 1, 4, 8, dtype=D64)
    _init(m, (xa, xb))
    zs, ld = m((xa, xb))
    assert [tuple(z.shape) for z in zs] == [(3, 2, 2, 2, 4), (3, 2, 8, 1, 2)]
    (ra, rb), ld_inv = m.inverse(zs)
    assert torch.allclose(ra, xa, atol=1e-9) and torch.allclose(rb, xb, atol=1e-9)
    assert torch.allclose(ld + ld_inv, torch.zeros(3, dtype=D64), atol=1e-9)
    jac = multiscale_jacobian_logdet(m, xa, xb)
    assert torch.allclose(ld[:1], jac, atol=1e-7)
    enc = m.encode((xa, xb))
    assert [tuple(f.shape) for f in enc.features] == [(3, 2, 4, 2, 4), (3, 2, 8, 1, 2)]
    assert m.feature_channels == [4, 8]
    prior = sum(torch.distributions.Normal(0.0, 1.0).log_prob(z).flatten(1).sum(1) for z in zs)
    assert torch.allclose(enc.log_prob, prior + ld)
    sa, sb = m.sample(2)
    assert sa.shape == (2, 1, 4, 8) and torch.isfinite(sa).all()


@pytest.mark.parametrize(
    "make,inputs",
    [
        (lambda: MangoFlow(dim=4, tokens=2, blocks=1), lambda: torch.randn(4, 4, 4)),
        (lambda: MultiscaleMango(channels=2, size=4, scales=1, blocks=1),
         lambda: (torch.randn(4, 2, 4, 4), torch.randn(4, 2, 4, 4))),
    ],
)
def test_every_parameter_gets_a_gradient(make, inputs):
    """Every parameter moves the log-likelihood: its gradient is finite and well above round-off (float64,
    all parameters perturbed, so no zero-initialised layer blocks a path). A parameter the output does
    not depend on (e.g. a shift of every softmax logit in a row) has a gradient of pure round-off."""
    torch.manual_seed(0)
    m = make().double()
    x = inputs()
    x = x.double() if isinstance(x, torch.Tensor) else tuple(v.double() for v in x)
    _init(m, x)
    m.train()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    m.log_prob(x).mean().backward()
    norms = {n: float(p.grad.abs().max()) if p.grad is not None and torch.isfinite(p.grad).all() else 0.0
             for n, p in m.named_parameters()}
    scale = max(norms.values())
    dead = [n for n, v in norms.items() if v < 1e-8 * scale]
    assert not dead, f"no gradient (relative to the largest {scale:.3g}) for {dead}"


def test_state_dict_round_trip_keeps_actnorm_init():
    f = MangoFlow(dim=4, tokens=2, blocks=1)
    x = torch.randn(6, 4, 4)
    _init(f, x)
    buf = io.BytesIO()
    torch.save(f.state_dict(), buf)
    buf.seek(0)
    g = MangoFlow(dim=4, tokens=2, blocks=1)
    g.load_state_dict(torch.load(buf))
    g.train()  # initialized flag restored: training mode must NOT re-initialise ActNorm
    assert torch.equal(f(x)[0], g(x)[0]) and torch.equal(f(x)[1], g(x)[1])


def test_actnorm_reads_its_init_flag_from_the_device_once_and_again_after_a_load():
    """The host copy of ``initialized`` (no device read per training call) follows the buffer: an
    uninitialised state loaded into an initialised ActNorm makes the next training call initialise again."""
    from mango_lite.flows import ActNorm

    fresh = ActNorm(3).state_dict()
    m = ActNorm(3).train()
    x = torch.randn(8, 5, 3) * 4 + 2
    m(x)
    assert m.is_initialized() and m._known_initialized
    m.bias.data.zero_()
    m(x)  # initialised: the parameters are not overwritten
    assert torch.equal(m.bias, torch.zeros(3))
    m.load_state_dict(fresh)
    assert not m.is_initialized()
    m(x)  # initialises again from this batch
    assert m.is_initialized() and torch.allclose(m.bias, -x.reshape(-1, 3).mean(0))


def test_train_eval_consistency_after_actnorm_init():
    f = MangoFlow(dim=4, tokens=2, blocks=1)
    x = torch.randn(6, 4, 4)
    f.train()
    f(x)
    z_train, ld_train = f(x)
    f.eval()
    z_eval, ld_eval = f(x)
    assert torch.equal(z_train, z_eval) and torch.equal(ld_train, ld_eval)


def test_flow_sequence_composes_logdets():
    seq = FlowSequence([Coupling(3), ActNorm(3), InvertibleLinearLU(3)]).double()
    _init(seq, torch.randn(4, 5, 3, dtype=D64))
    _check_tensor_module(seq, torch.randn(2, 5, 3, dtype=D64))


def test_layers_for_ablations():
    assert layers_for(None)[0] == ("mmca", 0)
    assert layers_for(["mmca"]) == tuple(("mmca", i % 2) for i in range(8))
    assert {n for n, _ in layers_for(["imca", "lica"])} == {"imca", "lica"}
    with pytest.raises(ValueError, match="partitions"):
        layers_for(["foo"])
    m = MangoBlock(dim=2, tokens=2, layers=layers_for(["lica"]))
    assert all(i.partition_name == "lica" for i in m.modules() if isinstance(i, ICA))


# ----------------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize(
    "x,match",
    [
        (torch.randn(8, 4), r"3-D tensor .*got shape \(8, 4\)"),
        (torch.randn(2, 6, 4), r"expected 2\*tokens = 8 tokens.*got 6"),
        (torch.randn(2, 8, 5), r"expected width dim = 4.*got 5"),
        (torch.full((2, 8, 4), float("nan")), r"finite values, got 64 non-finite"),
    ],
)
@pytest.mark.parametrize("make", [lambda: ICA(dim=4, tokens=4), lambda: MangoBlock(dim=4, tokens=4),
                                  lambda: MangoFlow(dim=4, tokens=4, blocks=1)])
def test_malformed_input_raises_value_error(make, x, match):
    m = make()
    with pytest.raises(ValueError, match=match):
        m(x)
    with pytest.raises(ValueError, match=match.replace("x", "z") if "finite" in match else match):
        m.inverse(x)


def test_constructor_errors_are_explicit():
    with pytest.raises(ValueError, match="divisible by heads"):
        ICA(dim=5, tokens=4, heads=2)
    with pytest.raises(ValueError, match="partition must be one of"):
        ICA(dim=4, tokens=4, partition="xyz")
    with pytest.raises(ValueError, match="even"):
        ICA(dim=4, tokens=3, partition="imca")
    with pytest.raises(ValueError, match="variant"):
        ICA(dim=4, tokens=4, partition="mmca", variant=2)
    with pytest.raises(ValueError, match="divisible by 2\\*\\*scales"):
        MultiscaleMango(channels=1, size=6, scales=2)
    with pytest.raises(ValueError, match="coarsest scale"):
        MultiscaleMango(channels=1, size=4, scales=2)
    with pytest.raises(ValueError, match="equal shapes"):
        MultiscaleMango(channels=1, size=4, scales=1)((torch.randn(1, 1, 4, 4), torch.randn(1, 1, 4, 8)))


def test_inverse_without_autograd_matches_inverse_with_autograd():
    """The no-grad inverse builds A in place over the softmax buffer; it must give identical results."""
    m = ICA(dim=4, tokens=6, partition="lica", heads=2).double()
    x = torch.randn(3, 12, 4, dtype=D64)
    z, _ = m(x)
    with_grad, ld_grad = m.inverse(z)
    with torch.no_grad():
        without, ld_no = m.inverse(z)
    assert torch.equal(with_grad.detach(), without) and torch.equal(ld_grad.detach(), ld_no)
    assert "blocked" not in m.state_dict()  # derived masks are not saved


def test_checkpoints_with_the_legacy_mask_buffer_still_load():
    m = ICA(dim=2, tokens=3)
    state = m.state_dict()
    state["mask"] = torch.ones(3, 3, dtype=torch.bool).triu()  # what older checkpoints stored
    fresh = ICA(dim=2, tokens=3)
    fresh.load_state_dict(state)  # strict: must not complain about the legacy key
    assert torch.equal(fresh.query.weight, m.query.weight)
