"""ICA's per-row gamma (``gamma_mode``, a labelled deviation from the paper): A = I + diag(gamma(X1)) S, and its
learnable diagonal logit offset (``self_logit``, likewise a labelled deviation): S = softmax(mask(logits + diag(beta))).

Every check runs in float64 with all parameters moved away from their (zero) initial values, so a missing
log-det term or a gamma that secretly reads X2 cannot hide behind an identity start."""

from __future__ import annotations

import io
import math

import pytest
import torch

from mango_lite import ICA, MangoBlock, MultiscaleMango
from mango_lite.flows import perturb_parameters
from mango_lite.flows.config import GAMMA_MODES
from tests.conftest import jacobian_logdet

D64 = torch.float64
NEW_MODES = ("token", "modality")
PARTITION_VARIANTS = {"mmca": (0, 1), "imca": (0, 1, 2, 3), "lica": (0,)}
EXTRA_KEYS = {"head": set(), "token": {"gamma_row", "gamma_proj"}, "modality": {"gamma_modality"}}


def _layer(mode: str, partition: str = "imca", variant: int = 0, triangle: str = "upper", heads: int = 2,
           seed: int = 0, perturb: bool = True, **kw) -> ICA:
    torch.manual_seed(seed)
    m = ICA(dim=4, tokens=4, partition=partition, variant=variant, heads=heads, triangle=triangle, gamma_mode=mode,
            **kw).double()
    if perturb:
        perturb_parameters(m, 0.3, torch.Generator().manual_seed(seed + 1))
    return m


