"""MANGO's mechanisms: alternating triangles, 2-D positions on Q/K, gamma's rate and the no-attention
control, the 2-D coupling conditioner, and the exactness of all of them with every parameter perturbed
away from its initial value (a zero-initialised term would hide a missing log-det)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mango_lite import ICA, MangoBlock, MultiscaleMango
from mango_lite.flows import Coupling, perturb_parameters
from mango_lite.flows.coupling import GridConditioner
from mango_lite.flows.ica import grid_position_code
from tests.conftest import jacobian_logdet, multiscale_jacobian_logdet

D64 = torch.float64


def _perturb(module: torch.nn.Module, std: float = 0.3) -> None:
    perturb_parameters(module, std)


def _three_checks(module, x, atol=1e-9, jac_atol=1e-7):
    z, ld = module(x)
    xr, ld_inv = module.inverse(z)
    assert torch.allclose(xr, x, atol=atol, rtol=0), f"round trip error {(xr - x).abs().max():.3g}"
    assert torch.allclose(ld + ld_inv, torch.zeros_like(ld), atol=atol), "log-dets do not cancel"
    jac = jacobian_logdet(lambda v: module(v)[0], x)
    assert torch.allclose(ld, jac, atol=jac_atol, rtol=1e-9), f"logdet {ld} vs Jacobian {jac}"
    return ld


# ------------------------------------------------------------------------------------------- ICA
@pytest.mark.parametrize("triangle", ["upper", "lower"])
@pytest.mark.parametrize("partition,variant", [("mmca", 1), ("imca", 2), ("lica", 0)])
@pytest.mark.parametrize("heads,qk_dim", [(1, None), (2, 4)])
@pytest.mark.parametrize("positions", [False, True])
def test_ica_options_three_checks_with_perturbed_parameters(triangle, partition, variant, heads, qk_dim, positions):
    m = ICA(dim=4, tokens=6, partition=partition, variant=variant, heads=heads, qk_dim=qk_dim, triangle=triangle,
            gamma_rate=5.0, grid=(2, 3) if positions else None).double()
    _perturb(m)
    x = torch.randn(2, 12, 4, dtype=D64)
    ld = _three_checks(m, x)
    assert ld.abs().min() > 1e-3  # the attention term is really there


def test_lower_triangle_gives_a_lower_triangular_attention():
    x = torch.randn(2, 12, 4, dtype=D64)
    for triangle, keep in (("upper", torch.triu), ("lower", torch.tril)):
        m = ICA(dim=4, tokens=6, partition="imca", triangle=triangle).double()
        s = m.attention_probs(m.partition.partition(x)[0])
        assert torch.equal(s, keep(s)) and (torch.diagonal(s, dim1=-2, dim2=-1) > 0).all()
    with pytest.raises(ValueError, match="triangle"):
        ICA(dim=4, tokens=6, triangle="left")


def test_alternation_lets_values_move_both_ways_between_modalities():
    """In IMCA, X2 holds half of A's tokens, then half of B's. Upper triangle: only A's tokens receive
    values from B's. Lower: only B's from A's. A block that alternates therefore moves values both ways."""
    t = 6
    x = torch.randn(1, 2 * t, 4, dtype=D64)
    received = {}
    for triangle in ("upper", "lower"):
        m = ICA(dim=4, tokens=t, partition="imca", variant=0, triangle=triangle, gamma=0.5).double()
        mix = m.mixing_matrix(x)[0, 0] - torch.eye(2 * t, dtype=D64)  # value path minus identity
        received[triangle] = (mix[t:, :t].abs().sum().item(), mix[:t, t:].abs().sum().item())  # B<-A, A<-B
    assert received["upper"][0] == 0 and received["upper"][1] > 0
    assert received["lower"][0] > 0 and received["lower"][1] == 0
    block = MangoBlock(dim=4, tokens=t, alternate=True)
    tri = [m.triangle for m in block.modules() if isinstance(m, ICA)]
    assert tri == ["upper", "lower"] * 4


# ----------------------------------------------------------------------------------------- positions
@pytest.mark.parametrize("side,dim", [(4, 16), (8, 16), (8, 32), (16, 64)])
def test_grid_position_code_peaks_at_the_same_cell_and_falls_with_distance(side, dim):
    code = grid_position_code(side, side, dim)
    assert code.shape == (side * side, dim)
    sim = code @ code.T
    assert torch.equal(sim.argmax(1), torch.arange(side * side))  # each cell is most similar to itself
    # along a row and down a column, similarity falls over the nearest three cells
    for line in (sim[0, :4], sim[0, : 4 * side : side]):
        assert (line[:-1] > line[1:]).all(), line


def test_grid_position_code_small_widths():
    assert grid_position_code(2, 3, 2).shape == (6, 2)
    assert grid_position_code(2, 3, 6).shape == (6, 6)


def test_positions_steer_attention_but_not_the_values():
    x = torch.randn(2, 8, 4, dtype=D64)
    torch.manual_seed(1)
    plain = ICA(dim=4, tokens=4, partition="mmca").double()
    torch.manual_seed(1)
    pos = ICA(dim=4, tokens=4, partition="mmca", grid=(2, 2)).double()
    x1 = plain.partition.partition(x)[0]
    assert not torch.allclose(plain.attention_probs(x1), pos.attention_probs(x1))
    # the code is a function of X1's positions only: X2 enters linearly, so A is unchanged when X2 changes
    x_b = x.clone()
    x_b[:, 4:] += 1.0
    assert torch.equal(pos.attention_probs(pos.partition.partition(x_b)[0]), pos.attention_probs(x1))
    # LICA takes the positions of the tokens its X1 starts as: a permutation of the original 2T
    lica = ICA(dim=4, tokens=4, partition="lica", grid=(2, 2))
    idx = lica.partition.x1_positions()
    w = lica.partition.mixer.weight()
    assert torch.equal(w[:4].argmax(1), idx)
    with pytest.raises(ValueError, match="grid"):
        ICA(dim=4, tokens=4, grid=(3, 3))


