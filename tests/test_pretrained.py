"""Encoders from user-supplied weights: randomly initialised models saved to a temporary folder and loaded
through the same path a user's pretrained copy takes (nothing is downloaded), then one training step."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from mango_lite.errors import MangoLiteError
from mango_lite.models import ModelConfig, build_model, split_pretrained_parameters
from mango_lite.models.pretrained import PretrainedTextEncoder, SegformerEncoder, TimmEncoder

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def text_folder(tmp_path_factory):
    """A tiny BERT with its own word-piece vocabulary, saved with its tokenizer."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"a the man woman love war space ship ghost house of in".split()]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    transformers.BertTokenizer(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    cfg = transformers.BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=64)
    transformers.BertModel(cfg).save_pretrained(folder)
    return folder


def _one_step(model, a, b, target):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss, _ = model.loss(model(a, b), target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def test_segformer_encoder_loads_the_saved_weights_and_keeps_the_stages_it_needs(mit_folder):
    saved = transformers.SegformerModel.from_pretrained(str(mit_folder), local_files_only=True)
    enc = SegformerEncoder(mit_folder, in_channels=1, width=12, stride=8)
    assert enc.reductions == [4, 8, 16, 32] and enc.level == 1
    stages = enc.backbone.stages if hasattr(enc.backbone, "stages") else enc.backbone.encoder.block
    assert len(stages) == 2  # stages past stride 8 dropped
    ours = enc.backbone.state_dict()
    for k, v in ours.items():  # every kept tensor is the user's, not a fresh initialisation
        assert torch.equal(v, saved.state_dict()[k]), k
    depth = torch.randn(2, 1, 32, 48)
    out = enc(depth)
    assert out.shape == (2, 12, 4, 6)
    # a 1-channel modality is fed as its 3-fold repeat (TokenFusion's way of feeding depth)
    ref = saved(pixel_values=depth.expand(-1, 3, -1, -1), output_hidden_states=True).hidden_states[1]
    enc.eval()
    assert torch.allclose(enc.features(depth.expand(-1, 3, -1, -1)), ref, atol=1e-6)


def test_segformer_encoder_errors_name_what_is_missing(mit_folder, tmp_path):
    with pytest.raises(MangoLiteError, match="does not exist. mango_lite never downloads"):
        SegformerEncoder(tmp_path / "absent", 3, 8)
    with pytest.raises(MangoLiteError, match="needs local pretrained weights"):
        SegformerEncoder(None, 3, 8)
    with pytest.raises(MangoLiteError, match=r"feature reductions \[4, 8, 16, 32\]; none equals encoder_stride 2"):
        SegformerEncoder(mit_folder, 3, 8, stride=2)
    with pytest.raises(MangoLiteError, match="reads 3 channels .* got in_channels=2"):
        SegformerEncoder(mit_folder, 2, 8)
    with pytest.raises(MangoLiteError, match="could not load a SegFormer model"):
        SegformerEncoder(tmp_path, 3, 8)  # a folder without config.json
    # a folder whose weights do not cover the model: refused, not silently initialised at random
    import shutil

    from safetensors.torch import load_file, save_file

    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(mit_folder / "config.json", other)
    state = load_file(str(next(mit_folder.glob("*.safetensors"))))
    save_file({k: v for i, (k, v) in enumerate(sorted(state.items())) if i % 2}, str(other / "model.safetensors"))
    with pytest.raises(MangoLiteError, match="miss .* tensors of the model"):
        SegformerEncoder(other, 3, 8)


def test_segmentation_model_with_segformer_encoders_trains_one_step_with_separate_learning_rates(mit_folder):
    torch.manual_seed(0)
    model = build_model(ModelConfig(task="segmentation", fusion="mango",
                                    in_channels=(3, 1), num_outputs=5, image_size=32, width=8, blocks=1,
                        scales=1, encoder_stride=8, encoder="segformer", encoder_weights=str(mit_folder)))
    assert model.config.encoder == "segformer"
    pre, new = split_pretrained_parameters(model)
    backbone = [p for e in (model.encoder_a, model.encoder_b) for p in e.backbone.parameters()]
    assert {id(p) for p in pre} == {id(p) for p in backbone}
    assert len(pre) + len(new) == len([p for p in model.parameters() if p.requires_grad])
    before = [p.detach().clone() for p in pre]
    loss = _one_step(model, torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32), torch.randint(0, 5, (2, 32, 32)))
    assert torch.isfinite(loss)
    assert any(not torch.equal(p, q) for p, q in zip(pre, before)), "the pretrained backbone did not train"


def test_pretrained_text_encoder_mean_pools_a_frozen_language_model(text_folder):
    enc = PretrainedTextEncoder(text_folder, width=8, tokens=4, grid=(2, 2))
    texts = ["a man in space", "the ghost of a house and a woman in love"]
    out = enc(texts)
    assert out.shape == (2, 8, 2, 2)
    assert list(enc.pretrained_parameters()) == []  # frozen: nothing for the optimizer
    enc.train()
    assert not enc.backbone.training  # a frozen model keeps dropout off
    # the pooled vector is the mean over real tokens: padding does not change a short plot's embedding
    alone = enc.embed(texts[:1])
    assert torch.allclose(alone, enc.embed(texts)[:1], atol=1e-5)
    tuned = PretrainedTextEncoder(text_folder, width=8, tokens=4, grid=(2, 2), finetune=True)
    assert len(list(tuned.pretrained_parameters())) == len(list(tuned.backbone.parameters()))
    with pytest.raises(ValueError, match="expected a list of plot strings"):
        enc(torch.zeros(2, 300))


