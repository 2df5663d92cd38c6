"""The GPU window (``gpu-window``), rehearsed on the CPU, and the mixed-precision behaviour it measures."""

from __future__ import annotations

import math

import pytest
import torch

from mango_lite.flows import InvertibleCrossAttention as ICA
from mango_lite.training import accelerator as acc


def test_flow_checks_pass_in_float32_and_run_under_bf16_autocast():
    rows = acc.flow_checks("cpu", dry_run=True)
    assert {r["module"] for r in rows} >= {"ActNorm", "ICA lica, 2 heads", "MangoBlock", "MultiscaleMango, 2 scales"}
    for r in rows:
        assert r["f32_ok"], r
        assert "bf16_error" not in r and r["bf16_finite"], r  # every module runs under bf16 autocast
        if "logdet_vs_slogdet_f64" in r:
            assert r["logdet_vs_slogdet_f64"] < 1e-8


def test_ica_inverse_solves_in_float32_under_bf16_autocast():
    torch.manual_seed(0)
    m = ICA(dim=8, tokens=16, partition="imca", gamma=0.5)
    x = torch.randn(2, 32, 8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        z, _ = m(x)
        xr, _ = m.inverse(z.float())
    assert xr.dtype == torch.float32 and (xr - x).abs().max() < 0.1  # bf16 attention, float32 solve


def test_mango_fusion_keeps_its_flow_in_float32_under_autocast():
    from mango_lite.models import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(ModelConfig(task="segmentation", fusion="mango",
                                    in_channels=(3, 1), num_outputs=5, image_size=32, width=8,
                        blocks=1, scales=2)).eval()
    fa, fb = torch.randn(2, 8, 8, 8), torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        plain = model.fusion(fa, fb)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model.fusion(fa, fb)
    assert mixed.aux["flow_bpd"].dtype == torch.float32
    assert torch.equal(mixed.aux["flow_bpd"], plain.aux["flow_bpd"])  # the flow itself saw no bf16


def test_ica_timings_report_ratios_and_roundtrip():
    rows = acc.ica_timings("cpu", tokens=(8,), dim=8, batch=2, pairs=3)
    (r,) = rows
    assert r["forward_over_sdpa_min"] <= r["forward_over_sdpa"] <= r["forward_over_sdpa_max"]
    assert r["roundtrip_max_abs_err"] < 1e-5 and r["peak_mib"]["sdpa"] is None  # no device memory on the CPU


def test_timed_reproduction_stops_when_the_budget_cannot_hold_another_group(monkeypatch, tmp_path):
    calls = []
    clock = {"t": 0.0}
    monkeypatch.setattr(acc.time, "time", lambda: clock["t"])

    def fake_reproduce(preset, out, **kw):
        calls.append(kw["tasks"][0])
        clock["t"] += 40.0  # every group takes 40 s

    import sys

    # the package re-exports the function under the module's name: patch the module itself
    monkeypatch.setattr(sys.modules["mango_lite.training.reproduce"], "reproduce", fake_reproduce)
    res = acc.timed_reproduction(tmp_path, "quick", budget_s=70.0, log=lambda m: None)
    assert calls == ["segmentation"]  # 30 s left after the first group: the next (40 s) is not started
    assert res["groups_skipped"] == ["genre", "translation"]
    md = acc.window_markdown({"device": "cpu", "torch": torch.__version__, "git_commit": None, "started": "now",
                              "dry_run": True, "reproduction": res, "errors": {"ica_timings": "RuntimeError: x"}})
    assert "not reached: genre, translation" in md and "ica_timings failed" in md


def test_train_steps_time_mango_against_tokenfusion_and_price_one_run():
    (r,) = acc.train_steps(torch.device("cpu"), dry_run=True)
    assert r["preset"] == "quick" and r["first"] == "mango"
    assert set(r["models"]) == {"mango", "tokenfusion", "mango+checkpointed"}
    q = r["first_over"]["tokenfusion"]
    assert q["ratio_min"] <= q["ratio"] <= q["ratio_max"]
    assert r["models"]["mango"]["params"] > r["models"]["tokenfusion"]["params"]
    # one run = ceil(train images / batch) steps per epoch, the preset's epochs
    assert r["run_minutes"]["nyudv2"] == pytest.approx(math.ceil(795 / 16) * 2 * r["models"]["mango"]["step_ms"] / 6e4)
    # each model's forward FLOPs at the batch, counted on the model as built; its step's peak memory measured
    from mango_lite.engine.cost import forward_flops
    from mango_lite.training.cost import preset_model, train_step_timings

    a, b = torch.randn(16, 3, 32, 32), torch.randn(16, 1, 32, 32)
    for name in ("mango", "tokenfusion"):
        torch.manual_seed(0)
        built = preset_model("segmentation", name, "quick").train()
        if name == "mango":  # checkpointing recomputes activations, it does not change the arithmetic of a forward
            assert r["models"]["mango+checkpointed"]["forward_gflops"] == r["models"]["mango"]["forward_gflops"]
        assert r["models"][name]["forward_gflops"] == pytest.approx(forward_flops(built, a, b) / 1e9)
        assert r["models"][name]["peak_step_mib"] > 0
    md = acc.window_markdown({"device": "cpu", "torch": torch.__version__, "git_commit": None, "started": "now",
                              "dry_run": True, "train_steps": [r]})
    assert "| quick | 16, 32 |" in md and "MANGO / TokenFusion" in md
    flops = r["models"]["mango"]["forward_gflops"] / r["models"]["tokenfusion"]["forward_gflops"]
    assert f"| {flops:.2f}x |" in md and "quick: MANGO with activation checkpointing, peak step memory" in md
    with pytest.raises(ValueError, match="'\\+checkpointed'"):
        train_step_timings("cpu", "quick", models=("mango", "mango+compiled"), pairs=1)


def test_ddp_check_runs_one_mango_run_on_two_processes(tmp_path):
    """The GPU window's two-process step, rehearsed with gloo on the CPU: the run finishes on 2 processes."""
    r = acc.ddp_check(torch.device("cpu"), tmp_path, dry_run=True)
    assert r["returncode"] == 0, r.get("error_tail")
    assert r["ran_on"] == 2 and r["loss"] == r["loss"]
    md = acc.window_markdown({"device": "cpu", "torch": torch.__version__, "git_commit": None, "started": "now",
                              "dry_run": True, "ddp_check": r})
    assert "Ran on 2 processes (cpu)" in md