def test_lica_positions_follow_a_loaded_permutation():
    """X1's codes are gathered once; a checkpoint carries LICA's own starting permutation, so loading it
    must gather them again (else the loaded layer attends with another layer's positions)."""
    torch.manual_seed(0)
    saved = ICA(dim=4, tokens=8, partition="lica", grid=(2, 4))
    torch.manual_seed(1)
    fresh = ICA(dim=4, tokens=8, partition="lica", grid=(2, 4))
    assert not torch.equal(saved.x1_position_code, fresh.x1_position_code)
    fresh.load_state_dict(saved.state_dict())
    assert torch.equal(fresh.x1_position_code, saved.position_code[fresh.partition.x1_positions()])
    x = torch.randn(2, 16, 4)
    assert torch.equal(fresh(x)[0], saved(x)[0])


# -------------------------------------------------------------------------------------------- gamma
def test_gamma_rate_keeps_the_start_and_lets_adam_move_gamma_faster():
    moves = {}
    for rate in (1.0, 10.0):
        m = ICA(dim=4, tokens=4, gamma=0.1, gamma_rate=rate)
        assert torch.allclose(m.gamma, torch.tensor([0.1]))
        opt = torch.optim.Adam(m.parameters(), lr=1e-3)
        x = torch.randn(3, 8, 4)
        for _ in range(5):
            opt.zero_grad()
            m(x)[0].square().mean().backward()
            opt.step()
        moves[rate] = (m.gamma - 0.1).abs().item()
    assert moves[10.0] > 5 * moves[1.0]
    with pytest.raises(ValueError, match="gamma_rate"):
        ICA(dim=4, tokens=4, gamma_rate=0.0)


def test_no_attention_control_is_the_identity_with_a_fixed_gamma():
    m = ICA(dim=4, tokens=4, partition="lica", gamma=0.0, learn_gamma=False).double()
    assert "gate" not in dict(m.named_parameters()) and m.inert
    x = torch.randn(2, 8, 4, dtype=D64)
    z, ld = m(x)
    assert torch.equal(z, x) and torch.equal(ld, torch.zeros(2, dtype=D64))
    assert torch.equal(m.inverse(z)[0], x)
    fixed = ICA(dim=4, tokens=4, gamma=0.3, learn_gamma=False)
    assert "gate" not in dict(fixed.named_parameters()) and not fixed.inert
    assert torch.allclose(fixed.gamma, torch.tensor([0.3]))


def test_key_norm_has_no_dead_bias_and_old_checkpoints_load():
    m = ICA(dim=4, tokens=4)
    assert m.key_norm.bias is None
    state = dict(m.state_dict())
    state["key_norm.bias"] = torch.zeros(4)  # what checkpoints written before the fix carry
    ICA(dim=4, tokens=4).load_state_dict(state)


# -------------------------------------------------------------------------------------- conditioner
def test_grid_conditioner_sees_a_3x3_neighbourhood_per_modality_without_wrap():
    h, w = 3, 4
    net = GridConditioner(2, 2, 8, (h, w)).double()
    _perturb(net, 0.5)
    x = torch.randn(1, 2 * h * w, 2, dtype=D64)
    jac = torch.autograd.functional.jacobian(lambda v: net(v).sum(-1), x)[0, :, 0].abs().sum(-1)  # (out, in)
    dep = jac > 0

    def tok(mod, r, c):
        return mod * h * w + r * w + c

    # token (A, row 0, last col): its right neighbour in raster order is (A, row 1, col 0) - no wrap
    assert not dep[tok(0, 1, 0), tok(0, 0, w - 1)]
    assert dep[tok(0, 1, w - 1), tok(0, 0, w - 1)]  # the cell below is a neighbour
    assert dep[tok(0, 1, 1), tok(0, 0, 0)]  # diagonal neighbour
    assert not dep[tok(0, 2, 0), tok(0, 0, 0)]  # two rows away
    # no mixing between the modalities' maps
    assert not dep[: h * w, h * w :].any() and not dep[h * w :, : h * w].any()


@pytest.mark.parametrize("flip", [False, True])
def test_grid_coupling_three_checks(flip):
    m = Coupling(5, hidden=8, flip=flip, grid=(2, 3)).double()
    _perturb(m)
    _three_checks(m, torch.randn(2, 12, 5, dtype=D64))


# ------------------------------------------------------------------------------------- composites
def test_mango_block_with_every_option_three_checks_perturbed():
    m = MangoBlock(dim=4, tokens=4, heads=2, alternate=True, gamma_rate=10.0, grid=(2, 2), positions=True,
                   conditioner="grid").double()
    x = torch.randn(3, 8, 4, dtype=D64)
    m.train()
    with torch.no_grad():
        m(x)
    m.eval()
    _perturb(m, 0.2)
    _three_checks(m, x[:2], atol=1e-8)
    with pytest.raises(ValueError, match="grid"):
        MangoBlock(dim=4, tokens=4, positions=True)


@pytest.mark.parametrize("options", [{}, {"alternate": True, "positions": True, "conditioner": "grid", "gamma_rate": 10.0}])
def test_multiscale_two_scales_perturbed_every_logdet_term_counts(options):
    """Every parameter perturbed (ActNorm, LU, ICA incl. gamma and temperature, coupling, split prior):
    the log-det equals the Jacobian's, and each module's own log-det is non-zero in that state."""
    m = MultiscaleMango(channels=1, size=(4, 8), scales=2, blocks=1, heads=1, **options).double()
    xa, xb = torch.randn(3, 1, 4, 8, dtype=D64), torch.randn(3, 1, 4, 8, dtype=D64)
    m.train()
    with torch.no_grad():
        m((xa, xb))
    m.eval()
    _perturb(m, 0.2)
    zs, ld = m((xa, xb))
    (ra, rb), ld_inv = m.inverse(zs)
    assert torch.allclose(ra, xa, atol=1e-8) and torch.allclose(rb, xb, atol=1e-8)
    assert torch.allclose(ld + ld_inv, torch.zeros(3, dtype=D64), atol=1e-8)
    jac = multiscale_jacobian_logdet(m, xa, xb)
    assert torch.allclose(ld[:1], jac, atol=1e-7)
    # each log-det term is live: record every module's own log-det on the way
    terms: dict[str, float] = {}
    hooks = []
    for name, mod in m.named_modules():
        kind = type(mod).__name__
        if kind in ("ActNorm", "InvertibleLinearLU", "InvertibleCrossAttention", "Coupling", "Split"):
            hooks.append(mod.register_forward_hook(
                lambda mod_, inp, out, name=name, kind=kind: terms.__setitem__(name, (kind, float(out[1][0].abs())))))
    with torch.no_grad():
        m((xa, xb))
    for h in hooks:
        h.remove()
    kinds = {k for k, _ in terms.values()}
    assert kinds == {"ActNorm", "InvertibleLinearLU", "InvertibleCrossAttention", "Coupling", "Split"}
    dead = [n for n, (k, v) in terms.items() if v < 1e-6 and not n.endswith("mixer")]
    assert not dead, f"log-det terms that are zero after perturbation: {dead}"


