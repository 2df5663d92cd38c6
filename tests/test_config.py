"""FlowConfig and ModelConfig: one frozen configuration from ICA to build_model, stored with a version."""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import pytest
import torch

from mango_lite.engine.trainer import config_differences
from mango_lite.flows import ICA, FlowConfig, MangoBlock, MangoFlow, MultiscaleMango
from mango_lite.models import MangoFusion, ModelConfig, build_model
from mango_lite.models.config import CONFIG_VERSION, FUSION_KEYS

ROOT = Path(__file__).resolve().parents[1]
KW = dict(in_channels=(3, 1), num_outputs=5, image_size=32, width=8, blocks=1, scales=2)


def _icas(module):
    return [m for m in module.modules() if isinstance(m, ICA)]


# -------------------------------------------------------------------------------------------- FlowConfig
def test_the_two_named_layouts_differ_only_where_the_selection_split_changed_the_paper():
    paper, rec = FlowConfig.paper(), FlowConfig.recommended()
    assert paper == FlowConfig()
    changed = {f.name for f in dataclasses.fields(FlowConfig) if getattr(paper, f.name) != getattr(rec, f.name)}
    assert changed == {"alternate", "positions", "conditioner", "nll_to_encoders"}
    assert (rec.alternate, rec.positions, rec.conditioner, rec.nll_to_encoders) == (True, True, "grid", False)
    assert FlowConfig.recommended(gamma_rate=10.0).gamma_rate == 10.0


