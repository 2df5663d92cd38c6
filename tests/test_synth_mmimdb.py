"""MM-IMDb stand-in generator: layout, HDF5 schema, genre statistics and the cross-modal cue design."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mango_lite.datasets.constants import MMIMDB_GENRES
from mango_lite.datasets.synth import get_writer, mmimdb as M
from mango_lite.errors import DataError

h5py = pytest.importorskip("h5py")

GI = {g: i for i, g in enumerate(MMIMDB_GENRES)}
N, SIZE = 60, 32          # W = 20


@pytest.fixture(scope="module")
def ds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return M.write_mmimdb(tmp_path_factory.mktemp("mm") / "a", N, size=SIZE, seed=7)


def _multi_hot(names: list[str]) -> np.ndarray:
    v = np.zeros(len(MMIMDB_GENRES), dtype=np.int64)
    for g in names:
        if g in GI:
            v[GI[g]] = 1
    return v


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


# ------------------------------------------------------------------------------------ layout / io


def test_registry_and_poster_width() -> None:
    assert get_writer("mmimdb") is M.write_mmimdb
    assert [M.poster_width(s) for s in (256, 128, 64, 32)] == [160, 80, 40, 20]


def test_layout_and_json(ds: Path) -> None:
    split = json.loads((ds / "split.json").read_text())
    assert set(split) == {"train", "dev", "test"}
    ids = [i for k in ("train", "dev", "test") for i in split[k]]
    assert len(ids) == len(set(ids)) == N                         # disjoint and complete
    assert sorted(ids) == [f"{i:07d}" for i in range(1, N + 1)]
    # 60 * 15552 / 25959 = 35.95 -> 36, 60 * 2608 / 25959 = 6.03 -> 6, rest 18 (hand-computed)
    assert [len(split[k]) for k in ("train", "dev", "test")] == [36, 6, 18]
    files = sorted(p.name for p in (ds / "dataset").iterdir())
    assert files == sorted([f"{i}.jpeg" for i in ids] + [f"{i}.json" for i in ids])
    for i in ids:
        meta = json.loads((ds / "dataset" / f"{i}.json").read_text())
        assert {"plot", "genres", "title", "director", "year", "imdb_id"} <= set(meta)
        assert meta["imdb_id"] == i and len(i) == 7 and i.isdigit()
        plots = meta["plot"]
        assert isinstance(plots, list) and 1 <= len(plots) <= 3
        assert len({len(p) for p in plots}) == len(plots)         # distinct lengths
        longest = max(plots, key=len)
        assert all(longest.startswith(p) for p in plots)          # shorter ones are outlines of it
        assert _multi_hot(meta["genres"]).sum() >= 1
        assert 1940 <= meta["year"] <= 2014 and isinstance(meta["title"], str)
        with Image.open(ds / "dataset" / f"{i}.jpeg") as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (20, 32)
    meta = json.loads((ds / "meta.json").read_text())
    assert meta["synthetic"] is True and meta["seed"] == 7 and meta["GENRE_CUES"] == M.GENRE_CUES
    assert meta["counts"] == {"train": 36, "dev": 6, "test": 18}


def test_split_stratified_and_exact() -> None:
    for n in (10, 11, 37, 101):
        lab = M.sample_genre_sets(n, np.random.default_rng(n))
        sp = M.split_indices(lab, np.random.default_rng(0))
        assert {k: v.size for k, v in sp.items()} == M.split_sizes(n)
        assert np.unique(np.concatenate(list(sp.values()))).size == n
    assert M.split_sizes(25959) == {"train": 15552, "dev": 2608, "test": 7799}
    lab = M.sample_genre_sets(6000, np.random.default_rng(1))
    sp = M.split_indices(lab, np.random.default_rng(0))
    for g in np.flatnonzero(lab.sum(0) >= 100):                   # every common genre ~30 % in test
        frac = lab[sp["test"], g].sum() / lab[:, g].sum()
        assert abs(frac - 7799 / 25959) < 0.05, (MMIMDB_GENRES[g], frac)


def test_hdf5_schema_and_consistency(ds: Path) -> None:
    split = json.loads((ds / "split.json").read_text())
    order = split["train"] + split["dev"] + split["test"]
    with h5py.File(ds / "multimodal_imdb.hdf5", "r") as h5:
        assert h5["features"].shape == (N, 300) and h5["features"].dtype == np.float32
        assert h5["images"].shape == (N, 3, 32, 20) and h5["images"].dtype == np.int32
        assert h5["genres"].shape == (N, 23) and h5["genres"].dtype.kind == "i"
        assert h5["imdb_ids"].dtype == np.dtype("S7")
        assert [b.decode() for b in h5["imdb_ids"][()]] == order      # train, dev, test order
        assert json.loads(h5["genres"].attrs["target_names"]) == list(MMIMDB_GENRES)
        rows = {r["split"].decode(): (int(r["start"]), int(r["stop"])) for r in h5.attrs["split"]}
        assert rows == {"train": (0, 36), "dev": (36, 42), "test": (42, 60)}
        genres, images, feats = h5["genres"][()], h5["images"][()], h5["features"][()]
    for r, i in enumerate(order):
        meta = json.loads((ds / "dataset" / f"{i}.json").read_text())
        np.testing.assert_array_equal(genres[r], _multi_hot(meta["genres"]))
        with Image.open(ds / "dataset" / f"{i}.jpeg") as im:
            np.testing.assert_array_equal(images[r], np.asarray(im.convert("RGB")).transpose(2, 0, 1))
        # features: mean over word tokens of fixed hash-seeded Gaussian vectors (independent re-derivation)
        toks = re.findall(r"[a-z]+|[0-9]+", max(meta["plot"], key=len).lower())
        vecs = [np.random.default_rng(int.from_bytes(hashlib.blake2b(("N" if t[0].isdigit() else t).encode(),
                                                                      digest_size=8).digest(), "little"))
                .standard_normal(300) for t in toks]
        np.testing.assert_allclose(feats[r], np.mean(vecs, axis=0), rtol=1e-4, atol=1e-5)


def test_loader_reads_both_sources(ds: Path) -> None:
    loader = pytest.importorskip("mango_lite.datasets.mmimdb")
    raw = loader.MMIMDB(ds, "dev", source="raw")
    h5 = loader.MMIMDB(ds, "dev", source="hdf5")
    try:
        assert len(raw) == len(h5) == 6
        for k in range(len(raw)):
            a, b = raw[k], h5[k]
            assert a["id"] == b["id"]
            assert a["labels"].tolist() == b["labels"].tolist()
            assert tuple(a["image"].shape) == tuple(b["image"].shape) == (3, 32, 20)
    finally:
        h5.close()


def test_deterministic_and_seed_sensitive(tmp_path: Path) -> None:
    cfg = M.CueConfig(p_extra_genre=1.0)
    a = M.write_mmimdb(tmp_path / "a", 12, size=SIZE, seed=3, config=cfg)
    b = M.write_mmimdb(tmp_path / "b", 12, size=SIZE, seed=3, config=cfg)
    c = M.write_mmimdb(tmp_path / "c", 12, size=SIZE, seed=4, config=cfg, hdf5=False)
    names = sorted(p.relative_to(a).as_posix() for p in a.rglob("*") if p.is_file() and p.suffix != ".hdf5")
    assert names == sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file() and p.suffix != ".hdf5")
    assert all((a / nm).read_bytes() == (b / nm).read_bytes() for nm in names)
    assert any((a / nm).read_bytes() != (c / nm).read_bytes() for nm in names if nm.startswith("dataset/"))
    assert not (c / "multimodal_imdb.hdf5").exists()
    with h5py.File(a / "multimodal_imdb.hdf5", "r") as fa, h5py.File(b / "multimodal_imdb.hdf5", "r") as fb:
        for key in ("features", "images", "genres", "imdb_ids"):
            np.testing.assert_array_equal(fa[key][()], fb[key][()])
    # p_extra_genre = 1: every json lists exactly one genre outside the 23, which the labels ignore
    for p in (a / "dataset").glob("*.json"):
        genres = json.loads(p.read_text())["genres"]
        assert sum(g not in GI for g in genres) == 1 and set(genres) - set(GI) <= set(M.EXTRA_GENRES)


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="n in 10"):
        M.write_mmimdb(tmp_path, 5, size=32)
    with pytest.raises(DataError, match="size"):
        M.write_mmimdb(tmp_path, 20, size=8)
    with pytest.raises(DataError, match=r"\(n, 23\)"):
        M.sample_cues(np.zeros((4, 22), bool), np.random.default_rng(0))
    with pytest.raises(DataError, match="probability"):
        M.CueConfig(p_hit_text=1.5)
    with pytest.raises(DataError, match="genre statistics missing"):
        M.load_genre_stats(tmp_path / "nope.json")


# ---------------------------------------------------------------------------------- genre sampler


def test_genre_stats_file_is_consistent() -> None:
    s = M.load_genre_stats()
    C = np.asarray(s["cooccurrence"])
    assert C.shape == (23, 23) and (C == C.T).all()
    assert [s["counts"][g] for g in MMIMDB_GENRES] == np.diag(C).tolist()
    for g in MMIMDB_GENRES:
        assert s["frequency"][g] == pytest.approx(s["counts"][g] / s["n_films_with_genre"])
    assert sum(s["label_count_distribution"].values()) == pytest.approx(1.0)
    assert s["frequency"]["Short"] == pytest.approx(0.018, abs=1e-4)
    assert s["frequency"]["Film-Noir"] == pytest.approx(0.013, abs=1e-4)


def test_genre_stats_match_bokeh() -> None:
    movies = pytest.importorskip("bokeh_sampledata.movies_data")
    import sqlite3

    with sqlite3.connect(movies.movie_path) as con:
        rows = [r[0] for r in con.execute("SELECT Genre FROM omdb")]
    sets = [{t.strip() for t in (r or "").split(",") if t.strip()} for r in rows]
    sets = [x for x in sets if x]
    counts = Counter(g for x in sets for g in x)
    s = M.load_genre_stats()
    assert s["n_films"] == len(rows) == 17472 and s["n_films_with_genre"] == len(sets)
    for g in MMIMDB_GENRES:
        if g not in ("Short", "Film-Noir"):
            assert s["counts"][g] == counts[g], g
    pair = sum(1 for x in sets if {"Drama", "Romance"} <= x)
    assert s["cooccurrence"][GI["Drama"]][GI["Romance"]] == pair
    assert counts["Drama"] == 8925 and counts["Music"] == 40        # figures quoted in data.md 2a


def test_sampler_marginals() -> None:
    s = M.load_genre_stats()
    n = 4000
    Y = M.sample_genre_sets(n, np.random.default_rng(11))
    assert Y.shape == (n, 23) and Y.dtype == bool and (Y.sum(1) >= 1).all()
    p = np.array([s["frequency"][g] for g in MMIMDB_GENRES])
    se = np.sqrt(p * (1 - p) / n)
    assert (np.abs(Y.mean(0) - p) <= 4 * se + 0.006).all(), np.round(Y.mean(0) - p, 4)
    # label count distribution vs. the sampler's probabilities
    pk = np.asarray(s["sampler"]["label_count_probs"])
    assert Y.sum(1).mean() == pytest.approx((np.arange(1, len(pk) + 1) * pk).sum(), abs=0.05)
    # a strong real association survives: P(Romance | Drama) vs the data
    C = np.asarray(s["cooccurrence"], float)
    emp = C[GI["Drama"], GI["Romance"]] / C[GI["Drama"], GI["Drama"]]
    got = Y[Y[:, GI["Drama"]], GI["Romance"]].mean()
    assert abs(got - emp) < 0.05
    np.testing.assert_array_equal(Y, M.sample_genre_sets(n, np.random.default_rng(11)))


# ------------------------------------------------------------------------------------ cue design


def test_cue_table() -> None:
    assert tuple(M.GENRE_CUES) == MMIMDB_GENRES
    assert set(M.GENRE_CUES.values()) == {"image", "text", "both", "synergy"}
    n_kind = Counter(M.GENRE_CUES.values())
    assert n_kind["image"] >= 3 and n_kind["text"] >= 3 and n_kind["both"] >= 3 and n_kind["synergy"] >= 1
    assert {"Animation", "Film-Noir", "Horror"} <= {g for g, k in M.GENRE_CUES.items() if k == "image"}
    assert {"Biography", "History", "Documentary"} <= {g for g, k in M.GENRE_CUES.items() if k == "text"}


def test_text_only_genre_leaves_poster_unchanged() -> None:
    lab = M.sample_genre_sets(48, np.random.default_rng(0))
    for g in ("Biography", "Documentary", "History"):
        flip = lab.copy()
        flip[:, GI[g]] = ~flip[:, GI[g]]
        ia, ta = M.sample_cues(lab, np.random.default_rng(1))
        ib, tb = M.sample_cues(flip, np.random.default_rng(1))
        np.testing.assert_array_equal(ia, ib)
        pa = M.render_posters(ia, np.random.default_rng(2), 32)
        pb = M.render_posters(ib, np.random.default_rng(2), 32)
        np.testing.assert_array_equal(pa, pb)                    # not one pixel depends on the genre
        changed = np.flatnonzero((ta != tb).any(0))
        assert changed.tolist() == [GI[g]]                        # the plot does see it
    # mean poster colour, genre on vs off, on label sets where the genre is random: no difference
    lab = M.sample_genre_sets(400, np.random.default_rng(5))
    lab[:, GI["Biography"]] = np.random.default_rng(6).random(400) < 0.5
    ic, _ = M.sample_cues(lab, np.random.default_rng(7))
    mean = M.render_posters(ic, np.random.default_rng(8), 32).reshape(400, -1, 3).mean(1)
    on = lab[:, GI["Biography"]]
    diff = mean[on].mean(0) - mean[~on].mean(0)
    se = np.sqrt(mean[on].var(0) / on.sum() + mean[~on].var(0) / (~on).sum())
    assert (np.abs(diff) < 4 * se).all()


def test_image_only_genre_leaves_plot_unchanged() -> None:
    lab = M.sample_genre_sets(48, np.random.default_rng(0))
    for g in ("Horror", "Animation", "Film-Noir"):
        flip = lab.copy()
        flip[:, GI[g]] = ~flip[:, GI[g]]
        ia, ta = M.sample_cues(lab, np.random.default_rng(1))
        ib, tb = M.sample_cues(flip, np.random.default_rng(1))
        np.testing.assert_array_equal(ta, tb)
        assert M.make_plots(ta, np.random.default_rng(3)) == M.make_plots(tb, np.random.default_rng(3))
        assert not np.array_equal(M.render_posters(ia, np.random.default_rng(2), 32),
                                  M.render_posters(ib, np.random.default_rng(2), 32))
    # positive control: the Horror cue really darkens / reddens posters
    cue = np.zeros((200, 23), bool)
    cue[100:, GI["Horror"]] = True
    px = M.render_posters(cue, np.random.default_rng(4), 32).reshape(200, -1, 3).astype(float).mean(1)
    assert px[100:].mean() < 0.6 * px[:100].mean()
    assert (px[100:, 0] > px[100:, 2]).mean() > 0.9


def test_plot_keywords_follow_text_cues() -> None:
    rng = np.random.default_rng(0)
    cue = (rng.random((400, 23)) < 0.3) & ~np.array([M.GENRE_CUES[g] == "image" for g in MMIMDB_GENRES])
    plots = M.make_plots(cue, np.random.default_rng(1))
    words = [_words(" ".join(p)) for p in plots]
    longest = [_words(max(p, key=len)) for p in plots]
    for g, kws in M.GENRE_KEYWORDS.items():
        has = np.array([bool(w & set(kws)) for w in longest])
        if M.GENRE_CUES[g] == "image":
            assert not any(w & set(kws) for w in words), g       # never any image-only keyword
        else:
            np.testing.assert_array_equal(has, cue[:, GI[g]], err_msg=g)
    # no text cue at all -> no genre keyword anywhere
    none = M.make_plots(np.zeros((200, 23), bool), np.random.default_rng(2))
    allkw = {k for kws in M.GENRE_KEYWORDS.values() for k in kws}
    assert not any(_words(" ".join(p)) & allkw for p in none)


def test_written_data_follow_cues(ds: Path) -> None:
    z = np.load(ds / "synthetic_cues.npz")
    ids, lab, ic, tc = list(z["ids"]), z["labels"], z["image_cue"], z["text_cue"]
    for k, i in enumerate(ids):
        meta = json.loads((ds / "dataset" / f"{i}.json").read_text())
        np.testing.assert_array_equal(_multi_hot(meta["genres"]), lab[k].astype(int))
        w = _words(max(meta["plot"], key=len))
        for g, kws in M.GENRE_KEYWORDS.items():
            assert bool(w & set(kws)) == bool(tc[k, GI[g]]), (i, g)
    img_only = np.array([M.GENRE_CUES[g] == "image" for g in MMIMDB_GENRES])
    txt_only = np.array([M.GENRE_CUES[g] == "text" for g in MMIMDB_GENRES])
    assert not tc[:, img_only].any() and not ic[:, txt_only].any()


def test_synergy_needs_both_modalities() -> None:
    n = 20000
    lab = M.sample_genre_sets(n, np.random.default_rng(0))
    ic, tc = M.sample_cues(lab, np.random.default_rng(1), M.CueConfig(synergy_flip=0.0))
    syn = [g for g, k in M.GENRE_CUES.items() if k == "synergy"]
    assert syn
    for g in syn:
        y, b, t = lab[:, GI[g]], ic[:, GI[g]], tc[:, GI[g]]
        assert y.mean() > 0.03
        for cue in (b, t):                                        # each modality alone: independent
            assert abs(np.corrcoef(cue, y)[0, 1]) < 4 / np.sqrt(n)
            assert abs(cue[y].mean() - cue[~y].mean()) < 0.04
        np.testing.assert_array_equal(b ^ t, y)                   # together: exact
    # with the default flip noise the XOR still agrees with the label ~97 % of the time
    ic, tc = M.sample_cues(lab, np.random.default_rng(1))
    agree = ((ic ^ tc) == lab)[:, [GI[g] for g in syn]].mean()
    assert 0.95 < agree < 0.99
    # redundant genres: each modality is informative on its own and the two copies are independent
    g = GI["Comedy"]
    assert np.corrcoef(ic[:, g], lab[:, g])[0, 1] > 0.7 and np.corrcoef(tc[:, g], lab[:, g])[0, 1] > 0.7
    on = lab[:, g]
    assert abs(np.corrcoef(ic[on, g], tc[on, g])[0, 1]) < 0.05


def test_synergy_cues_are_rendered() -> None:
    cue = np.zeros((2, 23), bool)
    cue[1, GI["Mystery"]] = True
    p = M.render_posters(cue, np.random.default_rng(0), 64)
    assert np.abs(p[0].astype(int) - p[1].astype(int)).sum() > 1000   # the keyhole is drawn


def test_cues_learnable_from_features() -> None:
    lm = pytest.importorskip("sklearn.linear_model")
    from sklearn.metrics import roc_auc_score

    n = 600
    lab = M.sample_genre_sets(n, np.random.default_rng(3))
    ic, tc = M.sample_cues(lab, np.random.default_rng(4))
    x_txt = M.text_features([max(p, key=len) for p in M.make_plots(tc, np.random.default_rng(5))])
    px = M.render_posters(ic, np.random.default_rng(6), 32).astype(np.float32) / 255.0
    x_img = np.concatenate([px.reshape(n, 8, 4, 5, 4, 3).mean((2, 4)).reshape(n, -1), px.std((1, 2))], 1)
    tr, te = slice(0, 400), slice(400, None)
    for x, g in ((x_txt, "Documentary"), (x_img, "Horror")):
        y = lab[:, GI[g]]
        clf = lm.LogisticRegression(max_iter=500).fit(x[tr], y[tr])
        assert roc_auc_score(y[te], clf.decision_function(x[te])) > 0.85, g
