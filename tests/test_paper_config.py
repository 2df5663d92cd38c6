"""The ``paper`` preset end to end on CPU: the paper's model (12 MANGO blocks on 16 x 16 tokens per modality,
SegFormer encoders from a local folder), its optimisation (poly schedule after warm-up, new layers at 10x the
encoders' rate), one training step at batch 1 and one whole-image (sliding-window) evaluation, on two
generated NYUDv2 frames of the real size, 480 x 640."""

from __future__ import annotations

import math

import pytest
import torch

from mango_lite.datasets.synth.writers import write_nyudv2
from mango_lite.engine.trainer import TrainConfig, Trainer
from mango_lite.errors import MangoLiteError
from mango_lite.models import ModelConfig, build_model, count_parameters
from mango_lite.models.sliding_window import SlidingWindow, window_starts
from mango_lite.presets import get_preset
from mango_lite.training.runspec import RunOptions, RunSpec
from mango_lite.training.tasks import build_task_data, evaluate_checkpoint, model_kwargs, train_task


@pytest.fixture(scope="module")
def nyu_frames(tmp_path_factory):
    """Four generated frames of 480 x 640 in NYUDv2's layout: two for training, two for validation."""
    return write_nyudv2(tmp_path_factory.mktemp("nyudv2"), n=4, size=640, seed=0, height=480)


def test_paper_preset_is_the_papers_configuration():
    p = get_preset("paper")
    seg = p.tasks["segmentation"]
    assert (p.blocks, p.scales, p.image_size) == (12, 1, 256)
    assert seg["model"] == {"encoder": "segformer", "encoder_stride": 8}
    assert seg["scheduler"] == "poly" and seg["warmup_steps"] > 0 and seg["new_layer_lr_mult"] == 10.0
    assert seg["eval_window"] == 256
    # 256 px / stride 8 = 32 x 32 features, squeezed once: 16 x 16 tokens per modality of 4 * 64 = 256 channels
    model = build_model(ModelConfig(task="segmentation", fusion="mango",
                                    num_outputs=40, image_size=256, width=p.width, blocks=p.blocks,
                        scales=p.scales, encoder_stride=8))
    flow = model.fusion.flow
    icas = [m for m in flow.modules() if type(m).__name__ == "InvertibleCrossAttention"]
    assert len(icas) == 12 * 8
    assert {(m.dim, m.tokens) for m in icas} == {(256, 256)}  # 256 tokens per modality, 512 in all


def test_paper_model_needs_encoder_weights_and_says_how_to_give_them(nyu_frames):
    data = build_task_data("segmentation", "paper", data_root=nyu_frames)
    kw = model_kwargs("segmentation", data, get_preset("paper"))
    with pytest.raises(MangoLiteError, match="--encoder-weights .* or use --encoder conv"):
        build_model(ModelConfig(task="segmentation", fusion="mango", **kw))


def test_paper_train_step_and_whole_image_evaluation_on_480x640_frames(mit_folder, nyu_frames, tmp_path):
    preset = get_preset("paper").with_encoders(encoder_weights=str(mit_folder))
    data = build_task_data("segmentation", preset, data_root=nyu_frames)
    assert preset.selection_split and data.val is not data.test
    # the selection split (held out of train) and the reported split both see whole frames
    assert tuple(data.val[0]["rgb"].shape[-2:]) == tuple(data.test[0]["rgb"].shape[-2:]) == (480, 640)
    assert tuple(data.train[0]["rgb"].shape[-2:]) == (256, 256)
    spec = RunSpec("segmentation", "mango", preset, batch_size=1, max_steps_per_epoch=1, epochs=1, fid=False)
    res = train_task(spec, tmp_path / "run", options=RunOptions(progress=False, verbose=False), data=data)
    spec = res.to_dict()
    rec = res.history[-1]
    assert res.epochs_run == 1 and math.isfinite(rec["train_loss"])
    # poly schedule in its warm-up (step 1 of 1500), the new layers at 10x the pretrained encoders' rate
    assert rec["lr"] == pytest.approx(preset.lr * 10 * 2 / 1500) and rec["lr_pretrained"] == pytest.approx(rec["lr"] / 10)
    # the whole-image evaluation scored the labelled pixels of both 480 x 640 validation frames
    assert 0.0 <= res.metrics["miou"] <= 100.0 and math.isfinite(res.metrics["flow_bpd"])
    assert spec["params"] > 20e6  # 12 blocks on 512 tokens of 256 channels
    # the checkpoint rebuilds (encoders from the same folder, then the trained weights) and evaluates alike
    again = evaluate_checkpoint(tmp_path / "run", device="cpu")
    assert again["metrics"]["miou"] == pytest.approx(res.metrics["miou"], abs=1e-6)


