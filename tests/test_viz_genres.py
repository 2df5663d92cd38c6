"""mango_lite.viz.genres: per-genre / per-cue-group scores against scikit-learn, the cue readers
against hand-computed lookup tables and the generator's design, per-genre reliance against
modality_contribution, whole-split predictions against a direct forward pass, figures (smoke)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
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


# ------------------------------------------------------------------------------- discussion
MODELS7 = ("mango", "concat", "tokenfusion", "crossattn", "image", "text")
GROUPS = ("image", "text", "both", "synergy")


def _frame(rows: dict[str, tuple[float, ...]], columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(columns))


def _boot(centres: dict[str, tuple[float, float, float, float]], n: int = 4000) -> dict[str, np.ndarray]:
    """Resamples whose paired intervals mango - model are about [lo, hi] (micro lo, hi, macro lo, hi)."""
    rng = np.random.default_rng(0)
    mango = 50 + rng.normal(0, 2, (n, 2))
    out = {"mango": mango}
    for name, (a, b, c, d) in centres.items():
        z = rng.standard_normal((n, 2))
        diff = np.stack([(a + b) / 2 + z[:, 0] * (b - a) / 3.92, (c + d) / 2 + z[:, 1] * (d - c) / 3.92], axis=1)
        out[name] = mango - diff
    return out


def _cpu_run(**changes: object) -> dict[str, object]:
    """The tables of an earlier committed cpu run of notebook 07 (226 test films, 22 genres present)."""
    table = _frame({"mango": (56.15, 17.89, 1.62, 21.19), "concat": (58.70, 18.93, 0.66, 4.21),
                    "tokenfusion": (53.86, 13.87, 1.00, 6.99), "crossattn": (57.82, 17.16, 1.33, 6.37),
                    "image": (51.84, 12.50, 0.27, 2.22), "text": (48.83, 11.89, 0.42, 2.47)},
                   ("micro F1", "macro F1", "params (M)", "s / epoch"))
    boot = _boot({"concat": (-5.3, 0.3, -3.5, 1.5), "tokenfusion": (-0.3, 4.9, 1.6, 6.2),
                  "crossattn": (-4.5, 0.9, -1.2, 2.7), "image": (1.0, 7.6, 3.1, 7.4), "text": (3.2, 11.4, 3.7, 8.3)})
    gm = _frame({"mango": (25.3, 7.5, 68.0, 0), "concat": (31.3, 14.5, 69.6, 0), "tokenfusion": (17.9, 7.5, 65.6, 0),
                 "crossattn": (24.7, 11.3, 69.4, 0), "image": (32.9, 0, 61.9, 0), "text": (0, 10.3, 61.1, 0)}, GROUPS)
    ga = _frame({"mango": (76.7, 70.9, 80.2, 60.8), "concat": (68.8, 67.5, 77.7, 62.2),
                 "tokenfusion": (60.8, 63.1, 75.9, 59.6), "crossattn": (67.3, 67.4, 76.3, 61.7),
                 "image": (73.1, 58.9, 69.7, 60.4), "text": (52.5, 73.9, 77.5, 47.7)}, GROUPS)
    readers = _frame({"cue reader: poster": (70.7, 0, 83.6, 0), "cue reader: plot": (0, 64.3, 85.0, 0),
                      "cue reader: both": (70.7, 64.3, 91.0, 74.6)}, GROUPS)
    rg = _frame({"mango": (0.40, 0.32, 0.44, 0.56), "concat": (0.48, 0.36, 0.41, 0.54),
                 "tokenfusion": (0.48, 0.27, 0.38, 0.51), "crossattn": (0.51, 0.41, 0.47, 0.54)}, GROUPS)
    support = pd.Series([0 if g == "Film-Noir" else 10 for g in MMIMDB_GENRES], index=list(MMIMDB_GENRES))
    zeros = {"mango": 14, "concat": 13, "tokenfusion": 16, "crossattn": 13, "image": 18, "text": 15, "cue reader: both": 2}
    present = [g for g in MMIMDB_GENRES if support[g] > 0]
    f1 = {m: [np.nan if support[g] == 0 else (0.0 if present.index(g) < z else 40.0) for g in MMIMDB_GENRES]
          for m, z in zeros.items()}
    auc = {m: [np.nan if support[g] == 0 else (45.0 if present.index(g) < 4 else 70.0) for g in MMIMDB_GENRES]
           for m in zeros}
    args: dict[str, object] = dict(
        table=table, boot=boot, group_f1=gm, group_auc=ga, genre_f1=_frame(f1, tuple(MMIMDB_GENRES)),
        genre_auc=_frame(auc, tuple(MMIMDB_GENRES)), support=support, readers=readers, poster_share=rg,
        ica_share=[0.05, 0.15, 0.25, float("nan")], setting="generated stand-in MM-IMDb, preset cpu, cpu (2 cores)",
        preset="cpu", n_train=540, n_test=226, epochs=12, asserted=True)
    args.update(changes)
    return args


def _discussion(**changes: object) -> str:
    a = _cpu_run(**changes)
    tables = [a.pop(k) for k in ("table", "boot", "group_f1", "group_auc", "genre_f1", "genre_auc", "support", "readers",
                                 "poster_share", "ica_share")]
    return gx.results_discussion(*tables, **a)


def test_discussion_words_follow_the_committed_cpu_numbers() -> None:
    md = _discussion()
    assert md.startswith("**How to read these results** (this run: generated stand-in MM-IMDb, preset cpu")
    assert "226 films, 22 of 23 genres present" in md and "At `quick`" not in md
    for phrase in (
        "**Fusion pays off, and where the design says it should.**",
        "Here every fused model beats both unimodal models on micro and macro F1, and every fused model does so on "
        "the redundant group (asserted)",
        "of its macro-F1 lead over each unimodal model excludes 0 (asserted)",
        "MANGO ranks second on macro F1 and third on micro F1 here, and the test set cannot separate it from concat.**",
        "MANGO trails concat on macro F1 by 1.0 points and trails it on micro F1 by 2.6 points",
        "against concat both contain 0; against TokenFusion the macro-F1 interval excludes 0 (MANGO ahead) and the "
        "micro-F1 one does not; against cross-attention both contain 0",
        "68.2 macro F1 for MANGO vs 51.0 for late fusion, as printed", "is not reproduced",
        "**Absolute F1 is low, and macro F1 especially:** the best micro F1 is 58.7, the best macro F1 18.9.",
        "Each model leaves 13 to 18 (half or more) of the 22 genres present unpredicted",
        "540 training films, 12 epochs", "Even the two-bit cue reader leaves 2 of them unpredicted",
        "each model ranks 18 of the 22 genres it can be computed for above chance", "rank* most genres above chance",
        "**Fusion mostly does not match the specialist.**",
        "on the text-only group the text model ranks better than every fused model; on the image-only group the "
        "image model ranks better than 3 of 4 fused models (all but MANGO)",
        "better than the *blind* unimodal model (asserted, for F1 too), and better than the *seeing* one in 1 of 8",
        "**The synergy genres are not learned by anyone.**", "gets F1 74.6 on them", "every model has F1 = 0 there",
        "(concat, 62.2) is within 1.8 points of the image model's (60.4)", "than the `cpu` preset gives",
        "**MANGO costs more.**", "more parameters than every fused baseline (2.5x concat)", "takes 5.0x concat's time",
        "This agrees with the paper's own remark (Table 8)",
        "In its 3 IMCA layers, on average 15 % of", "(per layer 5 % to 25 %)",
        "Every fused model leans on the poster more for image-only genres than for text-only ones (asserted).",
        "The poster share is 0.40 to 0.51 on image-only genres and 0.27 to 0.41 on text-only ones, far from",
    ):
        assert phrase in md, phrase


def test_discussion_quick_run_says_so_and_claims_no_check() -> None:
    md = _discussion(preset="quick", asserted=False, setting="stand-in, preset quick", n_train=58, epochs=2)
    assert "At `quick` the models train for 2 epochs on 58 films and barely learn" in md
    assert md.count("(asserted)") == 1 and "triangular by construction (asserted)" in md  # the one check that ran


def test_discussion_wording_turns_with_the_numbers() -> None:
    a = _cpu_run()
    table, gm, ga, rg = a["table"].copy(), a["group_f1"].copy(), a["group_auc"].copy(), a["poster_share"].copy()
    table.loc["mango", ["micro F1", "macro F1"]] = (70.0, 40.0)  # first on both
    table.loc["concat", "micro F1"] = 40.0  # below the unimodal models
    table.loc["mango", "params (M)"] = 0.5  # lighter than every baseline
    gm.loc["concat", "synergy"], gm.loc["text", "synergy"] = 30.0, 10.0
    ga.loc["mango", "text"], ga.loc["concat", "text"] = 80.0, 75.0
    gm.loc["tokenfusion", "image"] = 0.0  # the blind text model's F1 there is 0 too: "(asserted, for F1 too)" is dropped
    ga.loc["crossattn", "synergy"] = 75.0
    rg.loc["concat", ["image", "text"]] = (0.2, 0.9)
    rg.loc["crossattn", ["image", "text"]] = (0.9, 0.1)  # one model routes cleanly: not "far from" any more
    md = _discussion(table=table, group_f1=gm, group_auc=ga, poster_share=rg, ica_share=None,
                     boot=_boot({m: (-1, 1, -1, 1) for m in MODELS7[1:]}))
    for phrase in (
        "**Fusion pays off only in part here.**", "3 of 4 fused models (all but concat) beat both unimodal models",
        "with the image model contains 0 and with the text model contains 0",
        "MANGO ranks first on macro F1 and first on micro F1 here, and the test set cannot separate it from the other fusions.",
        "leads concat on macro F1 by 21.1 points", "against TokenFusion both contain 0",
        "the text model ranks better than 2 of 4 fused models (TokenFusion, cross-attention)",
        "better than the *blind* unimodal model, and better than the *seeing* one in 3 of 8",
        "**The synergy genres are barely learned.**", "2 of 6 models (concat, the text model) get F1 above 0 on them "
        "(best fused: concat, 30.0; best unimodal, a co-occurrence guess: the text model, 10.0)",
        "(cross-attention, 75.0) is 14.6 points above", "**MANGO is not the heaviest fusion here.**",
        "It has no more parameters than any fused baseline", "This differs from the paper's own remark",
        "has no IMCA layer", "3 of 4 fused models (all but concat) lean on the poster more",
        "The poster share is 0.20 to 0.90 on image-only genres and 0.10 to 0.90 on text-only ones, against the clean",
    ):
        assert phrase in md, phrase
    assert "learned by anyone" not in md and "redundant group (asserted)" not in md


def test_discussion_helpers() -> None:
    assert [gx.ordinal(n) for n in (1, 2, 6, 11)] == ["first", "second", "sixth", "11th"]
    assert gx.place({"a": 3.0, "b": 5.0, "c": 1.0}, "a") == "ranks second"
    assert gx.place({"mango": 3.0, "concat": 3.0, "c": 1.0}, "mango") == "shares first place with concat"
    assert gx.place({"a": 1.0, "b": 1.0, "c": 1.0}, "a") == "shares first place with 2 other models"
    pool = ["mango", "concat", "tokenfusion", "crossattn"]
    assert gx.which(pool, pool) == ("every fused model", True)
    assert gx.which([], pool) == ("no fused model", True)
    assert gx.which(["concat"], pool) == ("1 of 4 fused models (concat)", True)
    assert gx.which(["mango", "concat", "crossattn"], pool) == ("3 of 4 fused models (all but TokenFusion)", False)
    b = _boot({"x": (1, 3, -2, 2)})
    lo, hi = gx.paired_interval(b, "mango", "x", "micro")
    assert 0 < lo < hi and gx.bootstrap_table(b).loc["x", "mango - model, micro CI"] == f"[{lo:+.1f}, {hi:+.1f}]"
