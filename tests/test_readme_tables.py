"""README.md's result tables are the results files' text, never typed by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from mango_lite.errors import MangoLiteError
from mango_lite.reporting.readme import render

ROOT = Path(__file__).resolve().parents[1]


def test_readme_blocks_match_their_results_files():
    text = (ROOT / "README.md").read_text()
    assert "<!-- include: " in text
    assert render(text, ROOT) == text, "README.md is out of date: run python -m mango_lite.reporting.readme"


def test_render_replaces_blocks_and_drops_the_title(tmp_path):
    (tmp_path / "t.md").write_text("# Title\n\n| a |\n|---|\n| 1 |\n")
    text = "intro\n<!-- include: t.md -->\nstale\n<!-- end include -->\nafter\n"
    assert render(text, tmp_path) == "intro\n<!-- include: t.md -->\n| a |\n|---|\n| 1 |\n<!-- end include -->\nafter\n"
    with pytest.raises(MangoLiteError, match="missing.md"):
        render("<!-- include: missing.md -->\n<!-- end include -->", tmp_path)


def _results() -> dict:
    def models(mango, concat, tf, ca, a, b):
        vals = dict(mango=mango, concat=concat, tokenfusion=tf, crossattn=ca, rgb=a, depth=b)
        return {m: {"miou": v} for m, v in vals.items()}

    return {"results": {
        "segmentation/nyudv2": {"task": "segmentation", "dataset": "nyudv2", "data": "generated stand-in",
                                "models": models(30.0, 20.0, 21.0, 22.0, 10.0, 9.0)},
        "segmentation/sunrgbd": {"task": "segmentation", "dataset": "sunrgbd", "data": "generated stand-in",
                                 "models": models(10.0, 20.0, 21.0, 22.0, 25.0, 9.0)},
    }}


def test_headline_view_counts_what_its_table_shows():
    from mango_lite.reporting.views import headline

    md = headline(_results())
    assert "| NYUDv2 segmentation | mIoU % ↑ | **30.0** | 1 / 4 | crossattn 22.0 | rgb 10.0 |" in md
    assert "| SUN RGB-D segmentation | mIoU % ↑ | 10.0 | 4 / 4 | crossattn 22.0 | rgb **25.0** |" in md
    assert "beats the best single input in 1 of 2 groups" in md
    assert "first of the 4 fusions in 1 of 2 groups and last in 1 of 2" in md


def test_seed_spread_view_counts_per_seed():
    from mango_lite.reporting.views import seed_spread
    from mango_lite.training.reproduce import seed_summary

    runs = []
    for seed, (m, c) in enumerate([(30.0, 20.0), (19.0, 20.0), (25.0, 21.0)]):
        r = _results()
        r.update(preset="cpu", seed=seed)
        r["results"]["segmentation/nyudv2"]["models"]["mango"]["miou"] = m
        r["results"]["segmentation/nyudv2"]["models"]["concat"]["miou"] = c
        runs.append(r)
    md = seed_spread(seed_summary(runs))
    # nyudv2: mango first in seeds 0 and 2, last in seed 1; sunrgbd: last in all three
    assert "segmentation: mango first of the fusions in 2 of 6 seed/group pairs, last in 4 of 6, " \
           "better than concat in 2 of 6." in md
    assert "| NYUDv2 segmentation | mIoU % ↑ | **24.67 ± 5.51** | 20.33 ± 0.58 |" in md


def test_render_fills_a_view_block_and_rejects_unknown_views(tmp_path):
    import json

    (tmp_path / "r.json").write_text(json.dumps(_results()))
    out = render("<!-- include: r.json headline -->\nstale text\n<!-- end include -->\n", tmp_path)
    assert "| NYUDv2 segmentation |" in out and "stale text" not in out
    with pytest.raises(MangoLiteError, match="unknown view"):
        render("<!-- include: r.json nosuchview -->\n<!-- end include -->", tmp_path)


def test_benchmark_views_render_medians_with_their_spread():
    from mango_lite.reporting.views import ica_bench, train_step

    rows = [{"case": "a", "tokens": 256, "forward_s": 1e-3, "inverse_s": 1.1e-3, "published_inverse_s": 0.02,
             "speedup_vs_published": 18.2, "speedup_min": 12.0, "speedup_max": 20.4, "inverse_over_forward": 1.1,
             "max_err_ours": 5e-7, "max_err_published": 8e-6, "peak_rss_mib": 240, "threads": 1, "torch": "x",
             "pairs": 7},
            {"case": "b", "tokens": 256, "ratio": 1.2, "ratio_min": 0.9, "ratio_max": 1.6}]
    md = ica_bench(rows)
    assert "| 256 | 1.00 ms | 1.10 ms | 20.0 ms | 18× [12-20] | 1.10× | 5.0e-07 / 8.0e-06 |" in md
    assert "1.20× [0.90-1.60] (256)" in md and "7 interleaved rounds" in md
    bench = {"preset": "cpu", "batch": 16, "image_size": 64, "threads": 1, "rounds": 9, "goal_ratio": 2.0,
             "device": "cpu", "torch": "x", "models": {
                 "concat": {"median_ms": 300, "ratio_to_concat": 1.0, "ratio_min": 1, "ratio_max": 1, "params": 5e5},
                 "mango": {"median_ms": 900, "ratio_to_concat": 3.0, "ratio_min": 2.5, "ratio_max": 4.0, "params": 1.5e6}}}
    md = train_step(bench)
    assert "| mango | 900 | 3.00× [2.50-4.00] | 1.50 M |" in md and "met by no MANGO variant" in md
    assert "arithmetic" not in md  # benchmarks written before the FLOP count: no column, no sentence
    bench["models"]["concat"]["forward_gflops"], bench["models"]["mango"]["forward_gflops"] = 0.5, 2.2
    md = train_step(bench)
    assert "| mango | 900 | 3.00× [2.50-4.00] | 1.50 M | 2.20 (4.40×) |" in md
    # 4.40x the FLOPs in a 3.00x step: 1.47x concat's FLOPs per ms; a 2x step would need 2.20x
    assert "does 4.40× concat's arithmetic" in md and "step of 3.00× it runs 1.47× concat's FLOPs per millisecond" in md
    assert "the goal's step of 2× would need 2.20×." in md
    bench["models"]["mango"]["ratio_to_concat"] = 1.8
    assert "would need" not in train_step(bench)


def test_fused_ica_view_reads_the_forward_and_the_goal():
    from mango_lite.reporting.views import fused_ica

    row = {"tokens": 1024, "dim": 64, "batch": 4, "pairs": 7, "repeat": 1, "fused_s": 0.05, "materialised_s": 0.09,
           "sdpa_s": 0.04, "fused_over_materialised": [0.55, 0.5, 0.6], "fused_over_sdpa": [1.2, 1.1, 1.3],
           "saved_for_backward_mib": {"materialised": 27.0, "fused": 12.0, "sdpa": 9.0}}
    res = {"device": "cpu", "threads": 1, "torch": "x", "rows": [row]}
    md = fused_ica(res)  # a file written before the forward was timed alone: no column, no goal line
    assert "forward alone" not in md and "Goal" not in md and "| 1024 | 50.0 ms | 90.0 ms | 40.0 ms |" in md
    row["forward_fused_over_sdpa"] = [1.12, 1.05, 1.2]
    md = fused_ica(res)
    assert "| 1.20× [1.10-1.30] | 1.12× [1.05-1.20] | 27.0 / 12.0 / 9.0 |" in md
    assert "at 1024 tokens: 1.12×, met; with the backward, 1.20×." in md
    row["forward_fused_over_sdpa"] = [1.25, 1.1, 1.4]
    assert "1.25×, met (its spread reaches past it)" in fused_ica(res)
    row["forward_fused_over_sdpa"] = [1.5, 1.4, 1.6]
    assert "1.50×, not met;" in fused_ica(res)


def test_paper_step_view_reads_flops_memory_and_goals():
    from mango_lite.reporting.views import paper_step

    bench = {"preset": "paper", "device": "cpu", "threads": 2, "torch": "x", "batch": 8, "image_size": 256,
             "encoders": "from scratch", "pairs": 3, "run_minutes": {"nyudv2": 600.0, "sunrgbd": 3600.0},
             "first_over": {"tokenfusion": {"ratio": 4.0, "ratio_min": 3.5, "ratio_max": 4.5}},
             "models": {"mango": {"step_ms": 4000.0, "params": 2e7}, "tokenfusion": {"step_ms": 1000.0, "params": 3e6}}}
    md = paper_step(bench)  # a file written before the FLOP count: the step line alone
    assert "4.00× [3.50-4.50]" in md and "NYUDv2 10 h" in md and "GFLOPs" not in md
    bench["models"]["mango"].update(forward_gflops=20.0, peak_step_mib=3000.0)
    bench["models"]["tokenfusion"].update(forward_gflops=4.0, peak_step_mib=1000.0)
    md = paper_step(bench)
    assert "MANGO 20.0 GFLOPs, TokenFusion 4.0 (5.00×" in md and "(3.00×)" in md
    assert "at most 3× TokenFusion's, 4.00×, not met; peak training memory at most 2×, 3.00×, not met" in md
    assert "runs 1.25× TokenFusion's FLOPs per millisecond; the goal's step of 3× would need 1.67×." in md
    bench["models"]["mango"].update(forward_gflops=8.0, peak_step_mib=1500.0)
    bench["first_over"]["tokenfusion"]["ratio"] = 2.5
    md = paper_step(bench)
    assert "2.50×, met; peak training memory at most 2×, 1.50×, met" in md and "would need" not in md
    bench["models"]["mango+checkpointed"] = {"step_ms": 3125.0, "params": 2e7, "forward_gflops": 8.0,
                                             "peak_step_mib": 500.0}
    bench["first_over"]["mango+checkpointed"] = {"ratio": 0.8, "ratio_min": 0.75, "ratio_max": 0.9}
    md = paper_step(bench)  # MANGO's step is 0.8x the checkpointed one's: checkpointing makes it 1.25x slower
    assert "peak 500 MiB, 0.50× TokenFusion's (goal 2×, met); its step 1.25× MANGO's [1.11-1.33]" in md
    assert "about 3.1× TokenFusion's" in md


def test_reproduction_time_view_and_its_comparison():
    """The main job's time as time_reproduction.py writes it, and its run-by-run comparison."""
    import importlib.util
    from pathlib import Path

    from mango_lite.reporting.views import reproduce_wall

    spec = importlib.util.spec_from_file_location("time_reproduction", Path(__file__).resolve().parents[1]
                                                  / "benchmarks" / "time_reproduction.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    res = {"results": {"segmentation/nyudv2": {"task": "segmentation", "models": {
        "mango": {"miou": 21.25}, "concat": {"miou": 20.0}, "rgb": {"miou": 14.0}}}}}
    ref = {"results": {"segmentation/nyudv2": {"task": "segmentation", "models": {
        "mango": {"miou": 21.25}, "concat": {"miou": 20.5}}}}}
    c = mod.compare(res, ref)
    assert c["same"] == 1 and [d["run"] for d in c["differ"]] == ["segmentation/nyudv2/concat"]
    assert c["missing"] == ["segmentation/nyudv2/rgb"]
    line = reproduce_wall({"preset": "cpu", "runs": 3, "jobs": 2, "device": "cpu (2 cores)", "wall_time_s": 1500,
                           "sum_of_run_times_s": 2880, "plan_estimate_one_after_another_s": 3000,
                           "compared_with_reference": c})
    assert "**25 min** wall (48 min of runs; the plan estimated 50 min one run after another)" in line
    assert c["max_rel_diff"] == pytest.approx(0.5 / 20.5)
    assert ("1 of 3 runs gave the headline metric of the committed reproduction again to 1e-6; 1 differ by "
            "at most 2.4 % (largest: segmentation/nyudv2/concat, miou 20 against 20.5)") in line