def test_flow_config_is_frozen_normalised_and_validated():
    c = FlowConfig(layers=[["IMCA", 1]], heads=2.0, gamma_rate=3)
    assert c.layers == (("imca", 1),) and c.heads == 2 and isinstance(c.gamma_rate, float)
    assert hash(c) == hash(FlowConfig(layers=(("imca", 1),), heads=2, gamma_rate=3.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.heads = 3  # type: ignore[misc]
    for bad, match in [({"gamma": 1.0}, "gamma must lie in"), ({"gamma_mode": "row"}, "gamma_mode must be one of"),
                       ({"gamma": None, "gamma_mode": "token"}, "needs a gamma"), ({"conditioner": "conv"}, "conditioner"),
                       ({"gamma_rate": 0.0}, "gamma_rate must be > 0"), ({"layers": [("xyz", 0)]}, "partition"),
                       ({"heads": 0}, "heads must be >= 1"), ({"noise": -1.0}, "noise")]:
        with pytest.raises(ValueError, match=match):
            FlowConfig(**bad)
    with pytest.raises(ValueError, match="unknown option.*'gama'"):
        FlowConfig().replace(gama=0.2)
    assert FlowConfig.from_dict(c.to_dict()) == c


def test_every_module_reads_one_config_and_keywords_change_it_in_place():
    c = FlowConfig(heads=2, gamma=0.3, gamma_rate=5.0, alternate=True, layers=[("imca", 0), ("imca", 1), ("mmca", 0)])
    block = MangoBlock(4, 4, config=c)
    icas = _icas(block)
    assert [m.config for m in icas] == [c, c, c]
    assert [m.triangle for m in icas] == ["upper", "lower", "upper"]
    assert {m.heads for m in icas} == {2} and {round(float(m.gamma.detach().mean()), 6) for m in icas} == {0.3}
    # a keyword on top of the config, at any level
    assert {m.heads for m in _icas(MangoFlow(4, 4, blocks=2, config=c, heads=1))} == {1}
    assert MangoBlock(4, 4, heads=2).config == FlowConfig(heads=2)
    with pytest.raises(TypeError, match="MangoBlock: unexpected keyword.*'alternat'"):
        MangoBlock(4, 4, alternat=True)
    with pytest.raises(TypeError, match="ICA: unexpected keyword.*'alternate'"):  # a block's option, not a layer's
        ICA(4, 4, alternate=True)
    with pytest.raises(TypeError, match="MultiscaleMango: unexpected keyword.*'noise'"):  # the fusion's
        MultiscaleMango(1, 8, noise=0.1)
    with pytest.raises(TypeError, match="config must be a FlowConfig"):
        MangoBlock(4, 4, config={"heads": 2})


def test_multiscale_mango_caps_qk_dim_per_scale_and_passes_the_rest():
    flow = MultiscaleMango(1, 8, scales=2, blocks=1, config=FlowConfig.recommended(qk_dim=4, gamma_mode="modality"))
    widths = sorted({m.qk_dim for m in _icas(flow)})
    assert widths == [4]  # 4 and 8 channels at the two scales, both capped at 4
    assert {m.gamma_mode for m in _icas(flow)} == {"modality"}
    assert all(m.grid is not None for m in _icas(flow))  # positions from the config, grids from the flow


def test_mango_fusion_defaults_to_the_recommended_layout_not_the_collapsing_one():
    fusion = MangoFusion(8, 8, scales=2, blocks=1)
    assert fusion.config == FlowConfig.recommended() and not fusion.nll_to_encoders
    assert {m.triangle for m in _icas(fusion)} == {"upper", "lower"}
    paper = MangoFusion(8, 8, scales=2, blocks=1, config=FlowConfig.paper())
    assert paper.nll_to_encoders and {m.triangle for m in _icas(paper)} == {"upper"}


# ------------------------------------------------------------------------------------------- ModelConfig
def test_the_task_models_flow_defaults_are_the_recommended_flow_config():
    c = ModelConfig(task="segmentation", fusion="mango", **KW)
    assert c.flow == FlowConfig.recommended(hidden=4 * 8, qk_dim=2 * 8)
    paper = ModelConfig.paper_layout(task="segmentation", fusion="mango", **KW)
    assert paper.flow == FlowConfig.paper(hidden=4 * 8, qk_dim=2 * 8)
    assert build_model(paper).fusion.nll_to_encoders


def test_build_model_takes_one_config_object():
    params = inspect.signature(build_model).parameters
    assert list(params)[0] == "config" and len(params) - 1 <= 8
    with pytest.raises(TypeError, match="expects a ModelConfig"):
        build_model("segmentation")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown field.*'flow_gama'"):
        ModelConfig.from_options("segmentation", "mango", {**KW, "flow_gama": 0.2})
    with pytest.raises(ValueError, match="partitions is a MANGO ablation"):
        ModelConfig(task="segmentation", fusion="concat", partitions=("mmca",), **KW)
    with pytest.raises(ValueError, match="text_encoder must be one of"):
        ModelConfig(task="genre", fusion="concat", text_encoder="bert", **KW)


def test_derived_values_are_filled_in_and_follow_a_new_width():
    c = ModelConfig(task="segmentation", fusion="mango", **KW)
    assert (c.embed, c.flow_hidden, c.flow_qk_dim) == (32, 32, 16)
    wide = c.replace(width=16)
    assert (wide.embed, wide.flow_hidden, wide.flow_qk_dim) == (64, 64, 32)
    assert c.replace(width=16, embed=20).embed == 20
    assert ModelConfig(task="segmentation", fusion="mango", partitions=["mmca"], **KW).layers == (
        ("mmca", 0), ("mmca", 1)) * 4
    assert c == ModelConfig(task="SEGMENTATION", fusion="Mango", **{**KW, "image_size": (32, 32)})


def test_stored_configs_round_trip_with_a_version_and_refuse_a_newer_one():
    c = ModelConfig(task="segmentation", fusion="mango", flow_gamma_mode="token", heads=2, **KW)
    stored = json.loads(json.dumps(c.to_dict()))
    assert stored["config_version"] == CONFIG_VERSION and ModelConfig.from_dict(stored) == c
    with pytest.raises(ValueError, match="newer than this mango_lite"):
        ModelConfig.from_dict({**stored, "config_version": CONFIG_VERSION + 1})
    with pytest.raises(ValueError, match="unknown field"):
        ModelConfig.from_dict({**stored, "colour": "red"})


def test_a_version_1_mango_config_lacking_a_flow_option_meant_the_papers_layout():
    """Every flow option was added with the paper's layout as its default; today's defaults differ, so a missing
    key must be read as what it meant then (a resumed run is not silently rebuilt as another model)."""
    stored = ModelConfig(task="segmentation", fusion="mango", **KW).to_dict()
    v1 = {k: v for k, v in stored.items() if not k.startswith("flow_") or k in ("flow_hidden", "flow_qk_dim")}
    del v1["config_version"]
    old = ModelConfig.from_dict(v1)
    assert old.flow == FlowConfig.paper(hidden=32, qk_dim=16)
    assert sorted(k.split(":")[0] for k in config_differences(v1, stored)) == [
        "flow_alternate", "flow_conditioner", "flow_nll_to_encoders", "flow_positions"]
    assert ModelConfig.from_dict({**v1, "fusion": "concat"}).encoder == "conv"


def test_configs_differ_only_in_what_their_fusion_reads():
    mango = ModelConfig(task="segmentation", fusion="mango", **KW)
    concat = mango.replace(fusion="concat", flow_hidden=None, flow_qk_dim=None)
    assert config_differences(concat.to_dict(), concat.replace(flow_gamma_rate=10.0).to_dict()) == []
    assert config_differences(mango.to_dict(), mango.replace(flow_gamma_rate=10.0).to_dict()) == [
        "flow_gamma_rate: 1.0 -> 10.0"]
    assert FUSION_KEYS["mango"] >= {k for k in mango.to_dict() if k.startswith("flow_")}


def test_every_committed_run_configuration_is_read_and_compares_equal_to_itself():
    """The committed results were written by older versions: each stored configuration must parse, keep every
    stored value, and compare equal to the configuration it parses to (so --resume keeps those runs)."""
    paths = sorted(ROOT.glob("results/**/metrics.json"))
    configs = [json.loads(p.read_text())["spec"]["model_config"] for p in paths
               if (json.loads(p.read_text()).get("spec") or {}).get("model_config")]
    assert len(configs) >= 50
    for stored in configs:
        c = ModelConfig.from_dict(stored)
        again = json.loads(json.dumps(c.to_dict()))
        assert {k: again[k] for k in stored} == stored
        assert config_differences(stored, again) == []


def test_a_rebuilt_model_has_the_weights_of_the_one_it_was_stored_from(tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig(task="segmentation", fusion="mango", flow_self_logit=True, **KW))
    torch.save({"config": model.config.to_dict(), "model": model.state_dict()}, tmp_path / "m.pt")
    saved = torch.load(tmp_path / "m.pt")
    rebuilt = build_model(ModelConfig.from_dict(saved["config"]))
    rebuilt.load_state_dict(saved["model"])
    x = (torch.randn(2, 3, 32, 32), torch.randn(2, 1, 32, 32))
    model.eval(), rebuilt.eval()
    assert torch.equal(model(*x).pred, rebuilt(*x).pred)


def test_the_readmes_api_in_ten_lines_runs():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## The API in ten lines")
    code = text[text.index("```python", start) + len("```python"):text.index("```\n", text.index("```python", start) + 9)]
    assert "FlowConfig" in code and "ModelConfig" in code
    exec(compile(code, "README.md", "exec"), {})