# ------------------------------------------------------------------------------ controls and harness
def _tiny_preset():
    from mango_lite.presets import get_preset

    return get_preset("quick").with_overrides(image_size=16, n_train=8, n_val=4, epochs=1, batch_size=4, width=8,
                                              blocks=1, scales=1)


def test_controls_differ_from_mango_in_one_mechanism_only():
    from mango_lite.models import ModelConfig, build_model, count_parameters
    from mango_lite.training.tasks import CONTROL_MODELS, resolve_model

    kw = dict(in_channels=(3, 1), num_outputs=5, image_size=32, width=8, blocks=1, scales=2)
    mango = build_model(ModelConfig(task="segmentation", fusion="mango", **kw))
    ica = [m for m in mango.modules() if isinstance(m, ICA)]
    for name, over in CONTROL_MODELS.items():
        assert resolve_model("segmentation", name) == "mango"
        ctl = build_model(ModelConfig(task="segmentation", fusion="mango", **kw, **over))
        gates = sum(m.heads for m in ica)
        diff = count_parameters(mango)["total"] - count_parameters(ctl)["total"]
        assert diff in (0, gates), name  # the same model, less at most the gamma scalars
        ctl_ica = [m for m in ctl.modules() if isinstance(m, ICA)]
        if name == "mango-noattn":
            assert all(m.inert and float(m.gamma.abs().max()) == 0.0 for m in ctl_ica)
        if name == "mango-paper":
            assert all(float(m.gamma.min()) == 1.0 for m in ctl_ica)
        if name == "mango-nonll":
            assert ctl.flow_weight == 0.0
        if name == "mango-nll-encoders":
            assert ctl.config.flow_nll_to_encoders is True and mango.config.flow_nll_to_encoders is False
            assert ctl.fusion.nll_to_encoders and not mango.fusion.nll_to_encoders


def test_no_likelihood_control_gets_no_gradient_from_the_nll_but_logs_it():
    from mango_lite.models import ModelConfig, build_model

    kw = dict(in_channels=(3, 1), num_outputs=5, image_size=32, width=8, blocks=1, scales=2)
    a, b = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    y = torch.randint(0, 5, (2, 32, 32))
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = build_model(ModelConfig(task="segmentation", fusion="mango", flow_weight=weight, **kw)).eval()
        out = model(a, b)
        total, parts = model.loss(out, y)
        assert "flow_bpd" in parts and "identity_bpd" in parts and "gamma_mean" in parts
        task_only = torch.nn.functional.cross_entropy(out.pred, y)
        if weight == 0.0:
            assert total.item() == pytest.approx(task_only.item())
        else:
            assert total.item() == pytest.approx(task_only.item() + parts["flow_bpd"], rel=1e-5)


def test_identity_bpd_is_the_standard_normal_score_of_the_flow_input():
    from mango_lite.models import ModelConfig, build_model

    model = build_model(ModelConfig(task="segmentation", fusion="mango",
                                    in_channels=(3, 1), num_outputs=5, image_size=32, width=8,
                        blocks=1, scales=2)).eval()
    a, b = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    out = model(a, b)
    fa, fb = model.encode(a, b)
    normal = torch.distributions.Normal(0.0, 1.0)
    ref = -(normal.log_prob(fa).mean() + normal.log_prob(fb).mean()) / 2 / math.log(2)
    assert out.aux["identity_bpd"].item() == pytest.approx(ref.item(), rel=1e-5)


def test_plan_runs_selects_controls_only_when_asked():
    from mango_lite.training import plan_runs

    default = plan_runs("quick", tasks=["segmentation"])
    assert not any(m.startswith("mango-") for g in default for m in g.models)
    asked = plan_runs("quick", tasks=["segmentation"], models=["mango", "controls"])
    assert asked[0].models == ("mango", "mango-noattn", "mango-nonll", "mango-paper", "mango-nll-encoders")


def test_mechanism_study_trains_merges_and_compares(tmp_path):
    from mango_lite.training.mechanisms import (
        compare,
        control_variants,
        ladder_variants,
        merge_studies,
        run_study,
        study_markdown,
    )

    preset = _tiny_preset()
    rows = control_variants({"flow_alternate": True}, ("mango", "mango-noattn"))
    assert rows[1][2] == {"flow_alternate": True, "flow_gamma": 0.0, "flow_learn_gamma": False}
    kw = dict(preset=preset, cache_dir=tmp_path / "data")
    r0 = run_study("segmentation", rows, seeds=(0,), out=tmp_path / "s0", **kw)
    r1 = run_study("segmentation", rows, seeds=(1,), out=tmp_path / "s1", **kw)
    run = r0["rows"]["mango-noattn"]["runs"]["0"]
    assert run["gammas"] and all(g == 0.0 for g in run["gammas"])
    assert run["val_flow_bpd"] is not None and run["val_identity_bpd"] is not None and run["step_ms"] > 0
    assert abs(r0["rows"]["mango"]["runs"]["0"]["gammas"][0]) > 0
    merged = merge_studies([tmp_path / "s0", tmp_path / "s1"])
    assert merged["seeds"] == [0, 1] and merged["rows"]["mango"]["summary"]["metric"]["n"] == 2
    c = compare(merged, "mango", "mango-noattn")
    assert c is not None and c["seeds"] == 2
    assert "mango vs mango-noattn" in study_markdown(merged)
    # a resumed study reads finished runs back instead of retraining them
    again = run_study("segmentation", rows, seeds=(0,), out=tmp_path / "s0", **kw)
    assert again["rows"]["mango"]["runs"]["0"] == r0["rows"]["mango"]["runs"]["0"]
    # ... but only when trained under the same preset and protocol, and each run only when the model it stored is
    # the one its variant builds today: a changed default retrains it, a ModelConfig field added does not
    import json

    path = tmp_path / "s0" / "mechanisms.json"
    assert r0["rows"]["mango"]["runs"]["0"]["model_config"]["flow_gamma_rate"] == 1.0
    for changed, kept in ((None, True), ("model_defaults", True), ("model_config", False), ("preset_config", False)):
        stored = json.loads(path.read_text())
        stored["rows"]["mango"]["runs"]["0"]["metric"] = -1.0  # a sentinel: kept only if the run is read back
        if changed == "model_defaults":
            stored[changed]["a_field_added_later"] = 1  # the defaults of another version, same model
        elif changed == "model_config":
            stored["rows"]["mango"]["runs"]["0"][changed]["flow_gamma_rate"] = 10.0  # trained before a default changed
        elif changed == "preset_config":
            stored[changed]["selection_split"] = not stored[changed]["selection_split"]
        path.write_text(json.dumps(stored))
        redo = run_study("segmentation", rows[:1], seeds=(0,), out=tmp_path / "s0", **kw)
        assert (redo["rows"]["mango"]["runs"]["0"]["metric"] == -1.0) is kept, changed
    with pytest.raises(Exception, match="differ"):
        merge_studies([tmp_path / "s0", {**r1, "preset": "cpu"}])
    names = [n for n, _, _ in ladder_variants()]
    assert names[0] == "before" and len(set(names)) == len(names)
    # every ladder row keeps the keys of the rows above it and changes exactly one setting
    over = [o for _, _, o in ladder_variants()]
    for above, below in zip(over, over[1:]):
        assert set(above) <= set(below)
        assert sum(above.get(k) != v for k, v in below.items()) == 1


