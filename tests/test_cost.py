"""mango_lite.training.cost: peak-memory accounting against hand-counted bytes, FLOPs against the
closed form of a linear layer, parameter counts, and that the caller's model is left untouched."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mango_lite.errors import MangoLiteError
from mango_lite.models import ModelConfig, build_model
from mango_lite.training.cost import COST_KEYS, measure_cost, peak_memory_bytes

MB = 1024.0**2


def test_peak_memory_counts_live_bytes_not_total() -> None:
    n = 4_000_000  # bytes; large enough to dwarf any bookkeeping allocation

    def two_alive() -> None:
        a = torch.empty(n, dtype=torch.uint8)
        b = torch.empty(n, dtype=torch.uint8)
        del a, b

    def one_after_other() -> None:
        a = torch.empty(n, dtype=torch.uint8)
        del a
        b = torch.empty(n, dtype=torch.uint8)
        del b

    p2, p1 = peak_memory_bytes(two_alive), peak_memory_bytes(one_after_other)
    # hand count: two live buffers -> 2n; freed in between -> n (allocator alignment adds < 1 %)
    assert 2 * n <= p2 < 2 * n * 1.01
    assert n <= p1 < n * 1.01
    assert peak_memory_bytes(lambda: None) == 0


def test_linear_layer_cost_matches_closed_forms() -> None:
    B, fin, fout = 32, 128, 512
    model = nn.Linear(fin, fout)
    x = torch.randn(B, fin)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    c = measure_cost(model, x, None, steps=3, warmup=1, device="cpu")
    assert set(COST_KEYS) <= set(c)
    assert c["params"] == fin * fout + fout
    assert c["forward_gflops"] == pytest.approx(2 * B * fin * fout / 1e9)  # one addmm: 2*B*in*out
    # train step keeps the output (B x out) and allocates weight + bias gradients (float32)
    floor = 4 * (B * fout + fin * fout + fout) / MB
    assert floor <= c["peak_train_mb"] < 6 * floor
    assert 4 * B * fout / MB <= c["peak_infer_mb"] < c["peak_train_mb"]
    for k in ("train_step_ms", "infer_ms"):
        assert math.isfinite(c[k]) and c[k] > 0
        lo, hi = c[f"{k}_iqr"]
        assert 0 < lo <= hi
    assert c["batch_size"] == B and c["device"].startswith("cpu")
    # the measurement ran on a copy: weights unchanged, no gradients left behind
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert all(p.grad is None for p in model.parameters())


def test_task_models_mango_costs_more_than_concat_and_is_untouched() -> None:
    kw = dict(in_channels=(3, 1), num_outputs=5, image_size=32, width=8, blocks=1, scales=2)
    torch.manual_seed(0)
    mango = build_model(ModelConfig(task="segmentation", fusion="mango", **kw))
    concat = build_model(ModelConfig(task="segmentation", fusion="concat", **kw))
    rgb, depth = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    label = torch.randint(0, 5, (2, 32, 32))
    before = {k: v.clone() for k, v in mango.state_dict().items()}
    # memory profiles and FLOP counts are covered above on a closed form; here only what a task model adds
    cm = measure_cost(mango, rgb, depth, label, steps=1, warmup=0, device="cpu", memory=False, flops=False)
    assert cm["params"] == sum(p.numel() for p in mango.parameters() if p.requires_grad)
    assert cm["params"] > sum(p.numel() for p in concat.parameters())
    assert cm["peak_train_mb"] is None and cm["forward_gflops"] is None
    assert cm["train_step_ms"] > cm["infer_ms"] > 0
    # ActNorm's data-dependent init ran on the copy only
    after = mango.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(MangoLiteError, match="steps"):
        measure_cost(nn.Linear(2, 2), torch.randn(1, 2), steps=0)
    with pytest.raises(MangoLiteError, match="nn.Module"):
        measure_cost(lambda x, y: x, torch.randn(1, 2))  # type: ignore[arg-type]


def _fake_results() -> dict:
    seg = {"mango": {"miou": 30.0, "params": 10}, "concat": {"miou": 20.0, "params": 5},
           "tokenfusion": {"miou": 40.0, "params": 6}, "crossattn": {"miou": 25.0, "params": 7}}
    tr = {"mango": {"mae_x10": 1.0, "mae": 0.1, "params": 10},
          "concat": {"mae_x10": 2.0, "mae": 0.2, "params": 5},
          "tokenfusion": {"mae_x10": 0.5, "mae": 0.05, "params": 6},
          "crossattn": {"mae_x10": 4.0, "mae": 0.4, "params": 7}}
    return {"finished": "now", "results": {
        "segmentation/nyudv2": {"task": "segmentation", "dataset": "nyudv2", "pair": None, "models": seg,
                                "data": "generated stand-in", "data_description": "x"},
        "translation/rgb_edge_to_depth": {"task": "translation", "dataset": "taskonomy", "pair": "rgb_edge_to_depth",
                                          "pair_label": "RGB+Edge→Depth", "models": tr, "data": "generated stand-in",
                                          "data_description": "x"}}}


def test_claim_rows_respect_metric_direction_and_paper_values() -> None:
    from mango_lite.viz import reproduction as rx

    rows = {r["group"]: r for r in rx.claim_rows(_fake_results())}
    seg, tr = rows["NYUDv2"], rows["RGB+Edge→Depth"]
    # higher is better: 30 vs 20 -> +50 %, vs 40 -> -25 %; rank 2 of 4 behind tokenfusion
    assert seg["gain vs concat %"] == pytest.approx(50.0) and seg["gain vs tokenfusion %"] == pytest.approx(-25.0)
    assert seg["mango rank"] == 2 and seg["best baseline"] == "tokenfusion" and not seg["mango best"]
    # paper, as printed: MANGO 59.2 vs Feature Concat (Tiny) 50.8 mIoU
    assert seg["paper gain vs concat %"] == pytest.approx(100 * (59.2 - 50.8) / 50.8)
    # lower is better: MAE 1.0 vs 2.0 -> +50 %, vs 0.5 -> -100 %; paper 0.17 vs 0.40
    assert tr["gain vs concat %"] == pytest.approx(50.0) and tr["gain vs tokenfusion %"] == pytest.approx(-100.0)
    assert tr["paper gain vs concat %"] == pytest.approx(100 * (0.40 - 0.17) / 0.40)


def test_check_results_reports_missing_failed_and_out_of_range() -> None:
    from mango_lite.viz import reproduction as rx

    res = _fake_results()
    assert rx.check_results(res) == []
    seg = res["results"]["segmentation/nyudv2"]["models"]
    seg["mango"]["miou"] = float("nan")
    seg["concat"]["miou"] = 120.0
    seg["crossattn"] = {"error": "diverged"}
    del seg["tokenfusion"]
    del res["finished"]
    probs = " | ".join(rx.check_results(res))
    for needle in ("did not finish", "mango: miou=nan", "concat: miou=120.0", "crossattn: training failed",
                   "tokenfusion: missing"):
        assert needle in probs, (needle, probs)


def test_ablation_rows_name_a_reference_rows_partitions_when_given():
    from mango_lite.viz.reproduction import ablation_rows

    report = {"metric": "miou", "variants": {"mmca": {"overrides": {"partitions": ["mmca"]}, "metrics": {"miou": 7.5},
                                                      "params": 10, "wall_time_s": 1.0}}}
    rows = ablation_rows(report, {"all (seed 1)": {"metrics": {"miou": 7.7}, "partitions": "mmca+imca+lica"},
                                  "concat (reference)": {"metrics": {"miou": 7.3}}})
    assert [r["partitions"] for r in rows] == ["mmca", "mmca+imca+lica", "-"]
    assert [r["miou"] for r in rows] == [7.5, 7.7, 7.3]


def test_saved_for_backward_counts_each_saved_storage_once() -> None:
    from mango_lite.engine.cost import saved_for_backward_bytes

    x = torch.randn(1000, requires_grad=True)
    assert saved_for_backward_bytes(lambda: torch.exp(x)) == 4000  # exp keeps its output
    assert saved_for_backward_bytes(lambda: x * x) == 4000  # x, kept twice, is one storage
    with torch.no_grad():
        assert saved_for_backward_bytes(lambda: torch.exp(x)) == 0
