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
    from mango_lite.training.workers import finished_run

    assert finished_run(run, sel.study_preset(TINY), "mango", 1, {"flow_weight": 0.1}) is None
    assert finished_run(run, sel.study_preset(TINY), "mango", 1, {"flow_weight": 0.01}) is not None