def test_compare_computes_wins_and_the_one_std_rule():
    from mango_lite.training.mechanisms import compare, summarise

    def row(vals):
        runs = {str(i): {"metric": v} for i, v in enumerate(vals)}
        return {"runs": runs, "summary": summarise(runs)}

    rep = {"higher_is_better": True, "rows": {"mango": row([10.0, 11.0, 12.0]), "x": row([8.0, 8.5, 12.5])}}
    c = compare(rep, "mango", "x")
    assert c["diff"] == pytest.approx(11.0 - 29.0 / 3) and c["seeds_a_better"] == 2 and c["seeds"] == 3
    assert c["better_by_more_than_std"] is False  # the larger std (x: 2.47) exceeds the difference (1.33)
    assert c["paired"]["differences"] == [2.0, 2.5, -0.5] and c["paired"]["verdict"] == "no difference shown"
    rep["higher_is_better"] = False
    assert compare(rep, "mango", "x")["diff"] < 0
    # a small difference of the same sign in every seed: hidden by the unpaired stds, shown by the pairing
    rep = {"higher_is_better": True, "rows": {"mango": row([10.2, 12.18, 14.22]), "x": row([10.0, 12.0, 14.0])}}
    c = compare(rep, "mango", "x")
    assert c["better_by_more_than_std"] is False and c["paired"]["verdict"] == "better"
    rep["rows"]["x"] = row([10.4, 12.39, 14.41])
    assert compare(rep, "mango", "x")["paired"]["verdict"] == "worse"


def test_goals_summary_counts_tasks_from_groups():
    from mango_lite.training.mechanisms import goals_markdown, goals_summary, summarise

    def rep(task, pair, higher, mango, noattn, nonll, concat, flow=1.0, ident=2.0):
        rows = {}
        for name, vals in (("mango", mango), ("mango-noattn", noattn), ("mango-nonll", nonll), ("concat", concat)):
            runs = {str(i): {"metric": v, "val_flow_bpd": flow, "val_identity_bpd": ident,
                             "step_ms": 200.0 if name != "concat" else 100.0} for i, v in enumerate(vals)}
            rows[name] = {"model": name, "overrides": {}, "runs": runs, "summary": summarise(runs)}
        return {"task": task, "pair": pair, "dataset": "x", "metric": "m", "higher_is_better": higher, "rows": rows,
                "seeds": [0, 1, 2], "data": "generated stand-in"}

    reports = [
        rep("segmentation", None, True, [20, 21, 22], [17, 18, 19], [17, 18, 19], [19, 20, 21]),
        rep("translation", "p1", False, [1.0, 1.1, 1.2], [1.5, 1.6, 1.7], [1.5, 1.6, 1.7], [1.3, 1.3, 1.3]),
        rep("translation", "p2", False, [1.0, 1.1, 1.2], [1.05, 1.05, 1.3], [1.5, 1.6, 1.7], [0.9, 0.9, 0.9], flow=3.0),
        rep("genre", None, True, [20, 21, 22], [20.5, 21.6, 22.4], [17, 18, 19], [19, 20, 21]),
    ]
    s = goals_summary(reports)
    assert s["groups"]["segmentation/x"]["beats_every_control"] is True
    assert s["groups"]["translation/p2"]["controls"]["mango-noattn"]["better_by_more_than_std"] is False
    assert s["tasks"]["translation"]["beats_mango-noattn"] is False  # fails on one of its two groups
    assert s["tasks"]["translation"]["beats_mango-nonll"] is True
    assert s["tasks"]["translation"]["not_below_baseline"] is False and s["tasks"]["translation"]["flow_beats_identity"] is False
    assert s["groups"]["segmentation/x"]["step_ratio"] == pytest.approx(2.0)
    assert s["tasks"]["genre"]["worse_than_mango-noattn"] is True
    assert s["tasks"]["segmentation"]["worse_than_mango-noattn"] is False
    md = goals_markdown(s)
    assert ("Against mango-noattn: MANGO better in 2 of 4 groups (segmentation/x, translation/p1), worse in 1 "
            "(genre/x)") in md
    assert "**worse**" in md and "not below concat on 2 of 3 tasks" in md
    # the reading under the table is worded from the same verdicts and seed counts
    assert ("**The attention** (against `mango-noattn`: every γ fixed at 0, which also leaves the queries and keys "
            "untrained, so the control trains fewer parameters; the capacity study asks what that costs) shows a gain "
            "in 2 groups (segmentation/x, translation/p1) and a loss in 1 (genre/x); the paired seeds favour MANGO "
            "(8 of 12).") in md
    assert ("**The likelihood term** (against `mango-nonll`: NLL weight 0) shows a gain in 4 of 4 groups "
            "(segmentation/x, translation/p1, translation/p2, genre/x) and a loss in none") in md
    for g in s["groups"].values():  # every interval containing 0, the seeds split evenly
        g["controls"]["mango-noattn"]["paired"].update(verdict="no difference shown", wins=1, n=2)
    md = goals_markdown(s)
    assert ("shows neither a gain nor a loss in any of the 4 groups (every interval contains 0); the paired seeds "
            "favour neither side (4 of 8 each way).") in md
    for g in s["groups"].values():
        g["controls"]["mango-noattn"]["paired"].update(verdict="worse", wins=0, n=3)
    assert "shows a loss in 4 of 4 groups" in goals_markdown(s) and "favour mango-noattn (12 of 12)" in goals_markdown(s)


