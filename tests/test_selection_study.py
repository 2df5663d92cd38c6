"""The selection study (NLL weights chosen on the selection split): its rule on made-up runs, and its runner
end to end at a tiny size."""

from __future__ import annotations

import json

import pytest

from mango_lite.presets import TASK_FLOW_WEIGHTS, get_preset
from mango_lite.training import selection as sel

TINY = get_preset("quick").with_overrides(image_size=16, n_train=24, n_val=8, width=8, blocks=1, scales=1, epochs=1)


def _collected(scores: dict[str, dict[float, list[float]]], seeds=(0, 1, 2)) -> dict:
    """A ``collect`` result whose selection scores are ``scores[group][weight]`` per seed; the test scores
    are those plus 100 (so a test in the rule would show)."""
    groups = {"segmentation-nyudv2": ("segmentation", "nyudv2", None),
              "translation-a": ("translation", "taskonomy", "a"), "translation-b": ("translation", "taskonomy", "b")}
    plan = {"weights": [0.01, 0.1], "seeds": list(seeds), "preset": "cpu",
            "weights_in_use": {"segmentation": 0.1, "translation": 0.01},
            "runs": [{"group": g, "task": groups[g][0], "dataset": groups[g][1], "pair": groups[g][2], "weight": w,
                      "seed": s} for s in seeds for g in scores for w in (0.01, 0.1)]}
    runs = {g: {w: {s: {"selection": v[k], "test": v[k] + 100.0, "flow_bpd": None} for k, s in enumerate(seeds)}
                for w, v in by_w.items()} for g, by_w in scores.items()}
    return {"plan": plan, "runs": runs}


def test_the_rule_chooses_from_the_selection_split_alone():
    c = _collected({"segmentation-nyudv2": {0.01: [20.0, 21.0, 22.0], 0.1: [21.0, 22.5, 23.0]},
                    # translation: lower is better, decided by the mean over its two pairs
                    "translation-a": {0.01: [1.0, 1.1, 1.2], 0.1: [0.9, 1.0, 1.1]},
                    "translation-b": {0.01: [2.0, 2.0, 2.0], 0.1: [2.4, 2.3, 2.2]}})
    # make the test split favour the other weight on segmentation: the choice must not follow it
    for s in (0, 1, 2):
        c["runs"]["segmentation-nyudv2"][0.01][s]["test"] = 99.0
        c["runs"]["segmentation-nyudv2"][0.1][s]["test"] = 1.0
    t = sel.choose(c)["tasks"]
    assert t["segmentation"]["chosen"] == 0.1 and t["segmentation"]["complete"]
    d = t["segmentation"]["groups"]["segmentation-nyudv2"]["paired_selection"]
    assert d["mean"] == pytest.approx(7 / 6) and d["differences"] == pytest.approx([1.0, 1.5, 1.0])
    assert t["segmentation"]["told_apart_in"] == ["segmentation-nyudv2"]  # sd 0.29: the interval excludes 0
    # pair a favours 0.1 by 0.1, pair b favours 0.01 by 0.3: the mean over pairs keeps 0.01
    assert t["translation"]["chosen"] == 0.01
    assert t["translation"]["selection_score"]["0.1"] == pytest.approx((1.0 + 2.3) / 2)
    a = t["translation"]["groups"]["translation-a"]["paired_selection"]
    assert a["mean"] == pytest.approx(0.1) and a["verdict"] == "better"  # lower MAE at 0.1 counts as better
    md = sel.summary_markdown(sel.choose(c))
    assert "**segmentation** keeps lambda = 0.1" in md and "**translation** keeps lambda = 0.01" in md
    assert "translation-a (lambda = 0.1 better)" in md and "translation-b (lambda = 0.01 better)" in md


def test_a_tie_keeps_the_weight_in_use_and_missing_runs_choose_nothing():
    tie = _collected({"segmentation-nyudv2": {0.01: [20.0, 21.0, 22.0], 0.1: [22.0, 21.0, 20.0]}})
    t = sel.choose(tie)["tasks"]["segmentation"]
    assert t["chosen"] == 0.1 and t["told_apart_in"] == []
    assert "not told apart on the selection split" in sel.summary_markdown(sel.choose(tie))
    part = _collected({"segmentation-nyudv2": {0.01: [20.0, 21.0, 22.0], 0.1: [22.0, 23.0, 24.0]}})
    del part["runs"]["segmentation-nyudv2"][0.1][2]
    t = sel.choose(part)["tasks"]["segmentation"]
    assert t["chosen"] is None and not t["complete"]
    assert "not all runs finished" in sel.summary_markdown(sel.choose(part))


