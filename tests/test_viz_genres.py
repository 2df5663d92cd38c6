"""mango_lite.viz.genres: per-genre / per-cue-group scores against scikit-learn, the cue readers
against hand-computed lookup tables and the generator's design, per-genre reliance against
modality_contribution, whole-split predictions against a direct forward pass, figures (smoke)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, roc_auc_score

from mango_lite.datasets.constants import MMIMDB_GENRES
from mango_lite.datasets.synth.mmimdb import GENRE_CUES, sample_cues, sample_genre_sets
from mango_lite.errors import DataError
from mango_lite.metrics import multilabel_f1
from mango_lite.models import ModelConfig, build_model, modality_contribution
from mango_lite.viz import genres as gx

K = len(MMIMDB_GENRES)


def _random_preds(n: int = 120, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    y = (rng.random((n, K)) < 0.15).astype(np.float32)
    y[:, 5] = 0  # a genre with no positive: its F1 must be NaN, not 0
    p = {"a": rng.random((n, K)).astype(np.float32),
         "b": np.clip(y * 0.7 + rng.random((n, K)) * 0.4, 0, 1).astype(np.float32)}
    return y, p


def test_groups_follow_genre_cues() -> None:
    g = gx.genres_by_cue()
    assert {k: len(v) for k, v in g.items()} == {"image": 6, "text": 6, "both": 9, "synergy": 2}
    assert g["synergy"] == ["Thriller", "Mystery"]
    assert sorted(gx.genre_order()) == sorted(MMIMDB_GENRES)
    with pytest.raises(ValueError, match="Drama"):
        gx.genres_by_cue({**GENRE_CUES, "Drama": "smell"})


def test_per_genre_f1_matches_sklearn_and_blanks_empty_genres() -> None:
    y, p = _random_preds()
    table, support = gx.per_genre_f1(y, p)
    for name, prob in p.items():
        ref = 100 * f1_score(y, prob > 0.5, average=None, zero_division=0)
        got = table.loc[name].to_numpy()
        assert np.isnan(got[5]) and support.iloc[5] == 0
        mask = np.arange(K) != 5
        np.testing.assert_allclose(got[mask], ref[mask], atol=1e-9)
    assert (support.to_numpy() == y.sum(0)).all()


def test_cue_group_f1_micro_and_macro() -> None:
    y, p = _random_preds(seed=1)
    micro = gx.cue_group_f1(y, p, average="micro")
    macro = gx.cue_group_f1(y, p, average="macro")
    table, _ = gx.per_genre_f1(y, p)
    for grp, names in gx.genres_by_cue().items():
        idx = [MMIMDB_GENRES.index(g) for g in names]
        for name, prob in p.items():
            ref = 100 * f1_score(y[:, idx], prob[:, idx] > 0.5, average="micro", zero_division=0)
            assert micro.loc[name, grp] == pytest.approx(ref, abs=1e-9)
            assert macro.loc[name, grp] == pytest.approx(np.nanmean(table.loc[name, names].to_numpy()), abs=1e-9)
    with pytest.raises(ValueError, match="average"):
        gx.cue_group_f1(y, p, average="weighted")


def test_per_genre_auc_matches_sklearn_with_ties() -> None:
    y, p = _random_preds(seed=2)
    p["tied"] = np.round(p["b"], 1)  # many ties: mid-ranks must match sklearn
    y[:, 7] = 1  # no negative: undefined
    auc = gx.per_genre_auc(y, p)
    for name, prob in p.items():
        for k in range(K):
            if k in (5, 7):
                assert np.isnan(auc.loc[name].iloc[k])
            else:
                assert auc.loc[name].iloc[k] == pytest.approx(100 * roc_auc_score(y[:, k], prob[:, k]), abs=1e-9)
    g = gx.group_mean(auc)
    names = gx.genres_by_cue()["text"]
    assert g.loc["b", "text"] == pytest.approx(np.nanmean(auc.loc["b", names].to_numpy()))
    with pytest.raises(ValueError, match="shape"):
        gx.per_genre_auc(y, {"bad": p["a"][:, :3]})


def test_bootstrap_f1_resamples_are_real_resamples() -> None:
    y, p = _random_preds(n=50, seed=3)
    boot = gx.bootstrap_f1(y, p, n_boot=4, seed=7)
    # rebuild the same resamples and score them with the library metric on repeated rows
    w = np.random.default_rng(7).multinomial(50, np.full(50, 1 / 50), size=4)
    for b in range(4):
        rows = np.repeat(np.arange(50), w[b])
        for name, prob in p.items():
            ref = multilabel_f1(y[rows], prob[rows])
            assert boot[name][b, 0] == pytest.approx(ref["micro"], abs=1e-9)
            assert boot[name][b, 1] == pytest.approx(ref["macro"], abs=1e-9)
    t = gx.bootstrap_table(gx.bootstrap_f1(y, {**p, "same": p["a"]}, n_boot=200), reference="a")
    assert t.loc["same", "P(a ahead, micro)"] == 0.0 and t.loc["same", "a - model, micro CI"] == "[+0.0, +0.0]"
    assert t.loc["b", "P(a ahead, micro)"] < 0.05  # b is built to be much better than random a
    with pytest.raises(ValueError, match="reference"):
        gx.bootstrap_table(boot, reference="nope")


def test_cue_reader_lookup_by_hand() -> None:
    # one genre column matters; 6 training films: poster bit / plot bit / label
    z = np.zeros((6, K), bool)
    tr = {"labels": z.copy(), "image_cue": z.copy(), "text_cue": z.copy()}
    tr["image_cue"][:, 0] = [1, 1, 1, 0, 0, 0]
    tr["text_cue"][:, 0] = [1, 0, 0, 1, 0, 0]
    tr["labels"][:, 0] = [1, 1, 0, 1, 0, 0]
    te = {"labels": np.zeros((2, K), bool), "image_cue": np.zeros((2, K), bool), "text_cue": np.zeros((2, K), bool)}
    te["image_cue"][:, 0] = [1, 0]
    te["text_cue"][:, 0] = [1, 1]
    r = gx.cue_reader(tr, te, prior=0.0)  # no smoothing: plain frequencies
    assert r["cue reader: poster"][:, 0].tolist() == pytest.approx([2 / 3, 1 / 3])
    assert r["cue reader: plot"][:, 0].tolist() == pytest.approx([1.0, 1.0])
    assert r["cue reader: both"][:, 0].tolist() == pytest.approx([1.0, 1.0])  # patterns (1,1) and (0,1)
    # smoothing pulls towards the prior (3.5 / 7) with the given weight; an unseen pattern gets the prior
    s = gx.cue_reader(tr, te, prior=1.0)
    assert s["cue reader: poster"][0, 0] == pytest.approx((2 + 0.5) / (3 + 1))
    # genre 1 is never on: prior 0.5 / 7, pattern (0, 0) seen in all 6 films -> (0 + 1 * prior) / (6 + 1)
    assert s["cue reader: both"][:, 1] == pytest.approx([0.5 / 49, 0.5 / 49])
    # an unseen pattern falls back to the prior, also without smoothing
    te2 = {k: v.copy() for k, v in te.items()}
    te2["image_cue"][:, 2], te2["text_cue"][:, 2] = True, True  # genre 2: cues never seen in training
    u = gx.cue_reader(tr, te2, prior=0.0)
    assert u["cue reader: both"][:, 2] == pytest.approx([0.5 / 7, 0.5 / 7])


def test_cue_reader_recovers_the_generator_design() -> None:
    rng = np.random.default_rng(0)
    y = sample_genre_sets(4000, rng)
    img, txt = sample_cues(y, rng)
    tr = {"labels": y[:3000], "image_cue": img[:3000], "text_cue": txt[:3000]}
    te = {"labels": y[3000:], "image_cue": img[3000:], "text_cue": txt[3000:]}
    grp = gx.cue_group_f1(te["labels"].astype(np.float32), gx.cue_reader(tr, te))
    assert grp.loc["cue reader: plot", "image"] == 0 and grp.loc["cue reader: poster", "text"] == 0
    assert grp.loc["cue reader: poster", "synergy"] == 0 and grp.loc["cue reader: plot", "synergy"] == 0
    # XOR learned from the lookup table; the 3 % flip costs precision on these rare genres (~84 here)
    assert grp.loc["cue reader: both", "synergy"] > 75
    assert grp.loc["cue reader: both", "both"] > grp.loc["cue reader: poster", "both"]


def test_read_cues(tmp_path: Path) -> None:
    ids = np.asarray(["0000001", "0000002", "0000003"])
    lab = np.eye(3, K, dtype=bool)
    np.savez(tmp_path / "synthetic_cues.npz", ids=ids, labels=lab, image_cue=lab, text_cue=~lab)
    got = gx.read_cues(tmp_path, ["0000003", "0000001"])
    assert got["labels"].tolist() == lab[[2, 0]].tolist() and got["text_cue"].tolist() == (~lab)[[2, 0]].tolist()
    with pytest.raises(DataError, match="ids not found"):
        gx.read_cues(tmp_path, ["9999999"])
    with pytest.raises(DataError, match="synthetic_cues.npz"):
        gx.read_cues(tmp_path / "nowhere", ["0000001"])


def _tiny(fusion: str) -> torch.nn.Module:
    return build_model(ModelConfig(task="genre", fusion=fusion,
                                   in_channels=(3, 3), num_outputs=K, image_size=16, width=8, blocks=1,
                       scales=1, max_text_len=16, vocab_size=256)).eval()


def _batch(n: int = 5) -> tuple[torch.Tensor, list[str]]:
    g = torch.Generator().manual_seed(0)
    words = ["a raven", "the lighthouse", "band concert", "a documentary", "grief and love", "ghost town"]
    return torch.randn(n, 3, 16, 16, generator=g), [words[i % len(words)] + " story" for i in range(n)]


def test_genre_reliance_matches_modality_contribution() -> None:
    xa, xb = _batch()
    for fusion in ("concat", "crossattn"):
        m = _tiny(fusion)
        rel = gx.genre_reliance(m, xa, xb)
        ref = modality_contribution(m, xa, xb, method="ablation")
        assert rel.shape == (2, K)
        assert rel[0].mean() == pytest.approx(ref["raw_a"], rel=1e-5)
        assert rel[1].mean() == pytest.approx(ref["raw_b"], rel=1e-5)
    only_img = gx.genre_reliance(_tiny("a"), xa, xb)
    assert np.all(only_img[1] == 0) and only_img[0].sum() > 0


def test_reliance_by_group_by_hand() -> None:
    r = np.zeros((2, K))
    r[0, MMIMDB_GENRES.index("Horror")] = 3.0
    r[1, MMIMDB_GENRES.index("Horror")] = 1.0
    r[1, MMIMDB_GENRES.index("Biography")] = 2.0
    t = gx.reliance_by_group({"m": r})
    assert t.loc["m", "image"] == pytest.approx(0.75) and t.loc["m", "text"] == 0.0
    assert np.isnan(t.loc["m", "synergy"])


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, n: int) -> None:
        self.xa, self.xb = _batch(n)
        self.y = (torch.rand(n, K, generator=torch.Generator().manual_seed(1)) < 0.2).float()

    def __len__(self) -> int:
        return len(self.xb)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.xa[i], "plot": self.xb[i], "labels": self.y[i], "id": f"{i:07d}"}


def test_predict_split_equals_one_forward_and_restores_mode() -> None:
    ds = _ListDataset(7)
    m = _tiny("concat").train()
    pred = gx.predict_split({"concat": m}, ds, batch_size=3)  # 3 batches, the last one short
    assert m.training, "the model's mode must be restored"
    m.eval()
    with torch.no_grad():
        ref = torch.sigmoid(m(ds.xa, ds.xb).pred).numpy()
    np.testing.assert_allclose(pred.probs["concat"], ref, atol=1e-5)
    assert pred.ids == [f"{i:07d}" for i in range(7)] and pred.texts == ds.xb and len(pred) == 7
    assert np.array_equal(pred.labels, ds.y.numpy())
    with pytest.raises(DataError, match="empty"):
        gx.predict_split({"concat": m}, _ListDataset(0))


def test_figures_and_browser_smoke() -> None:
    import matplotlib.pyplot as plt

    y, p = _random_preds(n=40)
    table, support = gx.per_genre_f1(y, p)
    fig = gx.plot_genre_heatmap(table, support, title="t")
    assert fig.axes and "generated stand-in" in fig.axes[0].get_title()
    plt.close(fig)
    imgs = torch.zeros(3, 3, 16, 16)
    fig = gx.prediction_figure(imgs, y[:3], {k: v[:3] for k, v in p.items()}, plots=["a", "b", "c"])
    assert len(fig.axes) == 6
    plt.close(fig)
    ds = _ListDataset(4)
    pred = gx.GenrePredictions([f"{i:07d}" for i in range(4)], ds.y.numpy(), {"x": np.full((4, K), 0.7, np.float32)}, ds.xb)
    box = gx.prediction_browser(ds, pred)
    assert "per-sample F1" in box.children[1].value
    with pytest.raises(ValueError, match="predictions"):
        gx.prediction_browser(_ListDataset(3), pred)
    plt.close("all")
