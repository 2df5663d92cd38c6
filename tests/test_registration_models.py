"""The pieces the registration study adds to training: a concat with a large receptive field sized to MANGO's
budget, a selection split held out of the training split, and misregistered stand-ins through the presets."""

from __future__ import annotations

import json

import pytest
import torch

from mango_lite.errors import MangoLiteError
from mango_lite.models import ModelConfig, build_model
from mango_lite.models.context_fusion import ContextConcatFusion
from mango_lite.presets import SELECTION_FRACTION, get_preset
from mango_lite.training.tasks import (
    build_task_data,
    control_overrides,
    count_params,
    model_kwargs,
    prepare_data,
    resolve_budget,
    resolve_model,
    selection_indices,
)

TINY = get_preset("quick").with_overrides(image_size=16, n_train=20, n_val=8, width=8, blocks=1, scales=1)


def test_context_concat_starts_as_concat_and_reaches_further():
    torch.manual_seed(0)
    fuse = ContextConcatFusion(8, 8, scales=1, dilations=(1, 2, 3), hidden=8)
    a, b = torch.randn(1, 8, 8, 8), torch.randn(1, 8, 8, 8)
    plain = fuse.fuse[0](torch.cat([fuse.conv[0][0][0](fuse.down[0][0](a)), fuse.conv[0][0][1](fuse.down[0][1](b))], 1))
    assert torch.allclose(fuse(a, b).features[0], plain, atol=1e-6)  # zero-initialised context: concat at start
    with torch.no_grad():
        for p in fuse.context.parameters():
            p.add_(0.1 * torch.randn_like(p))
    # the fused map at cell (0, 0) now depends on B three cells away (dilation 3 at the 4 x 4 grid)
    b2 = b.clone().requires_grad_(True)
    out = fuse(a, b2).features[0][0, :, 0, 0].sum()
    (g,) = torch.autograd.grad(out, b2)
    assert g[0, :, 6:, 6:].abs().sum() > 0  # input pixels 6-7 -> grid cell 3
    with pytest.raises(ValueError, match="dilations must be positive"):
        ContextConcatFusion(8, 8, scales=1, dilations=(0,))


def test_concat_context_has_about_mangos_trainable_parameters(tmp_path):
    data = build_task_data("segmentation", TINY, cache_dir=tmp_path)
    assert resolve_model("segmentation", "concat-context") == "concat"
    kw = resolve_budget("segmentation", "concat", model_kwargs("segmentation", data, TINY,
                                                               control_overrides("concat-context")))
    mango = count_params(build_model(ModelConfig(task="segmentation", fusion="mango",
                                                 **model_kwargs("segmentation", data, TINY))))
    ctx = count_params(build_model(ModelConfig(task="segmentation", fusion="concat", **kw)))
    concat = count_params(build_model(ModelConfig(task="segmentation", fusion="concat",
                                                  **model_kwargs("segmentation", data, TINY))))
    assert abs(ctx / mango - 1) <= 0.10 and ctx > 1.3 * concat


def test_selection_split_is_held_out_of_training_and_reporting_stays_on_the_test_split(tmp_path):
    keep, held = selection_indices(40)
    assert sorted(keep + held) == list(range(40)) and len(held) == round(SELECTION_FRACTION * 40)
    assert selection_indices(40) == (keep, held)  # seeded: every run and model holds out the same samples
    plain = build_task_data("segmentation", TINY, cache_dir=tmp_path)
    split = build_task_data("segmentation", TINY.with_overrides(selection_split=True), cache_dir=tmp_path)
    assert plain.val is plain.test  # the older protocol: one split for both
    assert split.val is not split.test and len(split.test) == len(plain.test)
    assert len(split.train) + len(split.val) == len(plain.train)
    # the selection samples are training samples without augmentation
    s0 = split.val[0]
    assert torch.equal(s0["label"], split.val[0]["label"])
    with pytest.raises(MangoLiteError, match="at least 2 samples"):
        selection_indices(1)


def test_a_sensor_baseline_gets_its_own_stand_in_folder(tmp_path):
    reg = prepare_data("nyudv2", TINY, cache_dir=tmp_path)
    mis = prepare_data("nyudv2", TINY.with_overrides(sensor_baseline_m=0.2), cache_dir=tmp_path)
    assert reg.root.endswith("seed0") and mis.root.endswith("seed0-b0.2")
    assert json.loads((tmp_path / mis.root.split("/")[-1] / "meta.json").read_text())["baseline_m"] == 0.2
    with pytest.raises(MangoLiteError, match="only the"):
        prepare_data("mmimdb", TINY.with_overrides(sensor_baseline_m=0.2), cache_dir=tmp_path)