def test_density_study_runs_every_variant_and_seed():
    from mango_lite.datasets.toy import two_modality_shapes
    from mango_lite.training.density import density_study

    train, val = two_modality_shapes(32, 8, seed=0), two_modality_shapes(8, 8, seed=1)
    variants = {"mango": {}, "no attention": {"gamma": 0.0, "learn_gamma": False}}
    res = density_study(train, val, size=8, blocks=1, steps=3, seeds=(0, 1), variants=variants)
    assert set(res["variants"]) == {"mango", "no attention"}
    for v in res["variants"].values():
        assert len(v["val_bpd"]) == 2 and all(math.isfinite(x) for x in v["val_bpd"]) and v["std"] is not None
    # the no-attention flow has the same parameters less the gamma scalars
    assert res["variants"]["mango"]["params"] > res["variants"]["no attention"]["params"]
    assert math.isfinite(res["gaussian_bpd"])


def test_density_study_in_workers_and_resumed_gives_the_in_process_numbers(tmp_path):
    import json

    from mango_lite.datasets.toy import two_modality_shapes
    from mango_lite.training.density import density_study

    train, val = two_modality_shapes(32, 8, seed=0), two_modality_shapes(8, 8, seed=1)
    variants = {"mango": {}, "no attention": {"gamma": 0.0, "learn_gamma": False}}
    kw = dict(size=8, blocks=1, steps=3, seeds=(0, 1), variants=variants)
    here = density_study(train, val, **kw)
    ckpt = tmp_path / "partial.json"
    workers = density_study(train, val, jobs=2, checkpoint=ckpt, **kw)
    assert not ckpt.exists()  # removed once the study is complete
    for name in variants:
        assert workers["variants"][name]["val_bpd"] == pytest.approx(here["variants"][name]["val_bpd"], abs=1e-6)
    # a killed study: the kept fits are reused (a made-up value proves it), a changed setting is not
    kept = {"setting": {"size": 8, "blocks": 1, "steps": 3, "lr": 2e-3, "batch_size": 32, "n_train": 32, "n_val": 8},
            "fits": {"mango|0": {"val_bpd": 123.0, "params": 1, "live_params": 1, "resolved": {}}}}
    ckpt.write_text(json.dumps(kept))
    resumed = density_study(train, val, checkpoint=ckpt, **kw)
    assert resumed["variants"]["mango"]["val_bpd"][0] == 123.0
    assert resumed["variants"]["mango"]["val_bpd"][1] == pytest.approx(here["variants"]["mango"]["val_bpd"][1], abs=1e-6)
    ckpt.write_text(json.dumps({**kept, "setting": {**kept["setting"], "steps": 4}}))
    assert density_study(train, val, checkpoint=ckpt, **kw)["variants"]["mango"]["val_bpd"][0] != 123.0


def test_flow_weight_per_task_reaches_the_models():
    from mango_lite.presets import TASK_FLOW_WEIGHTS, get_preset
    from mango_lite.training.tasks import model_kwargs

    p = get_preset("quick")
    assert p.flow_weight_for("segmentation") == TASK_FLOW_WEIGHTS["segmentation"] == p.flow_weight
    assert p.flow_weight_for("translation") == TASK_FLOW_WEIGHTS["translation"] < p.flow_weight

    class _Data:  # what model_kwargs reads from TaskData
        in_channels, num_outputs, model_kwargs = (3, 1), 5, {}

    assert model_kwargs("translation", _Data(), p)["flow_weight"] == TASK_FLOW_WEIGHTS["translation"]
    given = p.with_overrides(tasks={"translation": {"model": {"flow_weight": 0.5}}})
    assert given.flow_weight_for("translation") == 0.5
    assert model_kwargs("translation", _Data(), given)["flow_weight"] == 0.5


def test_study_layout_is_the_ladders_last_row_and_gammas_are_recorded():
    from mango_lite.flows import FlowConfig
    from mango_lite.training.density import STUDY_LAYOUT, fit_density, layer_gammas
    from mango_lite.training.mechanisms import ladder_variants

    last = ladder_variants()[-1][2]
    assert {k: last[f"flow_{k}"] for k in STUDY_LAYOUT} == STUDY_LAYOUT
    # the task models differ from it only where the selection split's stage 2 changed a default
    defaults = FlowConfig.recommended()
    assert {k for k in STUDY_LAYOUT if getattr(defaults, k) != STUDY_LAYOUT[k]} == {"gamma_rate"}
    flow = MultiscaleMango(channels=1, size=8, scales=2, blocks=1, **STUDY_LAYOUT)
    data = (torch.rand(16, 1, 8, 8), torch.rand(16, 1, 8, 8))
    hist = fit_density(flow, data, data, steps=4, batch_size=8, eval_every=2, progress=False)
    assert len(hist.gammas) == len(hist.val_step) == 3
    assert len(hist.gammas[0]) == 2 * 8 and hist.gammas[-1] == layer_gammas(flow)
    assert hist.gammas[-1] != hist.gammas[0]  # gamma moved with rate 10