def test_ddp_benchmark_view():
    """bench_ddp.py's figures as the README renders them: the median and spread of the per-round
    speed-ups, every round's times and the loss difference."""
    from mango_lite.reporting.views import ddp_bench

    rounds = [{"one_process_s": 100.0, "ddp_s": 62.5, "val_loss_rel_diff": 0.01},
              {"one_process_s": 110.0, "ddp_s": 55.0, "val_loss_rel_diff": 0.03}]
    line = ddp_bench({"task": "segmentation", "model": "mango", "preset": "cpu", "epochs": 2, "procs": 2,
                      "backend": "gloo", "device": "cpu (2 cores)", "rounds": rounds, "speedup_median": 1.8,
                      "speedup_min": 1.6, "speedup_max": 2.0, "val_loss_rel_diff_max": 0.03,
                      "train_speedup_median": 1.9, "train_speedup_min": 1.85, "train_speedup_max": 1.95})
    assert "speed-up 1.80× [1.60-2.00] over one process in 2 interleaved round(s)" in line
    assert "(one process 100 s, 110 s; DDP 62 s, 55 s, start-up and validation included)" in line
    assert "the optimisation alone 1.90× [1.85-1.95]; final validation loss within 3.0 %" in line


def test_worker_and_submitit_benchmark_views():
    """bench_reproduce_jobs.py's line: the 1.7x goal belongs to the worker processes; the submitit mode
    (all jobs at once on one machine) names its path and claims no goal."""
    from mango_lite.reporting.views import reproduce_jobs

    bench = {"preset": "quick", "tasks": ["genre"], "runs": 6, "jobs": 2, "device": "cpu (2 cores)", "goal": 1.7,
             "rounds": [{"serial_s": 20.0, "parallel_s": 12.0}, {"serial_s": 22.0, "parallel_s": 11.0}],
             "speedup_median": 1.83, "speedup_min": 1.67, "speedup_max": 2.0, "same_metrics_every_round": True}
    line = reproduce_jobs(bench)
    assert "2 workers on cpu (2 cores): speed-up 1.83× [1.67-2.00] over 2 round(s)" in line
    assert "(one after another 20 s, 22 s; workers 12 s, 11 s); goal 1.7×; identical metrics in every round: yes." in line
    line = reproduce_jobs({**bench, "cluster": "local", "same_metrics_every_round": False})
    assert "as submitit local jobs (all started at once)" in line and "goal" not in line
    assert "submitit local jobs 12 s, 11 s); identical metrics in every round: NO." in line