def test_genre_model_with_a_pretrained_text_encoder_trains_one_step(text_folder):
    torch.manual_seed(0)
    model = build_model(ModelConfig(task="genre", fusion="mango",
                                    in_channels=(3, 3), num_outputs=23, image_size=32, width=8, blocks=1,
                        scales=1, encoder_stride=8, text_encoder="pretrained", text_model=str(text_folder)))
    texts = ["a love story in a house", "war in space"]
    target = torch.zeros(2, 23)
    target[0, 3] = target[1, 7] = 1
    assert torch.isfinite(_one_step(model, torch.randn(2, 3, 32, 32), texts, target))
    with pytest.raises(MangoLiteError, match="needs local pretrained weights"):
        build_model(ModelConfig(task="genre", fusion="concat",
                                in_channels=(3, 3), num_outputs=23, image_size=32, width=8, scales=1,
                    encoder_stride=8, text_encoder="pretrained"))


class _FakeFeatures(nn.Module):
    """What ``timm.create_model(..., features_only=True)`` returns: levels at reductions 2 and 4."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.stage = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        info = types.SimpleNamespace(reduction=lambda: [2, 4], channels=lambda: [4, 6])
        self.feature_info = info

    def forward(self, x):
        f1 = self.stem(x)
        return [f1, self.stage(f1)]


@pytest.fixture
def fake_timm(monkeypatch):
    """timm needs torchvision, which has no CPU build here: the wiring is tested against a stand-in module
    with timm's interface (the real package is tested below when installed)."""
    mod = types.ModuleType("timm")
    mod.create_model = lambda name, pretrained, features_only, in_chans: _FakeFeatures()
    monkeypatch.setitem(sys.modules, "timm", mod)
    return mod


def test_timm_encoder_loads_matching_tensors_and_picks_the_level(fake_timm, tmp_path):
    torch.manual_seed(1)
    saved = _FakeFeatures()
    path = tmp_path / "backbone.pth"
    torch.save({"state_dict": saved.state_dict()}, path)
    enc = TimmEncoder("fake", path, in_channels=1, width=5, stride=4)
    assert enc.matched == 4 and enc.level == 1
    assert torch.equal(enc.backbone.stage.weight, saved.stage.weight)
    assert enc(torch.randn(2, 1, 16, 16)).shape == (2, 5, 4, 4)
    torch.save({"other": torch.zeros(3)}, tmp_path / "wrong.pth")
    with pytest.raises(MangoLiteError, match="only 0 of the 4 tensors of timm model 'fake'"):
        TimmEncoder("fake", tmp_path / "wrong.pth", 3, 5, 4)
    with pytest.raises(MangoLiteError, match="none equals encoder_stride 8"):
        TimmEncoder("fake", path, 3, 5, 8)
    with pytest.raises(MangoLiteError, match="needs encoder_name"):
        build_model(ModelConfig(task="segmentation", fusion="concat", in_channels=(3, 1), num_outputs=3, image_size=16, scales=1,
                    encoder_stride=4, encoder="timm", encoder_weights=str(path)))


def test_timm_encoder_without_timm_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "timm", None)  # import fails
    with pytest.raises(MangoLiteError, match=r"optional package 'timm'.*mango_lite\[pretrained\]"):
        TimmEncoder("resnet18", tmp_path / "x.pth", 3, 8, 8)


def test_real_timm_backbone_round_trip(tmp_path):
    timm = pytest.importorskip("timm")  # needs torchvision; skipped where it has no build
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), tmp_path / "r18.pth")
    enc = TimmEncoder("resnet18", tmp_path / "r18.pth", in_channels=3, width=8, stride=8)
    assert enc(torch.randn(1, 3, 32, 32)).shape == (1, 8, 4, 4)


def test_old_configurations_mean_encoders_trained_from_scratch():
    from mango_lite.engine.trainer import config_differences

    new = ModelConfig(task="segmentation", fusion="concat", in_channels=(3, 1), num_outputs=3, image_size=16,
                      scales=1, encoder_stride=4).to_dict()
    old = {k: v for k, v in new.items() if k not in ("encoder", "encoder_weights", "encoder_name", "text_model",
                                                      "text_finetune", "config_version")}
    assert ModelConfig.from_dict(old).encoder == "conv"
    assert config_differences(old, new) == []


def test_a_pretrained_text_encoder_refuses_the_plot_vectors_of_the_hdf5_release(tmp_path):
    pytest.importorskip("h5py")
    from mango_lite.datasets.synth.mmimdb import write_mmimdb
    from mango_lite.presets import get_preset
    from mango_lite.training.tasks import build_task_data

    root = write_mmimdb(tmp_path / "mmimdb", 10, size=16, seed=0)
    (root / "split.json").unlink()  # no raw split: the loader reads the GMU hdf5 (300-d plot vectors)
    preset = get_preset("quick").with_encoders(text_model=str(tmp_path / "any-text-model"))
    with pytest.raises(MangoLiteError, match="reads the plots as text, but .* holds MM-IMDb's GMU hdf5"):
        build_task_data("genre", preset, data_root=root)


def test_weights_for_encoders_trained_from_scratch_are_refused(tmp_path, capsys):
    with pytest.raises(MangoLiteError, match="encoder='conv' trains its encoders from scratch"):
        build_model(ModelConfig(task="segmentation", fusion="concat", in_channels=(3, 1), num_outputs=3, image_size=16, scales=1,
                    encoder_stride=4, encoder_weights=str(tmp_path)))
    from mango_lite.cli import main

    assert main(["params", "--preset", "quick", "--text-finetune"]) == 2
    assert "--text-finetune needs --text-model" in capsys.readouterr().err
