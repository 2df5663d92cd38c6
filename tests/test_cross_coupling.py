"""The cross-modal Glow (mango_lite.flows.cross_coupling), the coupling-only control of the density study:
three checks in float64 with perturbed parameters, the cross-modal pathway (present here, absent in MANGO's
own coupling), the parameter budget, live parameter counts, shape errors and the density-study variant."""

from __future__ import annotations

import math

import pytest
import torch

from mango_lite.flows import (
    Coupling,
    CrossModalCoupling,
    CrossModalGlow,
    MangoBlock,
    MultiscaleMango,
    live_parameter_count,
    perturb_parameters,
)
from mango_lite.flows.cross_coupling import CrossGlowBlock, cross_glow_matching, glow_hidden_for_budget
from tests.conftest import jacobian_logdet, multiscale_jacobian_logdet

D64 = torch.float64


def _perturbed(module: torch.nn.Module, std: float = 0.3) -> torch.nn.Module:
    """float64, eval mode (no ActNorm data init), every parameter moved off its (identity) start."""
    module = module.double().eval()
    return perturb_parameters(module, std=std, generator=torch.Generator().manual_seed(1))


def _three_checks(module, x, atol=1e-9):
    z, ld = module(x)
    assert ld.shape == (x.shape[0],)
    assert not torch.allclose(z, x), "the perturbed module should not be the identity"
    xr, ld_inv = module.inverse(z)
    assert torch.allclose(xr, x, atol=atol, rtol=0), f"round trip error {(xr - x).abs().max():.3g}"
    assert torch.allclose(ld + ld_inv, torch.zeros_like(ld), atol=atol), "log-dets do not cancel"
    jac = jacobian_logdet(lambda v: module(v)[0], x)
    assert torch.allclose(ld, jac, atol=1e-7, rtol=1e-9), f"logdet {ld} vs Jacobian {jac}"
    assert ld.abs().max() > 1e-3, "a log-det of ~0 would not test the log-det"


# ----------------------------------------------------------------------------------------------------
# the coupling


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("dim,grid", [(2, (2, 3)), (5, (3, 2))])
def test_cross_modal_coupling_three_checks_perturbed(flip, dim, grid):
    m = _perturbed(CrossModalCoupling(dim, grid, hidden=6, flip=flip))
    _three_checks(m, torch.randn(2, 2 * grid[0] * grid[1], dim, dtype=D64))


def test_cross_modal_coupling_is_identity_at_init_and_clamps_its_scale():
    m = CrossModalCoupling(4, (2, 2)).double()
    x = torch.randn(2, 8, 4, dtype=D64)
    z, ld = m(x)
    assert torch.equal(z, x) and torch.equal(ld, torch.zeros(2, dtype=D64))
    torch.nn.init.normal_(m.net.out.weight, std=100.0)  # huge raw log-scales: tanh-clamped to +-clamp per entry
    _, ld = m(x)
    assert ld.abs().max() <= m.clamp * 8 * m.n_ch + 1e-9


def test_cross_glow_block_three_checks_perturbed():
    m = _perturbed(CrossGlowBlock(4, (2, 2), hidden=5, steps=3))
    _three_checks(m, torch.randn(2, 8, 4, dtype=D64))