def test_the_command_line_writes_and_trains_on_misregistered_stand_ins(tmp_path, capsys):
    from mango_lite.cli import main

    assert main(["data", "synth", "nyudv2", "--root", str(tmp_path / "nyu"), "--n", "4", "--size", "32",
                 "--sensor-baseline", "0.2"]) == 0
    assert "median disparity" in capsys.readouterr().out
    assert json.loads((tmp_path / "nyu" / "meta.json").read_text())["baseline_m"] == 0.2
    assert main(["data", "synth", "mmimdb", "--root", str(tmp_path / "mm"), "--sensor-baseline", "0.2"]) != 0
    assert "only the nyudv2 and taskonomy stand-ins can be misregistered" in capsys.readouterr().err
    assert main(["train", "--task", "segmentation", "--model", "concat", "--preset", "quick", "--epochs", "1",
                 "--sensor-baseline", "0.1", "--out", str(tmp_path / "run"), "--quiet", "--device", "cpu"]) == 0
    spec = json.loads((tmp_path / "run" / "metrics.json").read_text())["spec"]
    assert spec["preset"]["sensor_baseline_m"] == 0.1 and spec["data"]["meta"]["baseline_m"] == 0.1
    assert main(["train", "--task", "segmentation", "--model", "concat", "--preset", "quick", "--sensor-baseline",
                 "-1", "--out", str(tmp_path / "bad")]) != 0
    assert "expected metres >= 0" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["mango-gamma-token", "mango-gamma-token-diag"])
def test_the_ica_variants_of_the_study_build_with_their_options_and_train(tmp_path, name):
    from mango_lite.flows import InvertibleCrossAttention
    from mango_lite.training import RunOptions, RunSpec, train_task

    res = train_task(RunSpec("segmentation", name, TINY.with_overrides(epochs=1)), tmp_path / name,
                     options=RunOptions(cache_dir=tmp_path / "data", progress=False, verbose=False))
    assert res.fusion == "mango" and res.metrics["loss"] == res.metrics["loss"]
    from mango_lite.training.tasks import load_model

    net, spec, _ = load_model(tmp_path / name)
    icas = [m for m in net.modules() if isinstance(m, InvertibleCrossAttention)]
    assert icas and all(m.gamma_mode == "token" for m in icas)
    assert all(hasattr(m, "self_logit_offset") == name.endswith("-diag") for m in icas)


def test_a_checkpoint_is_evaluated_on_the_reported_split_unless_the_selection_split_is_asked_for(tmp_path):
    from mango_lite.training import RunOptions, RunSpec
    from mango_lite.training.tasks import evaluate_checkpoint, train_task

    p = TINY.with_overrides(selection_split=True, epochs=1)
    res = train_task(RunSpec("segmentation", "concat", p), tmp_path / "run",
                     options=RunOptions(cache_dir=tmp_path / "data", progress=False, verbose=False))
    reported = evaluate_checkpoint(tmp_path / "run", device="cpu")
    assert reported["split"] == "val" and reported["metrics"]["miou"] == pytest.approx(res.metrics["miou"], abs=1e-6)
    held = evaluate_checkpoint(tmp_path / "run", split="selection", device="cpu")
    assert held["metrics"]["miou"] == pytest.approx(res.history[-1]["val_miou"], abs=1e-6)
    assert held["metrics"]["miou"] != pytest.approx(reported["metrics"]["miou"], abs=1e-6)
    with pytest.raises(MangoLiteError, match="unknown split"):
        evaluate_checkpoint(tmp_path / "run", split="dev", device="cpu")


def test_a_run_of_the_older_protocol_is_not_resumed_under_the_selection_split(tmp_path):
    from mango_lite.training import RunJob, RunOptions, RunSpec
    from mango_lite.training.executor import train_run
    from mango_lite.training.tasks import train_task

    options = RunOptions(cache_dir=tmp_path / "data", progress=False, verbose=False)
    p = TINY.with_overrides(epochs=1)
    spec = RunSpec("segmentation", "concat", p)
    train_task(spec, tmp_path / "run", options=options)
    newer = spec.replace(preset=p.with_overrides(selection_split=True))
    with pytest.raises(MangoLiteError, match="different configuration.*selection_split: False -> True"):
        train_task(newer, tmp_path / "run", options=options.replace(resume=True))
    # the study runners' path trains it again from scratch instead
    res = train_run(RunJob(newer, tmp_path / "run", options.replace(resume=True, retrain_stale=True)))
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["spec"]["preset"]["selection_split"] is True
    assert res.epochs_run == 1