def test_the_plan_holds_complete_seeds_first_and_the_weights_in_use():
    plan = sel.study_plan(TINY, seeds=(0, 1))
    assert len(plan["runs"]) == 2 * len(sel.GROUPS) * len(sel.WEIGHTS)
    assert {r["seed"] for r in plan["runs"][: len(plan["runs"]) // 2]} == {0}
    assert plan["preset_config"]["selection_split"] is True
    assert plan["weights_in_use"] == {t: TASK_FLOW_WEIGHTS[t] for t in ("genre", "segmentation", "translation")}


def test_study_runs_resumes_and_summarizes(tmp_path):
    out = tmp_path / "study"
    kw = dict(weights=(0.01, 0.1), seeds=(0, 1), groups=(sel.Group("segmentation", "nyudv2"),), jobs=1,
              cache_dir=tmp_path / "data", log=lambda m: None)
    assert sel.run_study(out, TINY, max_runs=1, **kw) == {"done": 1, "left": 3, "failed": {}}
    assert sel.run_study(out, TINY, **kw)["done"] == 3
    assert sel.run_study(out, TINY, **kw)["done"] == 0  # finished runs are kept
    run = out / "runs" / "segmentation-nyudv2" / "nll0.01" / "seed1"
    spec = json.loads((run / "metrics.json").read_text())["spec"]
    assert spec["model_kwargs"]["flow_weight"] == 0.01 and spec["preset"]["selection_split"]
    history = json.loads((run / "history.json").read_text())
    s = sel.summarize(out)
    seg = s["tasks"]["segmentation"]
    assert seg["chosen"] in (0.01, 0.1) and seg["groups"]["segmentation-nyudv2"]["seeds"] == {"0.01": 2, "0.1": 2}
    assert seg["groups"]["segmentation-nyudv2"]["selection_mean"]["0.01"] == pytest.approx(
        (history[-1]["val_miou"] + json.loads((run.parent / "seed0" / "history.json").read_text())[-1]["val_miou"]) / 2)
    assert (out / "summary.md").read_text().startswith("# The NLL weight chosen on the selection split")
    # a folder trained at another weight is not taken for this run
    from mango_lite.training import RunSpec
    from mango_lite.training.results_store import finished_run

    spec = RunSpec("segmentation", "mango", sel.study_preset(TINY), seed=1)
    assert finished_run(run, spec.replace(model_overrides={"flow_weight": 0.1})) is None
    assert finished_run(run, spec.replace(model_overrides={"flow_weight": 0.01})) is not None
    assert finished_run(run, spec.replace(model="concat", model_overrides={"flow_weight": 0.01})) is None
    assert finished_run(run, spec.replace(seed=0, model_overrides={"flow_weight": 0.01})) is None


# ------------------------------------------------------------------------- stage 2: the ladder's defaults
def _defaults_collected(scores: dict[str, list[float]], combine=(), seeds=(0, 1, 2)) -> dict:
    """A ``collect_defaults`` result whose selection scores are ``scores[variant]`` per seed (test = +100)."""
    plan = sel.defaults_plan("cpu", seeds=seeds, switches=sel.SWITCHES[:3], combine=combine)
    runs = {v: {s: {"selection": x[k], "test": x[k] + 100.0, "flow_bpd": None} for k, s in enumerate(seeds)}
            for v, x in scores.items()}
    return {"plan": plan, "runs": runs}


REF = [21.0, 22.0, 23.0]


def test_defaults_are_kept_unless_switching_one_off_has_the_better_mean():
    c = _defaults_collected({"reference": REF, "upper-only": [20.0, 21.0, 22.0],  # worse in every seed
                             "no-positions": [21.0, 22.0, 23.0],  # an exact tie keeps the default
                             "gamma-rate-1": [22.0, 21.5, 23.5]})  # better mean (+0.33), not told apart
    for s in (0, 1, 2):  # the test split pointing the other way decides nothing
        c["runs"]["upper-only"][s]["test"] = 1000.0
    d = sel.choose_defaults(c)
    sw = d["switches"]
    assert sw["upper-only"]["kept"] and sw["upper-only"]["told_apart"]
    assert sw["upper-only"]["paired_selection"]["differences"] == pytest.approx([1.0, 1.0, 1.0])
    assert sw["no-positions"]["kept"] and not sw["no-positions"]["told_apart"]
    assert sw["gamma-rate-1"]["kept"] is False and not sw["gamma-rate-1"]["told_apart"]
    assert d["switched_off"] == ["gamma-rate-1"] and d["adopted"] == ["gamma-rate-1"]
    md = sel.defaults_markdown(d)
    assert "**alternating triangles** kept; told apart" in md
    assert "**gamma rate 10** switched off" in md and "Adopted**: switched off: gamma rate 10." in md


def test_several_switched_off_are_adopted_together_only_if_their_combination_beats_the_reference():
    scores = {"reference": REF, "upper-only": [21.5, 22.5, 23.5], "no-positions": [21.0, 22.0, 23.0],
              "gamma-rate-1": [22.0, 23.0, 24.0]}
    d = sel.choose_defaults(_defaults_collected(scores))
    assert d["switched_off"] == ["upper-only", "gamma-rate-1"] and d["adopted"] is None  # the combination to train
    assert "still to train" in sel.defaults_markdown(d)
    combo = ("upper-only", "gamma-rate-1")
    d = sel.choose_defaults(_defaults_collected({**scores, "combined": [22.0, 22.0, 24.0]}, combine=combo))
    assert d["adopted"] == list(combo)
    d = sel.choose_defaults(_defaults_collected({**scores, "combined": [20.0, 22.0, 23.0]}, combine=combo))
    assert d["adopted"] == ["gamma-rate-1"]  # the combination loses: the best single switch-off alone
    # nothing is adopted while a run is missing
    part = _defaults_collected(scores)
    del part["runs"]["no-positions"][2]
    d = sel.choose_defaults(part)
    assert not d["complete"] and d["adopted"] is None and d["switches"]["no-positions"]["kept"] is None


def test_the_defaults_plan_reuses_stage_one_runs_and_switches_one_default_off_per_variant(tmp_path):
    plan = sel.defaults_plan(TINY, seeds=(0, 1))
    w = TASK_FLOW_WEIGHTS["segmentation"]
    on = {"flow_weight": w, "flow_alternate": True, "flow_positions": True, "flow_gamma_rate": 10.0,
          "flow_conditioner": "grid", "flow_nll_to_encoders": False}
    ref = [r for r in plan["runs"] if r["variant"] == "reference"]
    # the reference states every switched value, so it means the protocol's model whatever today's defaults
    assert len(ref) == 2 and all(r["overrides"] == on for r in ref)
    assert sel.defaults_run_dir(tmp_path, ref[0]) == sel.run_dir(tmp_path, {**ref[0], "weight": w})
    for s in sel.SWITCHES:
        runs = [r for r in plan["runs"] if r["variant"] == s.variant]
        assert len(runs) == 2 and all(r["overrides"] == {**on, **dict(s.off)} for r in runs)
        assert dict(s.on).keys() == dict(s.off).keys() and dict(s.on) != dict(s.off)
    from mango_lite.models.config import field_names

    assert all(k in field_names() for k in on)
    with pytest.raises(ValueError, match="unknown"):
        sel.defaults_plan(TINY, combine=("no-such-switch",))


def test_a_run_built_with_a_value_as_its_default_counts_as_built_with_it(tmp_path):
    """finished_run reads the full stored configuration: a stage-1 run that got gamma rate 10 as the default of
    its day is the reference that asks for 10 explicitly, and not a run that asks for 1."""
    from mango_lite.training import RunSpec
    from mango_lite.training.results_store import finished_run

    p = sel.study_preset(TINY)
    spec = {"model": "mango", "seed": 0, "preset": p.to_dict(), "model_kwargs": {"flow_weight": 0.1},
            "model_config": {"flow_weight": 0.1, "flow_gamma_rate": 10.0, "flow_alternate": True}}
    (tmp_path / "metrics.json").write_text(json.dumps({"spec": spec, "metrics": {}}))
    spec = RunSpec("segmentation", "mango", p, seed=0)
    assert finished_run(tmp_path, spec.replace(model_overrides={"flow_weight": 0.1, "flow_gamma_rate": 10.0})) is not None
    assert finished_run(tmp_path, spec.replace(model_overrides={"flow_weight": 0.1, "flow_gamma_rate": 1.0})) is None


def test_the_defaults_study_trains_the_combination_once_several_defaults_are_switched_off(tmp_path, monkeypatch):
    trained: list[list[str]] = []

    def fake_train(out, plan, folder, overrides, title, jobs, device, cache_dir, max_runs, log):
        trained.append(sorted({r["variant"] for r in plan["runs"]}))
        return {"done": len(plan["runs"]), "left": 0, "failed": {}}

    monkeypatch.setattr(sel, "_train_plan", fake_train)
    monkeypatch.setattr(sel, "collect_defaults", lambda out: None)
    monkeypatch.setattr(sel, "choose_defaults", lambda c: {"complete": True, "switched_off": ["upper-only", "no-positions"]})
    sel.run_defaults_study(tmp_path, TINY, seeds=(0,), log=lambda m: None)
    assert len(trained) == 2 and "combined" not in trained[0] and "combined" in trained[1]
    plan = json.loads((tmp_path / "plan-defaults.json").read_text())
    assert plan["combine"] == ["upper-only", "no-positions"]
    combined = [r for r in plan["runs"] if r["variant"] == "combined"][0]
    assert combined["overrides"] == {**[r for r in plan["runs"] if r["variant"] == "reference"][0]["overrides"],
                                     "flow_alternate": False, "flow_positions": False}
    trained.clear()  # a later call keeps the combination in the plan and does not extend it again
    sel.run_defaults_study(tmp_path, TINY, seeds=(0,), log=lambda m: None)
    assert len(trained) == 1 and "combined" in trained[0]


def test_the_defaults_study_runs_end_to_end(tmp_path):
    out = tmp_path / "study"
    kw = dict(seeds=(0, 1), switches=(sel.SWITCHES[1],), jobs=1, cache_dir=tmp_path / "data", log=lambda m: None)
    assert sel.run_defaults_study(out, TINY, **kw) == {"done": 4, "left": 0, "failed": {}}
    assert sel.run_defaults_study(out, TINY, **kw)["done"] == 0
    spec = json.loads((out / "runs" / "segmentation-nyudv2" / f"nll{TASK_FLOW_WEIGHTS['segmentation']:g}-no-positions"
                       / "seed1" / "metrics.json").read_text())["spec"]
    assert spec["model_kwargs"]["flow_positions"] is False and spec["preset"]["selection_split"]
    s = sel.summarize_defaults(out)
    assert s["complete"] and s["reference"]["seeds"] == 2 and s["switches"]["no-positions"]["seeds"] == 2
    assert (out / "summary-defaults.md").read_text().startswith("# The ladder's defaults re-checked")


def test_reproduce_resumes_only_runs_trained_under_the_same_protocol(tmp_path):
    """A run finished under the older protocol (one split selecting and reporting) is not kept by
    ``reproduce --resume`` at a preset that holds a selection split out; a run stored before the field
    existed counts as the older protocol; the density notebook's fields do not matter."""
    from mango_lite.training import RunSpec
    from mango_lite.training.results_store import finished_run

    cpu = get_preset("cpu")
    assert cpu.selection_split and not get_preset("quick").selection_split

    def write(preset: dict) -> None:
        spec = {"model": "mango", "seed": 0, "preset": preset}
        (tmp_path / "metrics.json").write_text(json.dumps({"spec": spec, "epochs_run": cpu.epochs, "metrics": {"m": 1}}))
        (tmp_path / "history.json").write_text(json.dumps([{"epoch": cpu.epochs}]))

    def finished(preset, seed: int = 0):  # as reproduce --resume asks the results store
        return finished_run(tmp_path, RunSpec("segmentation", "mango", preset, seed=seed), whole_schedule=True)

    write(cpu.to_dict())
    assert finished(cpu) is not None
    assert finished(cpu, 1) is None
    assert finished(cpu.with_overrides(density_steps=5)) is not None
    old = cpu.with_overrides(selection_split=False).to_dict()
    write(old)
    assert finished(cpu) is None
    del old["selection_split"]
    write(old)
    assert finished(cpu.with_overrides(selection_split=False)) is not None
    assert finished(cpu) is None
