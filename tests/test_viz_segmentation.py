"""mango_lite.viz.segmentation: whole-split predictions against a direct forward pass, per-image accuracy
against scikit-learn, ICA query maps / shares / gamma against hand-built attention matrices, labels,
figures and the browser (smoke)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score

from mango_lite.errors import DataError, MangoLiteError
from mango_lite.models import AttentionRecord, ModelConfig, attention_maps, build_model, cross_modal_share, modality_contribution
from mango_lite.viz import segmentation as tx

K = 5


def _items(n: int = 7, size: int = 32, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        lab = torch.randint(0, K, (size, size), generator=g)
        lab[0, :3] = 255
        out.append({"rgb": torch.randn(3, size, size, generator=g), "depth": torch.randn(1, size, size, generator=g),
                    "label": lab, "name": f"{i:06d}"})
    return out


def _model(fusion: str = "mango", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(ModelConfig(task="segmentation", fusion=fusion,
                                   in_channels=(3, 1), num_outputs=K, image_size=32, width=8, blocks=1,
                       scales=2)).eval()


def test_predict_segmentation_matches_direct_forward_and_keeps_order() -> None:
    items = _items()
    # the function is model-agnostic: cheap models keep the test fast (MANGO is exercised below)
    models = {"concat": _model("concat"), "rgb": _model("a", 1)}
    models["rgb"].train()  # must be evaluated in eval mode and restored
    p = tx.predict_segmentation(models, items, batch_size=3)
    assert len(p) == 7 and p.names == [it["name"] for it in items]
    assert p.label.dtype == torch.uint8 and tuple(p.rgb.shape) == (7, 3, 32, 32) and tuple(p.depth.shape) == (7, 1, 32, 32)
    assert torch.equal(p.label.long(), torch.stack([it["label"] for it in items]))
    assert models["rgb"].training and set(p.seconds) == {"concat", "rgb"} and all(v > 0 for v in p.seconds.values())
    models["rgb"].eval()
    with torch.no_grad():
        for name, m in models.items():
            direct = m(torch.stack([it["rgb"] for it in items]), torch.stack([it["depth"] for it in items])).pred.argmax(1)
            assert torch.equal(p.preds[name].long(), direct), name
    q = tx.predict_segmentation(models, items, batch_size=4, limit=2)
    assert len(q) == 2 and torch.equal(q.preds["concat"], p.preds["concat"][:2])
    with pytest.raises(DataError, match="nothing to predict"):
        tx.predict_segmentation(models, [], batch_size=2)


def test_per_image_pixel_acc_against_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, K, (4, 6, 5))
    y[1, :2] = 255
    y[2] = 255  # an image with no valid pixel -> NaN
    y[3, 0, 0] = 9  # out of range: ignored like void
    p = np.where(rng.random(y.shape) < 0.6, y, rng.integers(0, K, y.shape)) % K
    acc = tx.per_image_pixel_acc(torch.from_numpy(p), torch.from_numpy(y), K)
    for i in (0, 1, 3):
        keep = (y[i] != 255) & (y[i] < K)
        assert acc[i] == pytest.approx(100 * accuracy_score(y[i][keep], p[i][keep]))
    assert np.isnan(acc[2])
    with pytest.raises(ValueError, match="same shape"):
        tx.per_image_pixel_acc(p[:, :3], y, K)


def _record(partition: str, index: torch.Tensor | None, s: torch.Tensor, gamma: float, name: str = "x") -> AttentionRecord:
    t = s.shape[-1]
    return AttentionRecord(name, partition, index, (torch.eye(t, dtype=torch.float64) + gamma * s)[None, None])


def _upper_stochastic(t: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(t, t, generator=g, dtype=torch.float64).triu() + 0.01 * torch.eye(t, dtype=torch.float64)
    return s / s.sum(-1, keepdim=True)


def test_query_map_places_the_row_of_s_at_the_x2_positions() -> None:
    t, h, w = 4, 2, 2
    # X1 = tokens 0,2 of A and 4,6 of B; X2 = A's 1,3 then B's 5,7 (an IMCA-like split)
    index = torch.tensor([[0, 2, 4, 6], [1, 3, 5, 7]])
    s = _upper_stochastic(t)
    rec = _record("imca", index, s, gamma=0.3)
    maps, pos = tx.ica_query_map(rec, (h, w))
    assert pos == 1 and maps.shape == (2, h, w)
    flat = maps.reshape(-1)
    assert np.isnan(flat[[0, 2, 4, 6]]).all()
    np.testing.assert_allclose(flat[[1, 3, 5, 7]], s[0].numpy(), atol=1e-12)
    maps2, pos2 = tx.ica_query_map(rec, (h, w), position=5)  # row 2 of S: only tokens 5 and 7 (j >= i)
    assert pos2 == 5
    np.testing.assert_allclose(maps2.reshape(-1)[[1, 3, 5, 7]], s[2].numpy(), atol=1e-12)
    with pytest.raises(MangoLiteError, match="not an X2"):
        tx.ica_query_map(rec, (h, w), position=2)
    with pytest.raises(MangoLiteError, match="grid"):
        tx.ica_query_map(rec, (4, 2))
    with pytest.raises(MangoLiteError, match="LICA|MMCA and IMCA"):
        tx.ica_query_map(_record("lica", None, s, 0.3), (h, w))


def test_uniform_share_and_gamma_against_hand_values() -> None:
    t = 4
    index = torch.tensor([[0, 2, 4, 6], [1, 3, 5, 7]])  # X2 = (A, A, B, B)
    s = _upper_stochastic(t, 1)
    rec = _record("imca", index, s, gamma=-0.4)
    # content-free rows: row 0 spreads 1/4 on each of 4 tokens (2 of B), row 1 1/3 on 3 (2 of B),
    # row 2 (a B token) 1/2 on 2 (none of A), row 3 only itself
    expected = (2 / 4 + 2 / 3 + 0 + 0) / 4
    assert tx.uniform_cross_modal_share(rec) == pytest.approx(expected)
    mmca = _record("mmca", torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]]), s, 0.2)
    assert tx.uniform_cross_modal_share(mmca) == 0.0
    assert tx.uniform_cross_modal_share(_record("lica", None, s, 0.2)) is None
    table = tx.ica_summary([rec, mmca])
    assert table["gamma"].tolist() == pytest.approx([-0.4, 0.2])
    assert table["cross_modal_share"][0] == pytest.approx(cross_modal_share(rec))
    assert table["uniform_share"][0] == pytest.approx(expected)


def test_labels_and_figures_on_a_real_mango_model() -> None:
    items = _items(2)
    m = _model("mango")
    rgb = torch.stack([it["rgb"] for it in items])
    depth = torch.stack([it["depth"] for it in items])
    recs = attention_maps(m, rgb, depth)
    labels = tx.ica_record_label(recs)
    assert len(labels) == len(recs) == 16 and labels[0] == "s0 b0 MMCA#0" and labels[2] == "s0 b0 IMCA#0"
    assert labels[7] == "s0 b0 LICA#1" and labels[8] == "s1 b0 MMCA#0"
    assert tx.ica_record_label([AttentionRecord("other.name", "a<-b", None, torch.zeros(1, 1, 2, 2))]) == ["other.name"]
    grid = tuple(s // 2 for s in m.fusion.size)
    pick = [(lab, r) for lab, r in zip(labels, recs) if lab in ("s0 b0 MMCA#0", "s0 b0 IMCA#0")]
    fig = tx.plot_query_attention(pick, grid, rgb[0], depth[0])
    assert len(fig.axes) >= 4
    shares = {"ablation": {"mango": modality_contribution(m, rgb, depth)}}
    assert len(tx.plot_contributions(shares).axes) == 1
    p = tx.predict_segmentation({"mango": m}, items, batch_size=2)
    box = tx.segmentation_browser(p, K, [f"c{i}" for i in range(K)])
    slider = box.children[0]
    assert slider.max == 1
    slider.value = 1  # redraw must work
    assert "000001" in box.children[1].value


def test_lower_triangular_records_query_the_last_slot_and_share_the_other_way() -> None:
    t, h, w = 4, 2, 2
    index = torch.tensor([[0, 2, 4, 6], [1, 3, 5, 7]])  # X2 = (A, A, B, B)
    s = _upper_stochastic(t, 2).flip(-1).flip(-2)  # lower triangular, rows sum to 1
    assert torch.equal(s, s.tril())
    rec = AttentionRecord("x", "imca", index, (torch.eye(t, dtype=torch.float64) + 0.3 * s)[None, None], "lower")
    assert tx.full_row(rec) == t - 1
    maps, pos = tx.ica_query_map(rec, (h, w))
    assert pos == 7  # the last X2 token sees every X2 token
    np.testing.assert_allclose(maps.reshape(-1)[[1, 3, 5, 7]], s[-1].numpy(), atol=1e-12)
    # content-free rows of a lower mask: row 0 (A) only itself, row 1 (A) 1/2 on A, row 2 (B) 2/3 on A,
    # row 3 (B) 2/4 on A
    assert tx.uniform_cross_modal_share(rec) == pytest.approx((0 + 0 + 2 / 3 + 2 / 4) / 4)


def test_fusion_case_iou_averages_each_case_over_classes_every_model_scores() -> None:
    import pandas as pd

    iou = pd.DataFrame({"wall": [90.0, 80.0], "cabinet": [10.0, 30.0], "box": [20.0, np.nan],
                        "picture": [40.0, 0.0], "window": [60.0, 20.0]}, index=["rgb", "depth"])
    cases = tx.fusion_case_iou(iou)
    camo, flush = tx.FUSION_CASE_LABELS["rgb_ambiguous"], tx.FUSION_CASE_LABELS["depth_ambiguous"]
    assert list(cases.columns) == [camo, flush]
    # box is NaN for one model, so only cabinet counts for the camouflage case
    assert cases.attrs["classes"] == {camo: ("cabinet",), flush: ("picture", "window")}
    assert cases.loc["rgb", camo] == 10.0 and cases.loc["depth", camo] == 30.0
    assert cases.loc["rgb", flush] == 50.0 and cases.loc["depth", flush] == 10.0
    none = tx.fusion_case_iou(iou[["wall"]])
    assert none.isna().all().all() and none.attrs["classes"][camo] == ()
