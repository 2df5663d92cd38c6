"""The registration study's runner and summary, end to end at a tiny size."""

from __future__ import annotations

import json

import pytest

from mango_lite.presets import get_preset
from mango_lite.training import registration as reg

TINY = get_preset("quick").with_overrides(image_size=16, n_train=24, n_val=8, width=8, blocks=1, scales=1, epochs=1)


def test_baselines_are_calibrated_to_the_levels_of_median_disparity():
    b = reg.calibrate_baselines((0.0, 2.0, 4.0), frames=8)
    assert b[0] == 0.0 and b[2] == pytest.approx(2 * b[1], rel=1e-3) and 0.02 < b[1] < 0.5


def test_the_plan_puts_the_primary_comparison_first():
    plan = reg.study_plan(TINY, models=("concat", "mango", "mango-noattn"), seeds=(0, 1), levels_px=(0.0, 4.0))
    first = plan["runs"][:8]
    assert {r["model"] for r in first} == {"mango", "mango-noattn"} and len(plan["runs"]) == 12
    assert plan["preset_config"]["name"] == TINY.name


def test_study_runs_resumes_and_summarizes(tmp_path):
    out, cache = tmp_path / "study", tmp_path / "data"
    kw = dict(models=("mango", "mango-noattn", "concat"), seeds=(0, 1), levels_px=(0.0, 8.0), jobs=1,
              cache_dir=cache, log=lambda m: None)
    first = reg.run_study(out, TINY, max_runs=3, **kw)
    assert first == {"done": 3, "left": 9, "failed": {}}
    rest = reg.run_study(out, TINY, **kw)  # the three finished runs are kept, not retrained
    assert rest["done"] == 9 and rest["left"] == 0
    assert reg.run_study(out, TINY, **kw)["done"] == 0
    spec = json.loads((out / "runs" / "d8px" / "mango" / "seed1" / "metrics.json").read_text())["spec"]
    assert spec["preset"]["selection_split"] and spec["preset"]["sensor_baseline_m"] > 0
    s = reg.summarize(out, {"mango": {"nominal": 10, "receiving_gradient": 10}},
                      {"mango": [90.0, 91.0, 92.0], "concat": [0.0, 0.5]})
    assert s["runs_finished"] == 12
    row = s["table"]["d8px"]["mango"]
    assert row["n"] == 2 and row["median_disparity_px"] > 0
    d = s["mango_minus"]["d8px"]["mango-noattn"]
    assert d["n"] == 2 and d["low"] <= d["mean"] <= d["high"]
    assert d["mean"] == pytest.approx(row["mean"] - s["table"]["d8px"]["mango-noattn"]["mean"])
    assert s["attention_gain_trend"]["seeds"] == [0, 1]
    assert s["verdicts"]["hypothesis"] in ("confirmed", "refuted", "not shown")
    assert s["aligned_check"]["mango"]["worse_by_more_than_sd"] is True  # far below the made-up 91 +- 1
    assert s["aligned_check"]["concat"]["worse_by_more_than_sd"] is False
    md = (out / "summary.md").read_text()
    assert "MANGO minus each model" in md and "| mango | 10 | 10 |" in md
    from mango_lite.viz.registration import plot_dose_response

    assert plot_dose_response(s, tmp_path / "fig.png").get_axes() and (tmp_path / "fig.png").stat().st_size > 1000


def test_the_no_attention_control_leaves_its_query_key_weights_without_gradient(tmp_path):
    p = reg.effective_parameters(TINY, ("mango", "mango-noattn", "concat"), cache_dir=tmp_path)
    assert p["mango"]["receiving_gradient"] == p["mango"]["nominal"]
    assert p["concat"]["receiving_gradient"] == p["concat"]["nominal"]
    assert p["mango-noattn"]["receiving_gradient"] < 0.9 * p["mango-noattn"]["nominal"]


def test_aligned_reference_reads_the_committed_older_runs():
    from pathlib import Path

    ref = reg.aligned_reference(Path(__file__).resolve().parents[1] / "results")
    assert {"mango", "concat", "crossattn", "tokenfusion", "mango-noattn"} <= set(ref)
    assert all(len(v) == 3 for v in ref.values())