def test_default_keeps_the_nll_out_of_the_encoders_only():
    """MANGO's default against mango-nll-encoders: the same NLL value, no NLL gradient into the encoders,
    the same NLL gradient into the flow."""
    from mango_lite.models import ModelConfig, build_model

    kw = dict(in_channels=(3, 1), num_outputs=5, image_size=32, width=8, blocks=1, scales=2, flow_noise=0.0)
    a, b = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    grads = {}
    for to_enc in (True, False):
        torch.manual_seed(0)
        model = build_model(ModelConfig(task="segmentation", fusion="mango", flow_nll_to_encoders=to_enc, **kw))
        model.train()
        out = model(a, b)
        out.aux["flow_bpd"].backward()
        grads[to_enc] = {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
                         for n, p in model.named_parameters()}
        grads[to_enc]["bpd"] = out.aux["flow_bpd"].detach()
    assert torch.allclose(grads[True]["bpd"], grads[False]["bpd"])
    enc = [n for n in grads[True] if n.startswith("enc")]
    flow = [n for n in grads[True] if ".flow." in n]
    assert enc and flow
    assert any(grads[True][n].abs().max() > 0 for n in enc)
    assert all(grads[False][n].abs().max() == 0 for n in enc)
    for n in flow:
        assert torch.allclose(grads[True][n], grads[False][n], atol=1e-6, rtol=1e-4), n


def _two_pass_flow_bpd(fusion, fa, fb):
    """The likelihood as MANGO's default computed it before: a second flow pass on detached features."""
    with torch.autocast(fa.device.type, enabled=False):
        return fusion.flow.encode((fa.float().detach(), fb.float().detach())).bits_per_dim.mean()


class _NoFlowOnly:
    """Stands in for FlowOnlyLikelihood: the likelihood's gradient flows everywhere (the reference's own pass
    replaces it)."""

    def inputs(self, *xs):
        return xs

    def likelihood(self, loss):
        return loss


def test_flow_only_likelihood_gradient_equals_a_second_detached_pass(monkeypatch):
    """The default differentiates the likelihood of the *same* flow forward, its gradient kept out of the
    encoders. Every parameter's gradient of the whole training loss (task + lambda * NLL) must equal the one
    obtained with a second flow pass on detached features, and the encoders must get only the task's
    gradient. Parameters are perturbed so that no zero-initialised term hides a difference. In float32 the
    two sum the task's and the likelihood's gradients in a different order, so they agree to rounding
    (1e-4 of the largest entry); the float64 test below checks the mechanism to 1e-10."""
    from mango_lite.flows import perturb_parameters
    from mango_lite.models import ModelConfig, build_model, fusion as fusion_module

    kw = dict(in_channels=(3, 1), num_outputs=5, image_size=32, width=8, blocks=1, scales=2, flow_noise=0.0,
              flow_weight=0.5)
    a, b = torch.randn(4, 3, 32, 32), torch.randn(4, 1, 32, 32)
    y = torch.randint(0, 5, (4, 32, 32))
    grads, losses = {}, {}
    for how in ("one pass", "two passes"):
        torch.manual_seed(0)
        model = build_model(ModelConfig(task="segmentation", fusion="mango", **kw)).train()
        perturb_parameters(model, 0.05, generator=torch.Generator().manual_seed(1))
        if how == "two passes":  # the second, detached pass replaces the flow-only gradient
            calls = []
            original = fusion_module.MangoFusion.forward

            def forward(self, fa, fb, _original=original):
                out = _original(self, fa, fb)
                calls.append(1)
                out.aux["flow_bpd"] = _two_pass_flow_bpd(self, fa, fb)
                return out

            monkeypatch.setattr(fusion_module, "FlowOnlyLikelihood", _NoFlowOnly)
            monkeypatch.setattr(fusion_module.MangoFusion, "forward", forward)
        loss, _ = model.loss(model(a, b), y)
        loss.backward()
        losses[how] = loss.detach()
        grads[how] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        if how == "two passes":
            assert calls == [1]
    assert torch.allclose(losses["one pass"], losses["two passes"], rtol=1e-6)
    assert grads["one pass"].keys() == grads["two passes"].keys()
    flow = [n for n in grads["one pass"] if ".flow." in n]
    assert flow and any(n.startswith("enc") for n in grads["one pass"])
    for n, g in grads["one pass"].items():
        ref = grads["two passes"][n]
        assert torch.allclose(g, ref, atol=1e-4 * float(ref.abs().max()) + 1e-8, rtol=1e-4), n


def _encoders_flow_head():
    """A float64 model of the example's shape (two conv encoders, a MANGO flow, a linear head), parameters
    perturbed, and a batch of inputs."""
    from torch import nn

    from mango_lite.flows import FlowConfig, MultiscaleMango, perturb_parameters

    torch.manual_seed(0)
    enc_a, enc_b = nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(1, 4, 3, stride=2, padding=1)
    flow = MultiscaleMango(channels=4, size=4, scales=1, blocks=1, config=FlowConfig.recommended())
    head = nn.Linear(2 * flow.feature_channels[0], 3)
    model = nn.ModuleDict({"enc_a": enc_a, "enc_b": enc_b, "flow": flow, "head": head}).double()
    perturb_parameters(model, 0.1, generator=torch.Generator().manual_seed(2))
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(3, 3, 8, 8, generator=g, dtype=torch.float64), torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64)
    return model, a, b


def test_flow_only_likelihood_is_exact_in_float64():
    """FlowOnlyLikelihood against two separate passes, in float64 with perturbed parameters: the flow and the
    head get the gradient of task + 0.7 * NLL, the encoders the task's only, all to 1e-10; the inputs the
    likelihood is kept from get nothing when only the likelihood is differentiated."""
    from mango_lite.models.fusion import FlowOnlyLikelihood

    def run(mode):
        model, a, b = _encoders_flow_head()
        fa, fb = model["enc_a"](a), model["enc_b"](b)
        flow_only = FlowOnlyLikelihood() if mode == "flow only" else None
        if flow_only is not None:
            fa, fb = flow_only.inputs(fa, fb)
        enc = model["flow"].encode((fa, fb))
        task = model["head"](enc.features[0].flatten(1, 2).mean((2, 3))).square().mean()
        if mode == "flow only":
            nll = flow_only.likelihood(enc.bits_per_dim.mean())
        else:  # the reference: the likelihood of a second pass on detached features
            nll = model["flow"].encode((fa.detach(), fb.detach())).bits_per_dim.mean()
        (task + 0.7 * nll).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    got, ref = run("flow only"), run("two passes")
    assert got.keys() == ref.keys()
    for n in ref:
        assert torch.allclose(got[n], ref[n], rtol=1e-10, atol=1e-12 * float(ref[n].abs().max())), n
    assert any(ref[n].abs().max() > 0 for n in ref if n.startswith("enc"))

    model, a, b = _encoders_flow_head()  # the likelihood alone: nothing reaches the encoders
    flow_only = FlowOnlyLikelihood()
    enc = model["flow"].encode(flow_only.inputs(model["enc_a"](a), model["enc_b"](b)))
    flow_only.likelihood(enc.bits_per_dim.mean()).backward()
    assert all(p.grad is None or not p.grad.abs().max() for n, p in model.named_parameters() if n.startswith("enc"))
    assert any(p.grad is not None and p.grad.abs().max() > 0 for n, p in model.named_parameters() if n.startswith("flow"))