def test_profile_and_compile_views_compute_their_readings():
    from mango_lite.reporting.views import compile_step, train_profile

    prof = {"preset": "gpu", "batch": 32, "image_size": 128, "device": "NVIDIA X", "torch": "x", "steps": 5,
            "phases": {"concat": {"forward": 10, "loss": 1, "backward": 20, "optimizer": 5, "step": 36},
                       "mango": {"forward": 100, "loss": 2, "backward": 290, "optimizer": 8, "step": 400}},
            "modules": {"fusion": 90.0, "flow: InvertibleCrossAttention": 60.0, "head": 6.0, "encoder_a": 4.0},
            "operators": {"time_kind": "self device time", "kernels_per_step": 20000,
                          "operators": [{"name": "aten::bmm", "calls_per_step": 1200, "ms_per_step": 10.0, "share": 0.1}]}}
    md = train_profile(prof)
    assert "| mango | 100.0 | 2.0 | 290.0 | 8.0 | 400.0 |" in md and "dispatched" not in md
    prof["dispatched"] = {"concat": {"step": 1000, "forward": 300, "backward": 600, "optimizer": 100},
                          "mango": {"step": 5000, "forward": 1500, "backward": 3000, "optimizer": 500,
                                    "per_layer_forward": {"ICA mmca": 40.0, "ActNorm": 12.0},
                                    "layers": {"ICA mmca": 8, "ActNorm": 9}}}
    assert ("MANGO 5000 (forward 1500, backward 3000, optimizer 500), concat 1000 (5.0×); in MANGO's forward, per "
            "layer: ICA mmca 40 (8 layers), ActNorm 12 (9 layers).") in train_profile(prof)
    md = train_profile({k: v for k, v in prof.items() if k != "dispatched"})
    # shares of the top-level parts' sum (100 ms); the device busy = 10 ms / 0.1 = 100 ms of the 400 ms step
    assert "fusion 90 %" in md and "InvertibleCrossAttention 60 %" in md
    assert "busy (sum of self device time) 100 ms of MANGO's 400 ms step (25 %)" in md
    comp = {"preset": "gpu", "batch": 32, "image_size": 128, "device": "NVIDIA X", "torch": "x", "compile_s": 100.0,
            "compiled_ms": 80.0, "eager_ms": 100.0, "compiled_over_eager": 0.8, "ratio_min": 0.7, "ratio_max": 0.9,
            "pairs": 7, "gradient_max_rel_diff": 0.15, "worst_parameter": "w"}
    assert "0.80× [0.70-0.90]" in compile_step(comp) and "1.5e-01" in compile_step(comp)
    assert "two noise draws" in compile_step(comp) and "two noise draws" not in compile_step({**comp, "same_noise": True})
    assert "failed: boom" in compile_step({"preset": "gpu", "device": "d", "torch": "x", "error": "boom"})