def test_train_at_levels_trains_each_level_once_and_the_figures_read_its_models(tmp_path):
    import numpy as np
    import torch

    from mango_lite.datasets.synth.misregistration import render_scene_misregistered
    from mango_lite.models import attention_maps, cross_modal_offsets
    from mango_lite.training import load_model
    from mango_lite.viz.registration import plot_misregistered_frame, plot_offset_mass

    kw = dict(levels_px=(0.0, 8.0), epochs=1, jobs=1, cache_dir=tmp_path / "data", log=None)
    folders = reg.train_at_levels(tmp_path / "runs", TINY, **kw)
    assert set(folders) == {0.0, 8.0} and folders[8.0].name == "mango" and folders[8.0].parent.name == "d8px"
    stamp = (folders[8.0] / "metrics.json").stat().st_mtime_ns
    assert reg.train_at_levels(tmp_path / "runs", TINY, **kw) == folders  # finished runs are reused
    assert (folders[8.0] / "metrics.json").stat().st_mtime_ns == stamp
    baselines = {}
    for lv, folder in folders.items():
        model, spec, _ = load_model(folder)
        baselines[lv] = spec["preset"]["sensor_baseline_m"]
        assert spec["preset"]["selection_split"] and spec["preset"]["epochs"] == TINY.epochs
    assert baselines[0.0] == 0.0 and baselines[8.0] == pytest.approx(reg.calibrate_baselines((8.0,))[0])
    records = attention_maps(model, torch.rand(2, 3, 16, 16), torch.rand(2, 1, 16, 16))
    grid = tuple(s // 2 for s in model.fusion.size)
    got = cross_modal_offsets(records, grid)
    assert got["layers"] > 0 and sum(got["b_to_a"].values()) == pytest.approx(1.0)
    fig = plot_offset_mass({"d8px": got}, {"d8px": 0.5})
    assert len(fig.axes[0].patches) == len(got["b_to_a"]) and len(fig.axes[0].lines) == 1
    frame = [render_scene_misregistered(1, 32, b) for b in (0.0, 0.3)]
    fig = plot_misregistered_frame(*frame, path=tmp_path / "frame.png")
    assert len(fig.axes) == 5 and (tmp_path / "frame.png").stat().st_size > 1000
    assert np.array_equal(frame[0]["rgb"], frame[1]["rgb"])


def test_the_conclusion_is_computed_from_the_summary():
    def cell(mean):
        return {"mean": mean, "n": 3}

    def diff(mean, low, high, verdict):
        return {"mean": mean, "low": low, "high": high, "n": 3, "verdict": verdict}

    s = {"plan": {"task": "segmentation"},
         "verdicts": {"largest_level": "d8px", "aligned_level": "d0px", "hypothesis": "not shown",
                      "mango_vs_concat_context_at_largest_level": "better", "mango_vs_crossattn_at_largest_level": None},
         "mango_minus": {"d0px": {"mango-noattn": diff(0.5, 0.1, 0.9, "better")},
                         "d8px": {"mango-noattn": diff(0.4, -0.2, 1.0, "no difference shown"),
                                  "concat-context": diff(1.0, 0.5, 1.5, "better")}},
         "attention_gain_trend": {"mean": -0.01, "low": -0.03, "high": 0.01, "verdict": "no trend shown"},
         "table": {"d0px": {"mango": cell(20.0), "concat": cell(19.0)}, "d8px": {"mango": cell(18.0), "concat": cell(19.5)}}}
    md = reg.conclusion_markdown(s)
    assert "**H1 (the attention's gain grows with the misregistration): not shown.**" in md
    assert "+0.50 [+0.10, +0.90] mIoU at d0px and +0.40 [-0.20, +1.00] at d8px" in md
    assert "no trend is shown" in md and "1 of 2 models loses mIoU" in md and "concat +0.5, mango -2.0" in md
    assert "MANGO − concat-context = +1.00 [+0.50, +1.50]: better." in md and "crossattn" not in md


def test_the_translation_study_misregisters_the_texture_and_reads_lower_error_as_better(tmp_path):
    st = reg.study_task("translation")
    assert st is reg.study_task("translation/shade_texture_to_rgb") and not st.higher_is_better
    assert reg.default_folder(st).name == "registration-translation" and reg.default_folder().name == "registration"
    with pytest.raises(ValueError, match="unknown task"):
        reg.study_task("genre")
    b = reg.calibrate_baselines((0.0, 8.0), frames=8, study=st)
    assert b[0] == 0.0 and 0.1 < b[1] < 1.0
    out, cache = tmp_path / "study", tmp_path / "data"
    kw = dict(models=("mango", "mango-noattn"), seeds=(0, 1), levels_px=(0.0, 8.0), jobs=1, cache_dir=cache,
              log=lambda m: None, study=st)
    assert reg.run_study(out, TINY, **kw) == {"done": 8, "left": 0, "failed": {}}
    plan = json.loads((out / "plan.json").read_text())
    assert plan["task"] == "translation" and plan["pair"] == "shade_texture_to_rgb" and plan["metric"] == "mae_x10"
    spec = json.loads((out / "runs" / "d8px" / "mango" / "seed1" / "metrics.json").read_text())["spec"]
    assert spec["pair"] == "shade_texture_to_rgb" and spec["preset"]["sensor_baseline_m"] == pytest.approx(plan["baselines_m"][1])
    meta = json.loads(next(cache.glob("taskonomy-*-b*/meta.json")).read_text())
    assert meta["misregistered"] == ["edge_texture"] and meta["median_disparity_px"] > 0
    both = reg.attention_offsets(out, samples=4, cache_dir=cache)  # the runs' own last-epoch checkpoints
    assert list(both) == ["mango"]  # the gamma = 0 control has no attention to measure
    att = both["mango"]
    assert set(att["runs"]) == {"d0px", "d8px"} and set(att["runs"]["d8px"]) == {"0", "1"}
    run = att["runs"]["d8px"]["1"]
    assert run["layers"] > 0 and run["expected_dc"] > 0 and 0 <= run["mass_at_expected"] <= 1
    assert run["epoch_checkpoint"] == f"epoch_{TINY.epochs:03d}.pt"
    shift = att["shift_from_aligned"]["d8px"]
    assert shift["n"] == 2 and shift["mean"] == pytest.approx(
        sum(att["runs"]["d8px"][k]["b_to_a_mean_dc"] - att["runs"]["d0px"][k]["b_to_a_mean_dc"] for k in "01") / 2)
    s = reg.summarize(out)
    assert "the texture tokens' attention to the other modality moved" in reg.conclusion_markdown(s)
    def told(low, high):
        return reg.attention_markdown({"mango": {**att, "shift_from_aligned": {"d8px": {
            **shift, "low": low, "high": high, "partners_moved": 1.0}}}})

    assert "the attention did not follow them" in told(-0.5, 0.2)
    assert "it moved with them" in told(0.5, 1.5)
    assert "it moved towards them, but" in told(0.2, 0.6)
    assert "not decided" in told(-0.5, 1.5)
    mae = {lv: {m: s["table"][lv][m]["values"] for m in ("mango", "mango-noattn")} for lv in ("d0px", "d8px")}
    d = s["mango_minus"]["d8px"]["mango-noattn"]
    # positive = MANGO better = MANGO's error lower
    assert d["mean"] == pytest.approx(sum(mae["d8px"]["mango-noattn"]) / 2 - sum(mae["d8px"]["mango"]) / 2)
    gains = s["attention_gain_trend"]["gains"]
    assert gains[1][1] == pytest.approx(mae["d8px"]["mango-noattn"][1] - mae["d8px"]["mango"][1])
    md = (out / "summary.md").read_text()
    assert "translation on the taskonomy (shade_texture_to_rgb) stand-in" in md and "MAE x10" in md
    from mango_lite.viz.registration import plot_dose_response

    fig = plot_dose_response(s)
    assert "texture" in fig.axes[0].get_xlabel() and "MAE" in fig.axes[0].get_ylabel()


def test_the_command_line_names_a_study_by_its_task_or_its_full_key():
    from mango_lite.cli import build_parser

    parser = build_parser()
    for name in ("translation", "translation/shade_texture_to_rgb"):
        args = parser.parse_args(["registration", "--task", name, "--summarize-only"])
        assert reg.study_task(args.task) is reg.TRANSLATION and args.out is None
    assert reg.study_task(parser.parse_args(["registration"]).task) is reg.SEGMENTATION
    with pytest.raises(SystemExit):
        parser.parse_args(["registration", "--task", "genre"])
