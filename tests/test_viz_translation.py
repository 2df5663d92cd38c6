"""Tests of mango_lite.viz.translation (helpers of notebook 06)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from mango_lite import paper_tables as P
from mango_lite.errors import MangoLiteError
from mango_lite.models import ModelConfig, build_model, modality_contribution
from mango_lite.viz.translation import (
    ablation_grid,
    ablation_maps,
    attention_row_maps,
    contrast_stretch,
    median_baseline,
    per_sample_mae,
    table2_comparison,
    translation_browser,
    translation_panel,
)


def _model(fusion: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    m = build_model(ModelConfig(task="translation", fusion=fusion, in_channels=(1, 3), num_outputs=3, image_size=16, width=8,
                    blocks=1, scales=1))
    return m.eval()


def _batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(3, 1, 16, 16, generator=g) * 2 - 1, torch.rand(3, 3, 16, 16, generator=g) * 2 - 1


@pytest.mark.parametrize("fusion", ["mango", "concat", "crossattn"])
def test_ablation_maps_mean_matches_modality_contribution(fusion: str) -> None:
    model, (a, b) = _model(fusion), _batch()
    maps = ablation_maps(model, a, b)
    assert maps.shape == (3, 2, 16, 16) and maps.dtype == torch.float32
    ref = modality_contribution(model, a, b, method="ablation")
    # independent route: the library's scalar measure is the spatial mean of our per-pixel maps
    assert maps[:, 0].mean().item() == pytest.approx(ref["raw_a"], rel=1e-4, abs=1e-7)
    assert maps[:, 1].mean().item() == pytest.approx(ref["raw_b"], rel=1e-4, abs=1e-7)
    assert maps[:, 0].mean() > 0 and maps[:, 1].mean() > 0  # a fused model reads both inputs


def test_ablation_maps_unimodal_has_zero_map_for_the_unread_modality() -> None:
    a, b = _batch()
    maps_a = ablation_maps(_model("a"), a, b)
    assert maps_a[:, 1].abs().max().item() == 0.0 and maps_a[:, 0].max().item() > 0
    maps_b = ablation_maps(_model("b"), a, b)
    assert maps_b[:, 0].abs().max().item() == 0.0 and maps_b[:, 1].max().item() > 0


def test_ablation_maps_restores_training_mode_and_rejects_bad_input() -> None:
    model = _model("concat").train()
    a, b = _batch()
    ablation_maps(model, a, b)
    assert model.training
    with pytest.raises(MangoLiteError, match="equal B"):
        ablation_maps(model, a, b[:2])
    seg = build_model(ModelConfig(task="segmentation", fusion="concat",
                                  in_channels=(3, 1), num_outputs=4, image_size=16, width=8, blocks=1,
                      scales=1))
    with pytest.raises(MangoLiteError, match="translation"):
        ablation_maps(seg, b, a)


def test_per_sample_mae_against_numpy() -> None:
    rng = np.random.default_rng(0)
    p, t = rng.uniform(-1, 1, (4, 3, 5, 6)), rng.uniform(-1, 1, (4, 3, 5, 6))
    got = per_sample_mae(torch.tensor(p), torch.tensor(t)).numpy()
    np.testing.assert_allclose(got, np.abs(p - t).reshape(4, -1).mean(1), rtol=1e-12)
    with pytest.raises(MangoLiteError, match="shapes differ"):
        per_sample_mae(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1, 4, 4))


def test_table2_comparison_rows_and_labels() -> None:
    ours = {
        "shade_texture_to_rgb": {"mango": {"mae_x10": 2.0, "rmse_x10": 2.5, "fid_proxy": 0.4, "kid_x100_proxy": 1.5}},
        "rgb_edge_to_depth": {"mango": {"mae_x10": 1.0, "rmse_x10": 1.7}, "rgb": {"mae_x10": 1.2, "rmse_x10": 1.9}},
    }
    df = table2_comparison(ours, ["shade_texture_to_rgb", "rgb_edge_to_depth"], size=64)
    n_paper = len(P.TABLE2_TRANSLATION)
    assert len(df) == 2 * n_paper + 3
    rgb = df.xs("Shade+Texture→RGB", level="pair")
    paper_mango = rgb.xs("MANGO", level="method")
    assert paper_mango["value 1"].item() == 39.61 and paper_mango["value 2"].item() == 0.77
    assert "Inception" in paper_mango["metrics"].item() and P.LABEL in paper_mango.index[0]
    ours_mango = rgb.xs("mango", level="method")
    assert ours_mango["value 1"].item() == 0.4 and "PROXY" in ours_mango["metrics"].item()
    assert "64px" in ours_mango.index[0] and "generated stand-in" in ours_mango.index[0]
    depth = df.xs("RGB+Edge→Depth", level="pair")
    assert depth.xs("rgb", level="method")["value 2"].item() == 1.9
    assert depth.xs("TokenFusion (Small)", level="method")["value 1"].item() == 0.16
    with pytest.raises(MangoLiteError):
        table2_comparison(ours, [])


def test_translation_panel_layout_and_errors() -> None:
    t = torch.zeros(3, 8, 8)
    preds = {"m1": torch.full((3, 8, 8), 0.5), "m2": t.clone(), "m3": t.clone()}
    fig = translation_panel({"x": torch.zeros(1, 8, 8), "y": torch.zeros(1, 8, 8)}, t, preds)
    axes = fig.axes
    assert len(axes) == 3 * 3  # 3 rows (inputs+truth, predictions, errors) x max(2 + 1, 3) columns
    assert "MAE 0.500" in axes[3].get_title()  # first prediction, row 2
    plt.close(fig)
    with pytest.raises(MangoLiteError, match="one \\(C, H, W\\)"):
        translation_panel({"x": t}, t[None], preds)


def test_translation_browser_builds_and_draws() -> None:
    model = _model("concat")
    a, b = _batch()
    items = [{"x": a[i], "y": b[i], "t": b[i], "name": f"s{i}"} for i in range(3)]
    w = translation_browser(items, {"concat": model}, "x", "y", "t", title="test")
    slider = w.children[0].children[0]
    assert slider.max == 2
    slider.value = 2  # redraws without error
    plt.close("all")
    with pytest.raises(MangoLiteError, match="empty"):
        translation_browser([], {"concat": model}, "x", "y", "t")


def test_median_baseline_against_numpy() -> None:
    rng = np.random.default_rng(3)
    tr, va = rng.uniform(-1, 1, (7, 2, 4, 5)), rng.uniform(-1, 1, (5, 2, 4, 5))  # odd N: unique median
    got = median_baseline(torch.tensor(tr), torch.tensor(va))
    med = np.median(tr, axis=0)
    assert got["mae"] == pytest.approx(np.abs(va - med).mean(), rel=1e-12)
    assert got["rmse"] == pytest.approx(np.sqrt(((va - med) ** 2).mean()), rel=1e-12)
    assert got["mae_x10"] == pytest.approx(10 * got["mae"])
    # the median is the L1-best constant: shifting it can only make the training MAE worse
    base = np.abs(tr - med).mean()
    assert np.abs(tr - (med + 0.05)).mean() >= base and np.abs(tr - (med - 0.05)).mean() >= base
    with pytest.raises(MangoLiteError, match="equal image shape"):
        median_baseline(torch.zeros(3, 1, 4, 4), torch.zeros(3, 3, 4, 4))


def test_ablation_grid_layout() -> None:
    maps = {"mango": torch.rand(2, 8, 8), "concat": torch.rand(2, 8, 8)}
    fig = ablation_grid(maps, ("shade", "texture"), image=torch.zeros(3, 8, 8))
    imgs = [ax for ax in fig.axes if ax.images]
    assert len(imgs) >= 2 * 4  # 2 rows x (image, A, B, difference), plus colour bars
    plt.close(fig)
    with pytest.raises(MangoLiteError, match="\\(2, H, W\\)"):
        ablation_grid({"m": torch.rand(3, 8, 8)}, ("a", "b"))


def test_attention_row_maps_against_hand_built_record() -> None:
    from mango_lite.models import AttentionRecord, cross_modal_share

    t, gamma = 4, 0.3
    s = torch.triu(torch.rand(t, t, generator=torch.Generator().manual_seed(0)) + 0.1)
    s = s / s.sum(1, keepdim=True)
    att = (torch.eye(t) + gamma * s)[None, None]  # (B=1, heads=1, T, T)
    index = torch.tensor([[0, 2, 4, 6], [1, 3, 5, 7]])  # IMCA-like: X2 = odd positions of both modalities
    rec = AttentionRecord("x", "imca", index, att)
    out = attention_row_maps(rec, row=1, grid=(2, 2))
    maps = out["maps"]
    # X2 slot j sits at position index[1, j]: 1 -> A(0, 1), 3 -> A(1, 1), 5 -> B(0, 1), 7 -> B(1, 1)
    expect = torch.full((2, 2, 2), float("nan"))
    expect[0, 0, 1], expect[0, 1, 1], expect[1, 0, 1], expect[1, 1, 1] = s[1]
    torch.testing.assert_close(maps, expect, equal_nan=True)
    assert out["query"] == (0, 1, 1)  # slot 1 is position 3: modality A, row 1, column 1
    assert out["cross"] == pytest.approx(float(s[1, 2] + s[1, 3]), rel=1e-6)
    # averaged over rows, the cross mass is what cross_modal_share reports
    mean_cross = np.mean([attention_row_maps(rec, r, (2, 2))["cross"] for r in range(t)])
    assert mean_cross == pytest.approx(cross_modal_share(rec), rel=1e-6)
    with pytest.raises(MangoLiteError, match="grid"):
        attention_row_maps(rec, 0, (3, 2))
    with pytest.raises(MangoLiteError, match="MMCA/IMCA"):
        attention_row_maps(AttentionRecord("y", "lica", None, att), 0, (2, 2))


def test_contrast_stretch_maps_reference_range_to_unit_interval() -> None:
    ref = torch.tensor([[[0.10, 0.20], [0.30, 0.50]]])  # (1, 2, 2), range [0.1, 0.5]
    pred = torch.tensor([[[0.30, 0.00], [0.50, 0.90]]])
    out, (lo, hi) = contrast_stretch({"p": pred}, ref)
    assert (lo, hi) == pytest.approx((0.1, 0.5))
    torch.testing.assert_close(out["reference"], torch.tensor([[[-1.0, -0.5], [0.0, 1.0]]]))
    # same affine map for the prediction, clipped outside the reference's range
    torch.testing.assert_close(out["p"], torch.tensor([[[0.0, -1.0], [1.0, 1.0]]]))
    same, _ = contrast_stretch({"p": pred}, torch.full((1, 2, 2), 0.3))
    assert torch.equal(same["p"], pred)  # constant reference: nothing to stretch


def test_translation_panel_stretch_titles_range() -> None:
    t = torch.full((1, 8, 8), -0.4)
    t[0, :4] = -0.2
    fig = translation_panel({"x": torch.zeros(1, 8, 8)}, t, {"m": t.clone(), "n": t + 0.1}, stretch=True)
    assert "[-0.40, -0.20]" in fig.axes[1].get_title()
    assert "MAE 0.100" in fig.axes[3].get_title()  # errors stay on the [-1, 1] scale
    plt.close(fig)