def _x(b: int = 2, seed: int = 5) -> torch.Tensor:
    return torch.randn(b, 8, 4, dtype=D64, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------- bijection


@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("triangle", ["upper", "lower"])
@pytest.mark.parametrize("partition", ["mmca", "imca", "lica"])
@pytest.mark.parametrize("mode", NEW_MODES)
def test_per_row_gamma_three_checks(mode, partition, triangle, heads):
    """Round trip, inverse log-det = -log-det, log-det = slogdet of the autograd Jacobian, for every variant."""
    for variant in PARTITION_VARIANTS[partition]:
        m = _layer(mode, partition, variant, triangle, heads)
        x = _x()
        x1 = m.partition.partition(x)[0]
        g = m.row_gamma(x1)
        assert g.abs().max() < 1
        if mode == "token" or partition != "mmca":  # MMCA's X2 is one modality: one gamma per head there
            assert g.std(-1).min() > 1e-3, "the perturbed rows should not share one gamma"
        z, ld = m(x)
        xr, ld_inv = m.inverse(z)
        assert torch.allclose(xr, x, atol=1e-10, rtol=0), f"round trip error {(xr - x).abs().max():.3g}"
        assert torch.allclose(ld_inv, -ld, atol=1e-10, rtol=0)
        jac = jacobian_logdet(lambda v: m(v)[0], x)
        assert torch.allclose(ld, jac, atol=1e-9, rtol=1e-9), f"{mode} {partition}{variant} {triangle}: {ld} vs {jac}"
        with torch.no_grad():  # the in-place no-grad inverse must agree exactly with the autograd one
            xr2, ld_inv2 = m.inverse(z)
        assert torch.equal(xr2, xr.detach()) and torch.equal(ld_inv2, ld_inv.detach())


@pytest.mark.parametrize("mode", NEW_MODES)
def test_per_row_gamma_with_positions_and_fast_rate(mode):
    m = _layer(mode, "imca", 1, "lower", grid=(2, 2), gamma_rate=5.0)
    x = _x()
    z, ld = m(x)
    xr, ld_inv = m.inverse(z)
    assert torch.allclose(xr, x, atol=1e-10, rtol=0) and torch.allclose(ld_inv, -ld, atol=1e-10, rtol=0)
    assert torch.allclose(ld, jacobian_logdet(lambda v: m(v)[0], x), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("mode", NEW_MODES)
def test_logdet_is_d_times_sum_log_1_plus_gamma_i_s_ii(mode):
    m = _layer(mode, "imca", 2, "lower")
    x = _x()
    x1 = m.partition.partition(x)[0]
    s = m.attention_probs(x1)
    g = m.row_gamma(x1)
    want = m.head_dim * torch.log1p(g * torch.diagonal(s, dim1=-2, dim2=-1)).sum((1, 2))
    assert torch.allclose(m(x)[1], want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("mode", NEW_MODES)
def test_gamma_reads_x1_only(mode):
    """The X2 block of the Jacobian is A (x) I_d and the X1 -> Y1 block the identity: gamma never reads X2."""
    m = _layer(mode, "mmca", 0, heads=1)
    x = _x(1)
    jac = torch.autograd.functional.jacobian(lambda v: m(v.view(1, 8, 4))[0].reshape(-1), x.reshape(-1))
    jac = jac.view(8, 4, 8, 4)
    # MMCA variant 0: X1 = tokens 0..3 (A), X2 = tokens 4..7 (B)
    assert torch.equal(jac[:4, :, 4:, :], torch.zeros(4, 4, 4, 4, dtype=D64))  # dY1/dX2 = 0
    x1 = m.partition.partition(x)[0]
    a = torch.eye(4, dtype=D64) + m.attention(x1)[0, 0]
    want = torch.einsum("ij,cd->icjd", a, torch.eye(4, dtype=D64))
    assert torch.allclose(jac[4:, :, 4:, :], want, atol=1e-12)
    # a different X2 leaves every gamma unchanged; a different X1 moves the token gammas
    x_other = x.clone()
    x_other[:, 4:] += 1.0
    assert torch.equal(m.row_gamma(m.partition.partition(x_other)[0]), m.row_gamma(x1))
    if mode == "token":
        x_other = x.clone()
        x_other[:, :4] = torch.randn(1, 4, 4, dtype=D64)
        assert not torch.allclose(m.row_gamma(m.partition.partition(x_other)[0]), m.row_gamma(x1))


def test_mixing_matrix_reproduces_the_layer_with_row_gammas():
    for mode in NEW_MODES:
        for partition in ("imca", "lica"):
            m = _layer(mode, partition, heads=1)
            x = _x()
            mix = m.mixing_matrix(x)[:, 0]  # (B, 2T, 2T), one head: the same matrix for every channel
            assert torch.allclose(mix @ x, m(x)[0], atol=1e-10)


# ------------------------------------------------------------------------------ head mode and the start


def test_head_mode_is_the_default_with_unchanged_state_and_outputs():
    torch.manual_seed(0)
    default = ICA(dim=4, tokens=4, partition="lica", heads=2, gamma_rate=10.0, grid=(2, 2)).double()
    torch.manual_seed(0)
    head = ICA(dim=4, tokens=4, partition="lica", heads=2, gamma_rate=10.0, grid=(2, 2), gamma_mode="head").double()
    assert default.gamma_mode == "head"
    assert list(default.state_dict()) == list(head.state_dict())
    # the keys (and their order) of the layer before gamma_mode existed
    assert list(default.state_dict()) == [
        "log_temperature", "position_scale", "gate", "partition.mixer.lower", "partition.mixer.upper",
        "partition.mixer.log_s", "partition.mixer.perm", "partition.mixer.perm_inv", "partition.mixer.sign_s",
        "partition.mixer.lower_mask", "partition.mixer.eye", "query.weight", "key.weight", "query_norm.weight",
        "query_norm.bias", "key_norm.weight"]
    perturb_parameters(default, 0.3, torch.Generator().manual_seed(1))
    head.load_state_dict(default.state_dict())
    x = _x()
    (za, lda), (zb, ldb) = default(x), head(x)
    assert torch.equal(za, zb) and torch.equal(lda, ldb)
    x1 = default.partition.partition(x)[0]
    assert torch.equal(head.row_gamma(x1), default.gamma.view(1, 2, 1).expand(1, 2, 4))
    assert "gamma_mode" not in repr(default)


@pytest.mark.parametrize("partition", ["mmca", "imca", "lica"])
@pytest.mark.parametrize("mode", NEW_MODES)
def test_zero_initialised_row_gamma_equals_head_mode_at_init(mode, partition):
    head = _layer("head", partition, perturb=False, gamma_rate=10.0)
    new = _layer(mode, partition, perturb=False, gamma_rate=10.0)
    assert set(new.state_dict()) - set(head.state_dict()) == EXTRA_KEYS[mode]
    assert all(float(new.state_dict()[k].abs().max()) == 0.0 for k in EXTRA_KEYS[mode])
    # the same draws of the shared parameters, moved away from init; the row offsets stay at their zero start
    perturb_parameters(head, 0.3, torch.Generator().manual_seed(3))
    new.load_state_dict(head.state_dict(), strict=False)
    x = _x()
    (za, lda), (zb, ldb) = head(x), new(x)
    assert torch.equal(za, zb) and torch.equal(lda, ldb)
    assert torch.equal(head.inverse(za)[0], new.inverse(zb)[0])
    assert torch.equal(new.gamma, head.gamma)
    x1 = new.partition.partition(x)[0]
    assert torch.allclose(new.row_gamma(x1), head.gamma.view(1, -1, 1).expand_as(new.row_gamma(x1)), atol=0, rtol=0)


@pytest.mark.parametrize("mode", NEW_MODES)
def test_fixed_gamma_keeps_the_inert_shortcut_and_buffers(mode):
    m = ICA(dim=4, tokens=4, partition="imca", gamma=0.0, learn_gamma=False, gamma_mode=mode)
    assert m.inert and not list(p for n, p in m.named_parameters() if n.startswith("gamma"))
    x = torch.randn(2, 8, 4)
    z, ld = m(x)
    assert torch.equal(z, x) and torch.equal(ld, torch.zeros(2))
    assert EXTRA_KEYS[mode] <= set(m.state_dict())  # fixed zeros, saved like the fixed gate


def test_bad_gamma_mode_is_refused_naming_the_allowed_values():
    assert GAMMA_MODES == ("head", "token", "modality")
    with pytest.raises(ValueError, match=r"gamma_mode must be one of \('head', 'token', 'modality'\), got 'row'"):
        ICA(dim=4, tokens=4, gamma_mode="row")
    with pytest.raises(ValueError, match="gamma_mode"):
        ICA(dim=4, tokens=4, gamma=None, gamma_mode="token")  # the paper's fixed gamma = 1 has nothing per row
    with pytest.raises(ValueError, match="gamma_mode"):
        MangoBlock(dim=4, tokens=4, gamma_mode="Token")


# --------------------------------------------------------------------------------------------- modality


def test_x2_modality_follows_the_partition():
    mm0 = ICA(dim=2, tokens=4, partition="mmca", variant=0, gamma_mode="modality")
    mm1 = ICA(dim=2, tokens=4, partition="mmca", variant=1, gamma_mode="modality")
    assert mm0.x2_modality().tolist() == [1, 1, 1, 1] and mm1.x2_modality().tolist() == [0, 0, 0, 0]
    for v in range(4):  # IMCA: X2 = one half of A, then one half of B
        assert ICA(dim=2, tokens=4, partition="imca", variant=v).x2_modality().tolist() == [0, 0, 1, 1]
    torch.manual_seed(0)
    lica = ICA(dim=2, tokens=4, partition="lica", gamma_mode="modality")
    held = lica.partition.mixer.perm_inv[4:]  # the tokens X2's rows hold while W is the starting permutation
    assert lica.x2_modality().tolist() == [int(t >= 4) for t in held]


def test_modality_gamma_is_shared_within_a_modality():
    m = _layer("modality", "imca", 3)
    g = m.row_gamma(m.partition.partition(_x())[0])  # (1, heads, T)
    assert g.shape == (1, 2, 4)
    assert torch.equal(g[..., 0], g[..., 1]) and torch.equal(g[..., 2], g[..., 3])
    want = torch.tanh(m.gamma_rate * (m.gate[:, None] + m.gamma_modality))  # (heads, 2): A then B
    assert torch.allclose(g[0, :, 0], want[:, 0]) and torch.allclose(g[0, :, 2], want[:, 1])


# ------------------------------------------------------------------------------------------ training, state


@pytest.mark.parametrize("mode", NEW_MODES)
def test_row_gamma_parameters_get_gradients_and_survive_a_state_dict_round_trip(mode):
    m = _layer(mode, "imca", 0, "lower")
    x = _x()
    z, ld = m(x)
    (0.5 * z.square().sum() - ld.sum()).backward()
    for name in EXTRA_KEYS[mode]:
        grad = getattr(m, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().max() > 1e-6, name
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    fresh = _layer(mode, "imca", 0, "lower", seed=7, perturb=False)
    fresh.load_state_dict(torch.load(buf))
    with torch.no_grad():
        assert torch.equal(fresh(x)[0], m(x)[0].detach())


@pytest.mark.parametrize("mode", NEW_MODES)
def test_gamma_mode_is_threaded_through_block_multiscale_and_build_model(mode):
    from mango_lite.models import ModelConfig, build_model

    def modes(module):
        return {m.gamma_mode for m in module.modules() if isinstance(m, ICA)}

    assert modes(MangoBlock(dim=4, tokens=4, gamma_mode=mode)) == {mode}
    assert modes(MangoBlock(dim=4, tokens=4)) == {"head"}
    assert modes(MultiscaleMango(channels=1, size=8, scales=2, gamma_mode=mode)) == {mode}
    assert modes(MultiscaleMango(channels=1, size=8, scales=2)) == {"head"}
    kw = dict(in_channels=(3, 1), num_outputs=3, image_size=32, width=4, blocks=1, scales=2)
    model = build_model(ModelConfig(task="segmentation", fusion="mango", flow_gamma_mode=mode, **kw))
    assert modes(model) == {mode} and model.config.to_dict()["flow_gamma_mode"] == mode
    default = build_model(ModelConfig(task="segmentation", fusion="mango", **kw))
    assert modes(default) == {"head"} and "flow_gamma_mode" not in default.config.to_dict()  # stored configs unchanged
    a, b = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    out = model(a, b)
    assert torch.isfinite(out.aux["flow_bpd"]) and out.aux["gamma_mean"].shape == ()


def test_multiscale_with_row_gamma_round_trips():
    torch.manual_seed(0)
    m = MultiscaleMango(channels=1, size=8, scales=2, gamma_mode="token", gamma_rate=5.0, alternate=True).double()
    xa, xb = torch.randn(3, 1, 8, 8, dtype=D64), torch.randn(3, 1, 8, 8, dtype=D64)
    m.train()
    with torch.no_grad():
        m((xa, xb))  # ActNorm data init
    m.eval()
    perturb_parameters(m, 0.1, torch.Generator().manual_seed(2))
    z, ld = m((xa, xb))
    (ra, rb), ld_inv = m.inverse(z)
    assert torch.allclose(ra, xa, atol=1e-9) and torch.allclose(rb, xb, atol=1e-9)
    assert torch.allclose(ld_inv, -ld, atol=1e-8)


# ------------------------------------------------------------------------------------------ alignment toy


def test_alignment_toy_takes_a_gamma_mode_and_reports_per_modality_gammas():
    from mango_lite.training.alignment import alignment_layer, fit_alignment, layer_bound

    control, best = layer_bound(0.1)
    assert abs(control - 2.0507) < 1e-3 and abs(best - 1.8704) < 1e-3
    layer = alignment_layer(8, 2, gamma_mode="modality", gamma=0.2, gamma_rate=5.0)
    assert layer.gamma_mode == "modality" and layer.gamma_rate == 5.0
    assert abs(float(layer.gamma.detach()[0]) - 0.2) < 1e-6
    assert alignment_layer(8, 2, attention=False, gamma_mode="token").inert
    fit = fit_alignment(layer, shift=2, steps=3, batch=8)
    assert fit["gamma_a"] != fit["gamma_b"]  # the two modalities' rows moved apart


# -------------------------------------------------------------------------- self_logit: diagonal offset beta


def _old_attention_probs(m: ICA, x1: torch.Tensor) -> torch.Tensor:
    """The masked softmax exactly as ICA computed it before ``self_logit`` existed (grid-free layers)."""
    b, t, _ = x1.shape
    q = m.query_norm(m.query(x1).view(b, t, m.heads, m.qk_head_dim)).transpose(1, 2)
    k = m.key_norm(m.key(x1).view(b, t, m.heads, m.qk_head_dim)).transpose(1, 2)
    q = q * (torch.exp(-m.log_temperature).view(1, m.heads, 1, 1) / m.qk_head_dim**0.5)
    return torch.softmax((q @ k.transpose(-1, -2)).masked_fill_(m.blocked, float("-inf")), dim=-1)


@pytest.mark.parametrize("triangle", ["upper", "lower"])
@pytest.mark.parametrize("partition", ["mmca", "imca", "lica"])
@pytest.mark.parametrize("mode", ["head", "token"])
def test_self_logit_three_checks(mode, partition, triangle):
    """Round trip, inverse log-det = -log-det, log-det = slogdet of the autograd Jacobian, float64, every variant,
    with every parameter (the offset included) moved from its start."""
    for variant in PARTITION_VARIANTS[partition]:
        m = _layer(mode, partition, variant, triangle, heads=2, self_logit=True)
        beta = m.self_logit_offset.detach()
        assert beta.abs().min() > 1e-3 and beta[0] != beta[1], "perturb_parameters should move the offsets"
        x = _x()
        x1 = m.partition.partition(x)[0]
        s = m.attention_probs(x1)
        assert torch.allclose(s.sum(-1), torch.ones_like(s.sum(-1)), atol=1e-12)  # still row-stochastic
        assert torch.equal(s, s.triu() if triangle == "upper" else s.tril())  # still triangular
        assert torch.diagonal(s, dim1=-2, dim2=-1).min() > 0
        z, ld = m(x)
        xr, ld_inv = m.inverse(z)
        assert torch.allclose(xr, x, atol=1e-10, rtol=0), f"round trip error {(xr - x).abs().max():.3g}"
        assert torch.allclose(ld_inv, -ld, atol=1e-10, rtol=0)
        jac = jacobian_logdet(lambda v: m(v)[0], x)
        assert torch.allclose(ld, jac, atol=1e-9, rtol=1e-9), f"{mode} {partition}{variant} {triangle}: {ld} vs {jac}"
        want = m.head_dim * torch.log1p(m.row_gamma(x1) * torch.diagonal(s, dim1=-2, dim2=-1)).sum((1, 2))
        assert torch.allclose(ld, want, atol=1e-12, rtol=0)
        with torch.no_grad():  # the in-place no-grad inverse must agree exactly with the autograd one
            xr2, ld_inv2 = m.inverse(z)
        assert torch.equal(xr2, xr.detach()) and torch.equal(ld_inv2, ld_inv.detach())


@pytest.mark.parametrize("kw", [{"gamma": None}, {"gamma_mode": "modality", "grid": (2, 2), "gamma_rate": 5.0}])
def test_self_logit_with_the_papers_gamma_and_with_positions(kw):
    kw = dict(kw)
    m = _layer(kw.pop("gamma_mode", "head"), "imca", 1, "lower", heads=1, self_logit=True, **kw)
    x = _x()
    z, ld = m(x)
    xr, ld_inv = m.inverse(z)
    assert torch.allclose(xr, x, atol=1e-10, rtol=0) and torch.allclose(ld_inv, -ld, atol=1e-10, rtol=0)
    assert torch.allclose(ld, jacobian_logdet(lambda v: m(v)[0], x), atol=1e-9, rtol=1e-9)
    assert torch.allclose(m.mixing_matrix(x)[:, 0] @ x, z, atol=1e-10)  # one head: one matrix for every channel


def test_self_logit_off_is_the_old_layer_exactly():
    for partition in ("mmca", "imca", "lica"):
        torch.manual_seed(0)
        default = ICA(dim=4, tokens=4, partition=partition, heads=2, gamma_rate=10.0).double()
        torch.manual_seed(0)
        off = ICA(dim=4, tokens=4, partition=partition, heads=2, gamma_rate=10.0, self_logit=False).double()
        assert default.self_logit is False and not hasattr(default, "self_logit_offset")
        assert list(default.state_dict()) == list(off.state_dict())
        assert not any("self_logit" in k for k in default.state_dict())
        assert "self_logit" not in repr(default)
        perturb_parameters(default, 0.3, torch.Generator().manual_seed(1))
        off.load_state_dict(default.state_dict())
        x = _x()
        x1 = default.partition.partition(x)[0]
        assert torch.equal(default.attention_probs(x1), _old_attention_probs(default, x1))
        (za, lda), (zb, ldb) = default(x), off(x)
        assert torch.equal(za, zb) and torch.equal(lda, ldb)
    # the head-mode state_dict keys of the layer before gamma_mode and self_logit existed
    torch.manual_seed(0)
    assert list(ICA(dim=4, tokens=4, partition="mmca", heads=2).state_dict()) == [
        "log_temperature", "gate", "partition.perm", "partition.perm_inv", "query.weight", "key.weight",
        "query_norm.weight", "query_norm.bias", "key_norm.weight"]


@pytest.mark.parametrize("mode", GAMMA_MODES)
def test_self_logit_starts_as_the_layer_without_it(mode):
    """Zero-initialised offset: same outputs, log-det and inverse as without it, bit for bit; one extra key."""
    off = _layer(mode, "imca", 2, "lower", perturb=False, gamma_rate=10.0)
    on = _layer(mode, "imca", 2, "lower", perturb=False, gamma_rate=10.0, self_logit=True)
    assert set(on.state_dict()) - set(off.state_dict()) == {"self_logit_offset"}
    assert float(on.self_logit_offset.detach().abs().max()) == 0.0 and on.self_logit_offset.shape == (2,)
    assert "self_logit=True" in repr(on)
    perturb_parameters(off, 0.3, torch.Generator().manual_seed(3))
    on.load_state_dict(off.state_dict(), strict=False)
    x = _x()
    (za, lda), (zb, ldb) = off(x), on(x)
    assert torch.equal(za, zb) and torch.equal(lda, ldb)
    assert torch.equal(off.inverse(za)[0], on.inverse(zb)[0])


@pytest.mark.parametrize("triangle", ["upper", "lower"])
def test_a_positive_offset_raises_and_a_negative_one_lowers_the_diagonal_weight(triangle):
    m = _layer("head", "lica", 0, triangle, heads=2, self_logit=True)
    x1 = m.partition.partition(_x())[0]

    def probs(beta: float) -> torch.Tensor:
        with torch.no_grad():
            m.self_logit_offset.fill_(beta)
        return m.attention_probs(x1).detach()

    base, up, down = probs(0.0), probs(1.5), probs(-1.5)
    diag = [torch.diagonal(s, dim1=-2, dim2=-1) for s in (base, up, down)]
    # every row with more than one allowed column (the last row of the upper triangle, the first of the lower,
    # attends to itself only: s_ii = 1 whatever beta)
    free = slice(0, m.tokens - 1) if triangle == "upper" else slice(1, m.tokens)
    single = m.tokens - 1 if triangle == "upper" else 0
    assert (diag[1][..., free] > diag[0][..., free] + 1e-3).all()
    assert (diag[2][..., free] < diag[0][..., free] - 1e-3).all()
    for d in diag:
        assert torch.equal(d[..., single], torch.ones_like(d[..., single]))
    # exactly the softmax with the diagonal logit moved: off-diagonal weights scaled by one factor per row, the
    # diagonal's odds against the rest multiplied by e^beta
    for s, beta in ((up, 1.5), (down, -1.5)):
        d0, d = diag[0][..., free], torch.diagonal(s, dim1=-2, dim2=-1)[..., free]
        odds0, odds = d0 / (1 - d0), d / (1 - d)
        assert torch.allclose(odds / odds0, torch.full_like(odds, math.exp(beta)), rtol=1e-10)
    # a per-head offset: moving head 0's leaves head 1's S unchanged
    with torch.no_grad():
        m.self_logit_offset.copy_(torch.tensor([-2.0, 0.0], dtype=D64))
    s = m.attention_probs(x1).detach()
    assert torch.equal(s[:, 1], base[:, 1]) and not torch.allclose(s[:, 0], base[:, 0])


def test_self_logit_offset_gets_a_gradient_and_is_learned_when_gamma_is_fixed():
    m = _layer("head", "imca", 0, "lower", self_logit=True)
    x = _x()
    z, ld = m(x)
    (0.5 * z.square().sum() - ld.sum()).backward()
    g = m.self_logit_offset.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().min() > 1e-8
    fixed = ICA(dim=4, tokens=4, partition="imca", gamma=0.3, learn_gamma=False, self_logit=True)
    assert "self_logit_offset" in dict(fixed.named_parameters())  # part of S, like the temperature
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    fresh = _layer("head", "imca", 0, "lower", seed=7, perturb=False, self_logit=True)
    fresh.load_state_dict(torch.load(buf))
    with torch.no_grad():
        assert torch.equal(fresh(x)[0], m(x)[0].detach())


def test_self_logit_is_threaded_through_block_multiscale_and_build_model():
    from mango_lite.models import ModelConfig, build_model
    from mango_lite.models.config import FUSION_KEYS

    def flags(module):
        return {m.self_logit for m in module.modules() if isinstance(m, ICA)}

    assert flags(MangoBlock(dim=4, tokens=4, self_logit=True)) == {True}
    assert flags(MangoBlock(dim=4, tokens=4)) == {False}
    assert flags(MultiscaleMango(channels=1, size=8, scales=2, self_logit=True)) == {True}
    assert flags(MultiscaleMango(channels=1, size=8, scales=2)) == {False}
    assert "flow_self_logit" in FUSION_KEYS["mango"]
    kw = dict(in_channels=(3, 1), num_outputs=3, image_size=32, width=4, blocks=1, scales=2)
    model = build_model(ModelConfig(task="segmentation", fusion="mango", flow_self_logit=True, flow_gamma_mode="modality", **kw))
    assert flags(model) == {True} and model.config.to_dict()["flow_self_logit"] is True
    default = build_model(ModelConfig(task="segmentation", fusion="mango", **kw))
    assert flags(default) == {False} and "flow_self_logit" not in default.config.to_dict()  # stored configs unchanged
    concat = build_model(ModelConfig(task="segmentation", fusion="concat", flow_self_logit=True, **kw))
    assert "flow_self_logit" not in concat.config.to_dict()
    assert "flow_self_logit" not in concat.config.relevant_dict()
    rebuilt = build_model(ModelConfig.from_dict(model.config.to_dict()))
    assert flags(rebuilt) == {True}
    a, b = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    assert torch.isfinite(model(a, b).aux["flow_bpd"])


def test_multiscale_with_self_logit_round_trips():
    torch.manual_seed(0)
    m = MultiscaleMango(channels=1, size=8, scales=2, gamma_mode="token", gamma_rate=5.0, alternate=True,
                        self_logit=True).double()
    xa, xb = torch.randn(3, 1, 8, 8, dtype=D64), torch.randn(3, 1, 8, 8, dtype=D64)
    m.train()
    with torch.no_grad():
        m((xa, xb))  # ActNorm data init
    m.eval()
    perturb_parameters(m, 0.1, torch.Generator().manual_seed(2))
    z, ld = m((xa, xb))
    (ra, rb), ld_inv = m.inverse(z)
    assert torch.allclose(ra, xa, atol=1e-9) and torch.allclose(rb, xb, atol=1e-9)
    assert torch.allclose(ld_inv, -ld, atol=1e-8)


def test_alignment_toy_takes_self_logit():
    from mango_lite.training.alignment import alignment_layer, alignment_study

    layer = alignment_layer(8, 2, gamma_mode="modality", self_logit=True)
    assert layer.self_logit and layer.gamma_mode == "modality"
    control = alignment_layer(8, 2, attention=False, self_logit=True)
    assert control.inert and not control.self_logit  # the control stays the identity, with no extra parameter
    study = alignment_study(seeds=(0,), tokens=8, dim=2, shift=2, steps=5, gamma_mode="modality", self_logit=True)
    (row,) = study["rows"]
    assert study["self_logit"] is True and row["self_logit_offset"] != 0.0 and 0 < row["self_weight_b"] < 1
    plain = alignment_study(seeds=(0,), tokens=8, dim=2, shift=2, steps=0)
    assert plain["self_logit"] is False and plain["rows"][0]["self_logit_offset"] == 0.0


def test_the_token_read_is_scaled_by_one_over_sqrt_d_and_not_by_the_gate_rate():
    """gamma_i = tanh(r (g_h + b_i) + w . LN(x1_i) / sqrt(D)): the read of X1 is not sped up by the rate (with
    D weights each moved about lr per Adam step, rate 10 made gamma saturate at -1 in the task models)."""
    torch.manual_seed(0)
    d = 64
    m = ICA(dim=d, tokens=4, partition="imca", gamma=0.1, gamma_rate=10.0, gamma_mode="token")
    with torch.no_grad():
        m.gamma_proj.copy_(torch.randn_like(m.gamma_proj))
        m.gamma_row.copy_(0.01 * torch.randn_like(m.gamma_row))
    x1 = torch.randn(2, 4, d)
    read = torch.nn.functional.layer_norm(x1, (d,)) @ m.gamma_proj.T / d ** 0.5  # (B, T, heads)
    want = torch.tanh(m.gamma_rate * (m.gate[:, None] + m.gamma_row)[None] + read.transpose(1, 2))
    assert torch.allclose(m.row_gamma(x1), want, atol=1e-6)
    assert m.row_gamma(x1).abs().max() < 0.999  # unit-variance weights keep it off saturation