def test_sliding_window_covers_every_pixel_and_equals_the_model_on_a_window_sized_image():
    assert window_starts(341, 256, 170) == [0, 85]
    assert window_starts(256, 256, 170) == [0]
    assert window_starts(700, 256, 170) == [0, 170, 340, 444]
    torch.manual_seed(0)
    model = build_model(ModelConfig(task="segmentation", fusion="concat", num_outputs=5, image_size=32, width=8, scales=1,
                        encoder_stride=4)).eval()
    a, b = torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        same = SlidingWindow(model, 32)(a, b).pred
        assert torch.allclose(same, model(a, b).pred, atol=1e-5)
        big = SlidingWindow(model, 32)(torch.randn(1, 3, 48, 64), torch.randn(1, 1, 48, 64)).pred
    assert big.shape == (1, 5, 48, 64) and torch.isfinite(big).all()
    with pytest.raises(ValueError, match="two image batches of one size"):
        SlidingWindow(model, 32)(a, b[..., :16])


def test_paper_poly_schedule_warms_up_then_decays_linearly_to_zero():
    model = torch.nn.Linear(2, 2)

    class _Set(torch.utils.data.Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return {"a": torch.zeros(2), "b": torch.zeros(2), "y": torch.zeros(2)}

    from mango_lite.engine.trainer import BatchAdapter

    cfg = TrainConfig(epochs=2, batch_size=1, lr=1.0, scheduler="poly", warmup_steps=4, progress=False, verbose=False)
    t = Trainer(model, _Set(), None, BatchAdapter("a", "b", "y"), cfg)
    f = [t._lr_factor(s) for s in range(20)]
    assert f[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f[4] == pytest.approx(1.0) and f[12] == pytest.approx(0.5) and f[19] == pytest.approx(1 / 16)
    with pytest.raises(MangoLiteError, match="scheduler must be 'cosine', 'poly' or 'constant'"):
        TrainConfig(scheduler="step")


def test_paper_parameter_counts_put_mango_above_tokenfusion():
    """Table 8's claim (MANGO heavier than TokenFusion), at the paper preset with the same encoders."""
    p = get_preset("paper")
    counts = {f: count_parameters(build_model(ModelConfig(task="segmentation", fusion=f,
                                                          num_outputs=40, image_size=256, width=p.width,
                                              blocks=p.blocks, scales=p.scales, encoder_stride=8)))
              for f in ("mango", "tokenfusion", "concat")}
    assert counts["mango"]["encoders"] == counts["tokenfusion"]["encoders"] == counts["concat"]["encoders"]
    assert counts["mango"]["total"] > counts["tokenfusion"]["total"] > counts["concat"]["total"]
    assert counts["mango"]["total"] < 50e6  # no longer 280 M: LICA sized to 512 tokens, 12 blocks in all


def test_params_command_writes_the_counts_and_checks_table_8s_claim(tmp_path, capsys):
    import json

    from mango_lite.cli import main

    assert main(["params", "--preset", "quick", "--tasks", "segmentation", "--out", str(tmp_path)]) == 0
    counts = json.loads((tmp_path / "params.json").read_text())
    seg = counts["tasks"]["segmentation"]
    assert set(seg) == {"mango", "tokenfusion", "crossattn", "concat"}
    assert counts["claim_holds"]["segmentation"] == (seg["mango"]["total"] > seg["tokenfusion"]["total"])
    md = (tmp_path / "params.md").read_text()
    assert "Table 8" in md and md in capsys.readouterr().out
    # the paper preset without weights is counted with encoders from scratch, and says so
    from mango_lite.training.cost import parameter_counts

    assert "no pretrained weights given" in parameter_counts("paper", ["segmentation"], models=("mango",))["encoders"]