def test_cross_modal_glow_three_checks_density_and_sampling():
    m = CrossModalGlow(channels=1, size=(4, 8), scales=2, blocks=2, hidden=5, steps=2).double()
    xa, xb = torch.randn(3, 1, 4, 8, dtype=D64), torch.randn(3, 1, 4, 8, dtype=D64)
    m.train()
    with torch.no_grad():
        m((xa, xb))  # ActNorm data init
    _perturbed(m, std=0.1)
    zs, ld = m((xa, xb))
    assert [tuple(z.shape) for z in zs] == [(3, 2, 2, 2, 4), (3, 2, 8, 1, 2)]
    (ra, rb), ld_inv = m.inverse(zs)
    assert torch.allclose(ra, xa, atol=1e-9) and torch.allclose(rb, xb, atol=1e-9)
    assert torch.allclose(ld + ld_inv, torch.zeros(3, dtype=D64), atol=1e-9)
    jac = multiscale_jacobian_logdet(m, xa, xb)
    assert torch.allclose(ld[:1], jac, atol=1e-7)
    enc = m.encode((xa, xb))
    prior = sum(torch.distributions.Normal(0.0, 1.0).log_prob(z).flatten(1).sum(1) for z in zs)
    assert torch.allclose(enc.log_prob, prior + ld)
    assert torch.allclose(m.bits_per_dim((xa, xb), n_bins=256), -enc.log_prob / (64 * math.log(2)) + 8)
    sa, sb = m.sample(2)
    assert sa.shape == sb.shape == (2, 1, 4, 8) and torch.isfinite(sa).all()


def test_cross_modal_glow_sets_every_attribute_multiscale_mango_methods_read():
    """CrossModalGlow inherits MultiscaleMango's methods but builds its own skeleton: it must set everything
    MultiscaleMango's constructor sets (fails when multiscale.py grows an attribute this file lacks)."""
    mango, glow = MultiscaleMango(1, 8, 2, 1), CrossModalGlow(1, 8, 2, 1, hidden=4)
    missing = set(vars(mango)) - set(vars(glow))
    assert not missing, f"CrossModalGlow lacks {sorted(missing)}"
    assert set(mango._modules) <= set(glow._modules)
    assert glow.latent_shapes == mango.latent_shapes and glow.feature_channels == mango.feature_channels


# ----------------------------------------------------------------------------------------------------
# the cross-modal pathway