def test_flow_only_likelihood_passes_values_and_leaves_other_gradients_alone():
    """Values unchanged; inputs that need no gradient returned as they are; with no watched input the
    likelihood is returned as it is; a backward of the task alone reaches the inputs in full."""
    from mango_lite.models.fusion import FlowOnlyLikelihood

    w = torch.tensor([2.0, -1.0], requires_grad=True)
    x = torch.tensor([0.5, 3.0], requires_grad=True)
    const = torch.ones(2)
    flow_only = FlowOnlyLikelihood()
    xw, c = flow_only.inputs(x, const)
    assert c is const and torch.equal(xw, x)
    z = w * xw
    nll = flow_only.likelihood(z.square().sum())
    assert nll.item() == (w * x).square().sum().item()
    z.sum().backward(retain_graph=True)  # the task alone: x gets its whole gradient
    assert torch.equal(x.grad, w.detach())
    x.grad = w.grad = None
    (z.sum() + nll).backward()
    assert torch.allclose(x.grad, w.detach())  # the likelihood's 2 w^2 x removed
    assert torch.allclose(w.grad, x.detach() + 2 * w.detach() * x.detach() ** 2)
    import weakref

    alive = weakref.ref(flow_only)  # no reference cycle: freed with the graph, without the garbage collector
    del flow_only, xw, z, nll
    assert alive() is None
    unused = FlowOnlyLikelihood()  # nor when no backward ever runs
    (xw,) = unused.inputs(x)
    nll = unused.likelihood((w * xw).sum())
    alive = weakref.ref(unused)
    del unused, xw, nll
    assert alive() is None
    lone = FlowOnlyLikelihood()
    loss = (w * x).sum()
    assert lone.likelihood(loss) is loss


def test_no_likelihood_control_skips_the_detached_pass():
    """With weight 0 the NLL trains nothing, so MANGO's stop-gradient pass would be wasted work."""
    from mango_lite.models import ModelConfig, build_model

    kw = dict(in_channels=(3, 1), num_outputs=5, image_size=32, width=8, blocks=1, scales=2)
    assert build_model(ModelConfig(task="segmentation", fusion="mango", flow_weight=0.0, **kw)).fusion.nll_to_encoders
    assert not build_model(ModelConfig(task="segmentation", fusion="mango", **kw)).fusion.nll_to_encoders


def test_configs_written_before_the_default_changed_keep_their_meaning():
    """A MANGO configuration stored without ``flow_nll_to_encoders`` came from a model whose NLL reached the
    encoders: it must compare unequal to today's default (so --resume retrains it) and rebuild as it was."""
    from mango_lite.engine.trainer import config_differences
    from mango_lite.models import ModelConfig

    kw = dict(in_channels=(3, 1), num_outputs=5, image_size=32, width=8, blocks=1, scales=2)
    new = ModelConfig(task="segmentation", fusion="mango", **kw).to_dict()
    # a version-1 configuration: no version field, no key for an option it predates
    legacy = {k: v for k, v in new.items() if k not in ("flow_nll_to_encoders", "config_version")}
    assert config_differences(legacy, new) == ["flow_nll_to_encoders: True -> False"]
    joint = ModelConfig(task="segmentation", fusion="mango", flow_nll_to_encoders=True, **kw).to_dict()
    assert config_differences(legacy, joint) == []
    assert ModelConfig.from_dict(legacy).flow_nll_to_encoders is True
    concat = ModelConfig(task="segmentation", fusion="concat", **kw).to_dict()  # other fusions never read the key
    concat_v1 = {k: v for k, v in concat.items() if k not in ("flow_nll_to_encoders", "config_version")}
    assert config_differences(concat_v1, concat) == []


def test_effective_params_are_added_to_a_finished_study_and_shown_beside_the_nominal(tmp_path):
    import json
    import shutil
    from pathlib import Path

    from mango_lite.training.mechanisms import add_effective_params

    src = Path(__file__).resolve().parents[1] / "results" / "mechanisms" / "segmentation-nyudv2" / "mechanisms.json"
    report = json.loads(src.read_text())
    report["preset"] = "quick"  # the committed study's rows, built at the quick size (nothing is trained)
    (tmp_path / "mechanisms.json").write_text(json.dumps(report))
    got = add_effective_params(tmp_path, cache_dir=tmp_path / "data")["effective_params"]
    assert set(got) == set(report["rows"])
    assert got["mango"]["receiving_gradient"] == got["mango"]["nominal"]
    assert got["mango-noattn"]["receiving_gradient"] < 0.9 * got["mango-noattn"]["nominal"]
    md = (tmp_path / "mechanisms.md").read_text()
    assert "params (receiving a gradient)" in md
    assert f"({got['mango-noattn']['receiving_gradient'] / 1e6:.2f} M)" in md
    shutil.rmtree(tmp_path / "data")


def _control_study(seeds, mango, noattn, *, higher=True, device="cpu (2 cores)", dataset="nyudv2"):
    """A finished controls study with the given per-seed metrics of mango and mango-noattn."""
    rows = {name: {"runs": {str(s): {"metric": v, "device": device} for s, v in zip(seeds, vals)}}
            for name, vals in (("mango", mango), ("mango-noattn", noattn))}
    return {"task": "segmentation", "dataset": dataset, "pair": None, "preset": "cpu", "data": "generated stand-in",
            "metric": "miou", "higher_is_better": higher, "seeds": list(seeds), "rows": rows}