def _cross_blocks(module, t: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """|d out_A / d in_B| and |d out_B / d in_A| per (output token, input token), summed over channels."""
    x = torch.randn(1, 2 * t, d, dtype=D64)
    jac = torch.autograd.functional.jacobian(lambda v: module(v.view(1, 2 * t, d))[0].reshape(-1), x.reshape(-1))
    jac = jac.view(2 * t, d, 2 * t, d).abs().sum((1, 3))
    return jac[:t, t:], jac[t:, :t]


def test_cross_modal_coupling_reads_the_other_modality():
    grid, d = (2, 3), 4
    t = grid[0] * grid[1]
    ab, ba = _cross_blocks(_perturbed(CrossModalCoupling(d, grid, hidden=6)), t, d)
    # every token of A depends on B's co-located cell (and its 3x3 neighbours), and vice versa
    assert (ab.diagonal() > 1e-6).all() and (ba.diagonal() > 1e-6).all()


def test_mango_coupling_has_no_cross_modal_pathway_except_the_token_conditioners_boundary():
    grid, d = (2, 3), 4
    t = grid[0] * grid[1]
    # the 3x3 grid conditioner (the study layout): no dependence across the modalities at all
    ab, ba = _cross_blocks(_perturbed(Coupling(d, hidden=6, grid=grid)), t, d)
    assert torch.equal(ab, torch.zeros_like(ab)) and torch.equal(ba, torch.zeros_like(ba))
    # and so the whole MANGO block with gamma fixed at 0 (the "no attention" control) factorises
    block = _perturbed(MangoBlock(d, t, gamma=0.0, learn_gamma=False, grid=grid, conditioner="grid"))
    ab, ba = _cross_blocks(block, t, d)
    assert torch.equal(ab, torch.zeros_like(ab)) and torch.equal(ba, torch.zeros_like(ba))
    # the paper's token conditioner (kernel 3 along A's tokens then B's) leaks across the boundary only:
    # A's last token reads B's first and vice versa
    ab, ba = _cross_blocks(_perturbed(Coupling(d, hidden=6)), t, d)
    leak = torch.zeros_like(ab, dtype=torch.bool)
    leak[t - 1, 0] = True
    assert ab[t - 1, 0] > 1e-6 and torch.equal(ab[~leak], torch.zeros_like(ab[~leak]))
    assert ba[0, t - 1] > 1e-6 and torch.equal(ba[~leak.T], torch.zeros_like(ba[~leak.T]))


# ----------------------------------------------------------------------------------------------------
# parameters


@pytest.mark.parametrize("preset,layout", [("quick", "study"), ("cpu", "study"), ("cpu", "paper")])
def test_cross_glow_matches_mangos_live_parameter_budget(preset, layout):
    from mango_lite.presets import get_preset
    from mango_lite.training.density import STUDY_LAYOUT

    p = get_preset(preset)
    mango = {} if layout == "paper" else dict(STUDY_LAYOUT)
    m = cross_glow_matching(1, p.density_size, 2, p.density_blocks, mango, steps=4)
    target = live_parameter_count(MultiscaleMango(1, p.density_size, 2, p.density_blocks, **mango))
    glow = CrossModalGlow(1, p.density_size, 2, p.density_blocks, hidden=m["hidden"], steps=4)
    assert m["target"] == target and m["params"] == live_parameter_count(glow)
    assert 0.9 <= m["params"] / target <= 1.1, m
    # the width is the closest one: one unit more or less is further from the budget
    for h in (m["hidden"] - 1, m["hidden"] + 1):
        if h >= 1:
            other = live_parameter_count(CrossModalGlow(1, p.density_size, 2, p.density_blocks, hidden=h, steps=4))
            assert abs(other - target) >= abs(m["params"] - target)


def test_glow_hidden_for_budget_bisects_a_monotone_count():
    count = lambda h: 7 * h * h + 3  # noqa: E731 - a stand-in for a flow's parameter count
    for target in (1, 10, 500, 12345):
        h = glow_hidden_for_budget(lambda w: w, target, count=count)
        best = min(range(1, 200), key=lambda w: (abs(count(w) - target), w))
        assert h == best
    with pytest.raises(ValueError, match="no width up to 8"):
        glow_hidden_for_budget(lambda w: w, 10**6, count=count, limit=8)


@pytest.mark.parametrize("make", [
    lambda: MultiscaleMango(1, 8, 2, 1, alternate=True, positions=True, gamma_rate=10.0, conditioner="grid"),
    lambda: MultiscaleMango(1, 8, 2, 1, gamma=0.0, learn_gamma=False),
    lambda: CrossModalGlow(1, 8, 2, 1, hidden=3, steps=2),
])
def test_live_parameter_count_is_what_gradients_reach(make):
    """live_parameter_count == the number of parameter entries with a non-zero gradient of the likelihood
    (float64, every parameter perturbed so no zero-initialised layer blocks a path). Maps of at least 2 x 2
    cells: on a map one cell high, a 3x3 kernel's outer rows only ever read padding (not counted as dead)."""
    m = make().double()
    x = (torch.randn(4, 1, 8, 8, dtype=D64), torch.randn(4, 1, 8, 8, dtype=D64))
    m.train()
    with torch.no_grad():
        m(x)
    perturb_parameters(m.eval(), std=0.1, generator=torch.Generator().manual_seed(2))
    m.log_prob(x).sum().backward()
    reached = sum(int((p.grad != 0).sum()) for p in m.parameters() if p.grad is not None)
    assert live_parameter_count(m) == reached
    assert live_parameter_count(m) < sum(p.numel() for p in m.parameters())  # the LU masks are not counted


# ----------------------------------------------------------------------------------------------------
# errors


def test_bad_shapes_name_expected_and_got():
    m = CrossModalCoupling(4, (2, 3))
    with pytest.raises(ValueError, match=r"CrossModalCoupling x: expected 2\*tokens = 12 tokens .* got 10"):
        m(torch.randn(2, 10, 4))
    with pytest.raises(ValueError, match=r"CrossModalCoupling z: expected width dim = 4 on axis 2, got 3"):
        m.inverse(torch.randn(2, 12, 3))
    with pytest.raises(ValueError, match=r"expected a 3-D tensor .* got shape \(12, 4\)"):
        m(torch.randn(12, 4))
    with pytest.raises(ValueError, match="expected finite values"):
        m(torch.full((1, 12, 4), float("nan")))
    with pytest.raises(ValueError, match=r"CrossGlowBlock x: expected 2\*tokens = 8 tokens"):
        CrossGlowBlock(4, (2, 2), hidden=3, steps=1)(torch.randn(1, 6, 4))
    g = CrossModalGlow(1, 8, 2, 1, hidden=3)
    with pytest.raises(ValueError, match=r"CrossModalGlow: expected each modality of shape \(B, 1, 8, 8\), got \(2, 1, 8, 4\)"):
        g((torch.randn(2, 1, 8, 4), torch.randn(2, 1, 8, 4)))
    with pytest.raises(ValueError, match=r"CrossModalGlow.inverse: expected 2 latents, got 1"):
        g.inverse([torch.randn(1, 2, 2, 4, 4)])
    with pytest.raises(ValueError, match=r"CrossGridConditioner: expected 2 \* 2 \* 3 = 12 tokens"):
        m.net(torch.randn(1, 10, 2))


def test_constructor_errors_are_explicit():
    with pytest.raises(ValueError, match="grid must be"):
        CrossModalCoupling(4, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dim >= 2"):
        CrossModalCoupling(1, (2, 2))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        CrossGlowBlock(4, (2, 2), steps=0)
    with pytest.raises(ValueError, match=r"size \(6, 6\) must be divisible by 2\*\*scales = 4"):
        CrossModalGlow(1, 6, 2, 1)


# ----------------------------------------------------------------------------------------------------
# the density study's variant


def test_density_study_fits_the_cross_modal_glow_and_compares_it_paired_by_seed():
    from mango_lite.datasets.toy import two_modality_shapes
    from mango_lite.training.density import (
        CROSS_GLOW,
        DENSITY_VARIANTS,
        STUDY_LAYOUT,
        build_density_flow,
        density_comparisons,
        density_markdown,
        density_study,
    )

    assert DENSITY_VARIANTS[CROSS_GLOW]["budget"] == STUDY_LAYOUT
    train, val = two_modality_shapes(16, 8, seed=0), two_modality_shapes(8, 8, seed=1)
    names = ("mango, study changes", "study changes, no attention", CROSS_GLOW)
    res = density_study(train, val, size=8, blocks=1, steps=2, seeds=(0, 1),
                        variants={k: DENSITY_VARIANTS[k] for k in names})
    g = res["variants"][CROSS_GLOW]
    assert len(g["val_bpd"]) == 2 and all(math.isfinite(x) for x in g["val_bpd"])
    assert g["resolved"]["hidden"] >= 1 and 0.9 <= g["live_params"] / res["variants"][names[0]]["live_params"] <= 1.1
    # the gamma = 0 twin keeps its attention's parameters on paper, not alive
    assert res["variants"][names[1]]["live_params"] < 0.7 * res["variants"][names[0]]["live_params"]
    flow = build_density_flow(1, 8, 1, g["resolved"])
    assert isinstance(flow, CrossModalGlow) and live_parameter_count(flow) == g["live_params"]
    comps = {(c["a"], c["b"]): c for c in density_comparisons(res)}
    c = comps[("mango, study changes", CROSS_GLOW)]
    a, b = res["variants"]["mango, study changes"]["val_bpd"], g["val_bpd"]
    assert c["differences"] == pytest.approx([y - x for x, y in zip(a, b)])  # > 0: attention lowers bits/dim
    assert c["verdict"] in ("better", "worse", "no difference shown")
    md = density_markdown(res)
    assert f"- mango, study changes vs {CROSS_GLOW} (attention against cross-modal coupling, paired by seed)" in md
    assert f"- {CROSS_GLOW} vs study changes, no attention (cross-modal coupling against no cross-modal pathway" in md
    assert "live params" in md
    with pytest.raises(ValueError, match="unknown flow 'nope'"):
        build_density_flow(1, 8, 1, {"flow": "nope"})