def test_replication_verdict_is_read_from_the_new_seeds_alone():
    from mango_lite.training.mechanisms import replication_markdown, replication_summary

    first = _control_study([0, 1, 2], [20.5, 20.9, 20.1], [19.8, 20.1, 19.5])  # mango ahead, interval above 0
    again = _control_study([3, 4, 5, 6], [19.5, 19.6, 19.4, 19.9], [18.9, 19.0, 19.0, 19.2], device="gpu")
    s = replication_summary(first, again)
    assert s["first_verdict"] == "better" and s["verdict"] == "replicated"
    assert s["replication"]["paired"]["n"] == 4 and s["replication"]["devices"] == ["gpu"]
    assert s["pooled"]["n"] == 7  # shown beside the verdict, over both studies' seeds
    assert "**replicated**" in replication_markdown(s)
    # a replication whose interval contains 0 does not replicate, however the pooled seeds lean
    flat = _control_study([3, 4, 5, 6], [19.5, 19.0, 19.4, 19.0], [19.0, 19.4, 19.1, 19.2])
    s = replication_summary(first, flat)
    assert s["verdict"] == "not replicated" and s["pooled"]["wins"] >= 4
    # one whose interval lies on the other side reverses the finding
    rev = _control_study([3, 4, 5, 6], [18.5, 18.6, 18.4, 18.9], [19.0, 19.0, 19.0, 19.3])
    assert replication_summary(first, rev)["verdict"] == "reversed"


def test_replication_wants_new_seeds_and_the_same_data():
    import pytest

    from mango_lite.errors import MangoLiteError
    from mango_lite.training.mechanisms import replication_summary

    first = _control_study([0, 1, 2], [20.5, 20.9, 20.1], [19.8, 20.1, 19.5])
    with pytest.raises(MangoLiteError, match=r"new seeds, got seeds \['2'\]"):
        replication_summary(first, _control_study([2, 3, 4], [1, 2, 3], [0, 1, 2]))
    with pytest.raises(MangoLiteError, match="differ in"):
        replication_summary(first, _control_study([3, 4, 5], [1, 2, 3], [0, 1, 2], dataset="sunrgbd"))


def test_the_capacity_control_is_a_valid_study_row_without_attention():
    """``mango-noattn-h408``: a controls-study row (a study model, not only a control), gamma fixed at 0 and
    not learned, its couplings wider than the default 4 x width."""
    from mango_lite.training.mechanisms import control_variants

    (name, model, over), = control_variants(models=["mango-noattn-h408"])
    assert name == model == "mango-noattn-h408"
    assert over["flow_gamma"] == 0.0 and over["flow_learn_gamma"] is False and over["flow_hidden"] == 408


def test_capacity_summary_reads_the_matched_control():
    from mango_lite.training.mechanisms import capacity_markdown, capacity_summary

    rep = _control_study([0, 1, 2], [20.5, 20.9, 20.1], [19.8, 20.1, 19.5])
    rep["rows"]["mango-noattn-h408"] = {"runs": {"0": {"metric": 20.0}, "1": {"metric": 20.3}, "2": {"metric": 19.7}}}
    s = capacity_summary(rep)
    assert s["gain"]["verdict"] == "better"
    assert abs(s["share_remaining"] - (0.5 / 0.7)) < 1e-9  # 0.5 of the 0.7 gain remains
    assert s["verdict"] in ("attention beyond capacity", "capacity not ruled out")
    assert "the extra capacity alone" in capacity_markdown(s)
    assert "seeds 0-2" in capacity_markdown(s) and "**attention beyond capacity**" in capacity_markdown(s)
    pooled = capacity_summary(rep, pooled=True)
    assert pooled["verdict"] is None and "no verdict is drawn" in capacity_markdown(pooled)
    rep["rows"]["mango-noattn-h408"]["runs"] = {"0": {"metric": 21.5}, "1": {"metric": 21.95}, "2": {"metric": 21.2}}
    assert capacity_summary(rep)["verdict"] == "capacity more than attention"
    # where attention loses to its control there is no gain to share out
    rep["rows"]["mango-noattn"]["runs"] = {"0": {"metric": 21.0}, "1": {"metric": 21.4}, "2": {"metric": 20.6}}
    lost = capacity_summary(rep)
    assert lost["share_remaining"] is None and "no share of it is computed" in capacity_markdown(lost)


def test_cli_writes_the_replication_and_capacity_readings(tmp_path, capsys):
    from mango_lite.cli import main

    first = _control_study([0, 1, 2], [20.5, 20.9, 20.1], [19.8, 20.1, 19.5])
    first["rows"]["mango-noattn-h408"] = {"runs": {"0": {"metric": 20.0}, "1": {"metric": 20.3}, "2": {"metric": 19.7}}}
    again = _control_study([3, 4, 5, 6], [19.5, 19.6, 19.4, 19.9], [18.9, 19.0, 19.0, 19.2])
    for name, rep in (("first", first), ("again", again)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "mechanisms.json").write_text(json.dumps(rep))
    assert main(["mechanisms", "--replicate", str(tmp_path / "first"), "--out", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "replication.json").read_text())["verdict"] == "replicated"
    assert main(["mechanisms", "--capacity", "--out", str(tmp_path / "first")]) == 0
    assert "**attention beyond capacity**" in (tmp_path / "first" / "capacity.md").read_text()
    assert "Attention or capacity?" in capsys.readouterr().out


def test_flow_only_likelihood_survives_torch_compile():
    """Under torch.compile (AOTAutograd traces the backward) the likelihood's gradient must still be kept out of
    the encoders: the same gradients as eager, in float64 (a traced backward once froze the part to remove)."""
    from mango_lite.models.fusion import FlowOnlyLikelihood

    def gradients(compiled):
        model, a, b = _encoders_flow_head()

        def step(a, b):
            flow_only = FlowOnlyLikelihood()
            fa, fb = flow_only.inputs(model["enc_a"](a), model["enc_b"](b))
            enc = model["flow"].encode((fa, fb))
            task = model["head"](enc.features[0].flatten(1, 2).mean((2, 3))).square().mean()
            return task + 0.7 * flow_only.likelihood(enc.bits_per_dim.mean())

        (torch.compile(step, backend="aot_eager") if compiled else step)(a, b).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    torch._dynamo.reset()
    eager, compiled = gradients(False), gradients(True)
    for n in eager:
        assert torch.allclose(compiled[n], eager[n], rtol=1e-10, atol=1e-12 * float(eager[n].abs().max())), n
