"""MM-IMDb stand-in: generated posters + plots -> 23 genres (multi-label), in the real on-disk formats.

What is real and what is made up
--------------------------------
* **Genre label sets** follow real statistics: per-genre frequency, pairwise co-occurrence and the
  number-of-labels distribution of the 17,472 films of ``bokeh-sampledata``'s ``movies.db`` (CC0,
  Wikidata, table ``omdb``, column ``Genre``). 21 of the 23 MM-IMDb genres occur there; **Short** and
  **Film-Noir** do not and get small imputed base rates (1.8 % and 1.3 %, about their share of MM-IMDb;
  see ``IMPUTED_GENRES``) and hand-set co-occurrence. The statistics are committed as
  ``mmimdb_genre_stats.json`` next to this file (so bokeh is not needed at run time);
  :func:`regenerate_genre_stats` rebuilds it from bokeh.
* **Posters and plots are synthetic.** Posters are drawn with PIL + numpy; plots are built from
  templates and word lists written here (no external text).

Cross-modal design (``GENRE_CUES``)
-----------------------------------
Labels come first; the two modalities are then rendered from *cue bits*, never from the labels
directly, so which modality can see which genre is exact and testable:

* ``"image"`` - only the poster shows the genre (Horror, Sci-Fi, Fantasy, Western, Animation,
  Film-Noir): a palette / global tone and a motif. The plot never mentions it.
* ``"text"`` - only the plot shows it (Documentary, Biography, History, Music, Sport, Short): one
  keyword sentence. The poster is pixel-for-pixel the same with or without the genre.
* ``"both"`` - redundant (Drama, Comedy, Romance, Crime, Action, Adventure, Family, War, Musical): the
  poster and the plot each carry an *independent* noisy copy of the label, so fusing helps.
* ``"synergy"`` - needs both (Thriller, Mystery): draw a fair bit ``b``; the poster shows motif ``b``
  (Thriller: a target of rings, Mystery: a brass keyhole) and the plot shows keyword ``b XOR y``
  (Thriller: "lighthouse", Mystery: "raven"). Each modality alone is independent of ``y``
  (``b`` is uniform), the XOR recovers it (up to ``CueConfig.synergy_flip``).

Noise: a cue of an "image"/"text"/"both" genre is shown with probability ``p_hit`` when the genre is
on and ``p_false`` when off; posters get pixel noise, jittered colours, random motif places and sizes
and a random title; plots get 1-3 neutral sentences in random order. Unimodal models therefore lose
the other modality's genres and both synergy genres, but stay well above zero on the rest. Labels
also co-occur (real statistics), so a unimodal model can still *guess* a hidden genre from visible
ones - exactly as in real data.

On disk (:func:`write_mmimdb`)
------------------------------
``root/dataset/{id}.jpeg`` and ``{id}.json`` (``plot``: 1-3 strings of different lengths, the longest
holds every cue; ``genres`` (sometimes with a genre outside the 23, e.g. "News"); ``title``,
``director``, ``year``, ``imdb_id``), ``root/split.json``, ``root/multimodal_imdb.hdf5`` (GMU /
MultiBench schema, rows train then dev then test), ``root/meta.json`` and ``root/synthetic_cues.npz``
(the cue bits per id, for analysis; real MM-IMDb has no such file).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ...errors import DataError
from ...utils import atomic_write, atomic_write_json
from ..constants import MMIMDB_GENRES, MMIMDB_SPLIT_SIZES

__all__ = [
    "GENRE_CUES", "CUE_DESCRIPTIONS", "GENRE_KEYWORDS", "IMPUTED_GENRES", "STATS_PATH", "CueConfig",
    "poster_width", "compute_genre_stats", "regenerate_genre_stats", "load_genre_stats",
    "sample_genre_sets", "sample_cues", "render_posters", "make_plots", "tokenize", "text_features",
    "split_sizes", "split_indices", "write_mmimdb",
]

G = len(MMIMDB_GENRES)
GI = {g: i for i, g in enumerate(MMIMDB_GENRES)}
STATS_PATH = Path(__file__).with_name("mmimdb_genre_stats.json")
FEATURE_DIM = 300          # GMU `features`: 300-d (word2vec) plot vector
GMU_SIZE = (256, 160)      # GMU `images`: (H, W) = 256 x 160
_CHUNK = 64                # samples rendered per batch; fixed so output never depends on memory settings
EXTRA_GENRES = ("News", "Reality-TV", "Talk-Show", "Adult", "Game-Show")  # real MM-IMDb json has a few

# --------------------------------------------------------------------------------------------------
# Cross-modal design
# --------------------------------------------------------------------------------------------------

GENRE_CUES: dict[str, str] = {
    "Drama": "both", "Comedy": "both", "Romance": "both", "Thriller": "synergy", "Crime": "both",
    "Action": "both", "Adventure": "both", "Horror": "image", "Documentary": "text",
    "Mystery": "synergy", "Sci-Fi": "image", "Fantasy": "image", "Family": "both",
    "Biography": "text", "War": "both", "History": "text", "Music": "text", "Animation": "image",
    "Musical": "both", "Western": "image", "Sport": "text", "Short": "text", "Film-Noir": "image",
}
assert tuple(GENRE_CUES) == MMIMDB_GENRES

CUE_DESCRIPTIONS: dict[str, str] = {
    "Drama": "poster: pale-blue teardrop | plot: grief / estranged / heartbreak sentence",
    "Comedy": "poster: warm yellow palette + smiley | plot: hilarious / prank / mishaps",
    "Romance": "poster: pink palette + heart | plot: love / romance / sweetheart",
    "Thriller": "SYNERGY: poster shows a ring target iff b; plot says 'lighthouse' iff b XOR Thriller",
    "Crime": "poster: yellow diagonal tape | plot: detective / robbery / gangster",
    "Action": "poster: orange explosion star | plot: explosive / chase / fight",
    "Adventure": "poster: mountain range at the bottom | plot: expedition / treasure / jungle",
    "Horror": "poster only: black-to-blood-red palette, red drips, darkened image",
    "Documentary": "plot only: documentary / footage / interviews",
    "Mystery": "SYNERGY: poster shows a brass keyhole iff b; plot says 'raven' iff b XOR Mystery",
    "Sci-Fi": "poster only: navy-to-cyan palette, ringed planet, stars",
    "Fantasy": "poster only: purple palette, crescent moon, sparkles",
    "Family": "poster: house icon | plot: family / kids / grandmother",
    "Biography": "plot only: biography / memoir / biopic",
    "War": "poster: olive palette + crosshair | plot: soldiers / battlefield / wartime",
    "History": "plot only: historical / century / empire",
    "Music": "plot only: band / concert / guitar",
    "Animation": "poster only: flat posterised saturated colours, no film grain",
    "Musical": "poster: golden music notes | plot: singing / dancing / chorus",
    "Western": "poster only: sepia tone, sun disk, cactus",
    "Sport": "plot only: championship / coach / stadium",
    "Short": "plot only: short / minutes",
    "Film-Noir": "poster only: greyscale, high contrast, venetian-blind shadows",
}

# Words that are emitted only by one genre's plot sentences (tests check exclusivity). Image-only
# genres list the words a reader would expect; the generator never writes them.
GENRE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "Drama": ("grief", "estranged", "heartbreak"),
    "Comedy": ("hilarious", "prank", "mishaps"),
    "Romance": ("love", "romance", "sweetheart"),
    "Thriller": ("lighthouse",),
    "Crime": ("detective", "robbery", "gangster"),
    "Action": ("explosive", "chase", "fight"),
    "Adventure": ("expedition", "treasure", "jungle"),
    "Horror": ("horror", "ghost", "haunted", "blood", "monster"),
    "Documentary": ("documentary", "footage", "interviews"),
    "Mystery": ("raven",),
    "Sci-Fi": ("alien", "spaceship", "planet", "robot", "galaxy"),
    "Fantasy": ("wizard", "dragon", "magic", "spell"),
    "Family": ("family", "kids", "grandmother"),
    "Biography": ("biography", "memoir", "biopic"),
    "War": ("soldiers", "battlefield", "wartime"),
    "History": ("historical", "century", "empire"),
    "Music": ("band", "concert", "guitar"),
    "Animation": ("animated", "cartoon", "animation"),
    "Musical": ("singing", "dancing", "chorus"),
    "Western": ("cowboy", "sheriff", "ranch", "frontier"),
    "Sport": ("championship", "coach", "stadium"),
    "Short": ("short", "minutes"),
    "Film-Noir": ("noir", "femme", "fatale"),
}

# Plot sentences per text-visible genre; each holds at least one of the genre's keywords.
_GENRE_SENTENCES: dict[str, tuple[str, ...]] = {
    "Drama": ("{A} struggles with grief after a painful loss.",
              "An estranged brother reopens old wounds for {A}.",
              "Heartbreak forces {A} to face a difficult past."),
    "Comedy": ("A series of hilarious mishaps follows {A} everywhere.",
               "A harmless prank by {B} spirals out of control.",
               "{A} survives one hilarious situation after another."),
    "Romance": ("{A} falls in love with {B}.",
                "A summer romance blossoms between {A} and {B}.",
                "{A} writes letters to a long-lost sweetheart."),
    "Crime": ("A detective questions {A} about a robbery downtown.",
              "{A} owes money to a ruthless gangster.",
              "After a jewel robbery, {B} vanishes without a trace."),
    "Action": ("An explosive chase tears through the streets.",
               "{A} must fight to survive the night.",
               "A chase across the rooftops ends in a brutal fight."),
    "Adventure": ("{A} joins an expedition in search of a lost treasure.",
                  "A map leads {A} and {B} deep into the jungle.",
                  "The expedition crosses rivers and deserts."),
    "Family": ("Three kids spend the holidays with their grandmother.",
               "{A} tries to hold the family together.",
               "A warm family reunion brings everyone home."),
    "War": ("A group of young soldiers is sent to the battlefield.",
            "In wartime, {A} hides {B} in the cellar.",
            "The soldiers wait for orders that never come."),
    "Musical": ("Everyone starts singing when {A} enters the square.",
                "{A} dreams of dancing on Broadway.",
                "A chorus of neighbours joins {A} in song."),
    "Documentary": ("This documentary follows {A} for a whole year.",
                    "Archive footage and interviews tell the story.",
                    "Through interviews with witnesses, the documentary asks what really happened."),
    "Biography": ("A biography of the celebrated {occ} {A} {L}.",
                  "Based on the memoir of {A} {L}.",
                  "This biopic traces the rise of {A} {L}."),
    "History": ("Set in the eighteenth century, the story unfolds at court.",
                "A historical account of the last days of an empire.",
                "At the turn of the century, {A} witnesses great change."),
    "Music": ("{A} plays guitar in a struggling band.",
              "The band prepares for its first big concert.",
              "{A} and {B} form a band in a garage."),
    "Sport": ("A washed-up coach trains an unlikely squad.",
              "{A} fights for a place in the championship.",
              "The final match is played in a packed stadium."),
    "Short": ("This short film follows {A} through a single afternoon.",
              "In just twelve minutes, {A} makes a decision.",
              "A short portrait of {A}, told in a few minutes."),
    # synergy text bits: the keyword itself says nothing about the genre
    "Thriller": ("{A} keeps an old photograph of a lighthouse.",
                 "A lighthouse can be seen from the kitchen window.",
                 "{B} paints the lighthouse every morning."),
    "Mystery": ("A raven sits on the windowsill every evening.",
                "{A} feeds a tame raven in the yard.",
                "A raven nests above the front door."),
}

_FIRST = ("Anna", "Ben", "Clara", "Daniel", "Elena", "Felix", "Grace", "Hugo", "Iris", "Jonas", "Kira",
          "Leo", "Maya", "Nora", "Oscar", "Paula", "Quinn", "Rosa", "Samuel", "Tessa", "Victor",
          "Wanda", "Yusuf", "Zoe")
_LAST = ("Adler", "Brandt", "Castillo", "Dunmore", "Ekberg", "Fischer", "Garner", "Holloway", "Ibsen",
         "Jansen", "Keller", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov", "Quint", "Rinaldi",
         "Sato", "Thorne", "Uhl", "Varga", "Whitlock", "Young")
_PLACES = ("a small coastal town", "the city", "a mountain village", "the suburbs", "a quiet harbour",
           "the capital", "a farming valley", "a river town", "a busy port", "a northern town")
_OCCS = ("teacher", "nurse", "mechanic", "baker", "librarian", "taxi driver", "architect", "student",
         "shop owner", "translator", "carpenter", "accountant", "painter", "engineer")
_OBJECTS = ("bicycle", "umbrella", "old car", "radio", "piano", "boat", "typewriter", "camera",
            "armchair", "bookshop", "garden", "caravan")
_ACTS = ("reading the newspaper", "repairing furniture", "cooking for friends", "walking the dog",
         "writing letters", "fixing the roof", "tending the garden", "learning a new language")
_SEASONS = ("summer", "winter", "autumn", "spring")
_NEUTRAL_OPENERS = ("{A} {L} is a {occ} living in {place}.",
                    "{A} {L}, a {occ} from {place}, leads a quiet life.",
                    "In {place}, {A} {L} works as a {occ}.")
_NEUTRAL = ("{A} shares an apartment with {B}, an old friend.",
            "Every morning {A} walks past the same {obj}.",
            "When {B} arrives unexpectedly, plans begin to change.",
            "{A} spends the evenings {act}.",
            "Over one long {season}, old habits are tested.",
            "Neighbours talk about the new {obj}.",
            "{A} and {B} disagree about almost everything.",
            "A letter from {B} changes the plans for the {season}.",
            "{A} decides to sell the {obj}.",
            "Nobody in {place} expects what comes next.")
_TITLE_ADJ = ("Silent", "Golden", "Long", "Last", "Distant", "Quiet", "Bright", "Little", "Second",
              "Northern", "Paper", "Winter", "Open", "Blue", "Velvet", "Broken")
_TITLE_NOUN = ("Road", "Garden", "Letter", "Summer", "Harbour", "Window", "Promise", "Bridge", "River",
               "Station", "Orchard", "Season", "Door", "Morning", "Island", "Avenue")

# --------------------------------------------------------------------------------------------------
# Genre statistics (bokeh-sampledata movies.db)
# --------------------------------------------------------------------------------------------------

# Genres missing from movies.db: base rate (fraction of labelled films) and P(other genre | this one).
# The rates are close to their share in MM-IMDb (GMU paper genre table: Short ~471, Film-Noir ~338 of
# 25,959 films; quoted from memory, not re-checked offline). The conditionals are hand-set: noir films
# are crime dramas / thrillers, shorts are mostly comedies, dramas, cartoons or documentaries.
IMPUTED_GENRES: dict[str, dict[str, Any]] = {
    "Short": {"frequency": 0.018,
              "conditional": {"Comedy": 0.35, "Drama": 0.30, "Animation": 0.25, "Documentary": 0.15,
                              "Family": 0.10, "Fantasy": 0.05}},
    "Film-Noir": {"frequency": 0.013,
                  "conditional": {"Crime": 0.75, "Drama": 0.60, "Thriller": 0.35, "Mystery": 0.35,
                                  "Romance": 0.10}},
}


def _bokeh_genre_lists(db_path: str | Path | None = None) -> tuple[list[list[str]], str]:
    """Genre lists of every film of bokeh-sampledata's ``omdb`` table (empty list = no genre)."""
    if db_path is None:
        try:
            import bokeh_sampledata.movies_data as movies  # type: ignore[import-not-found]
        except ImportError as exc:
            raise DataError("regenerating the MM-IMDb genre statistics needs bokeh-sampledata "
                            "(pip install bokeh-sampledata); the committed "
                            f"{STATS_PATH.name} is used otherwise") from exc
        db_path = movies.movie_path
    db_path = Path(db_path)
    if not db_path.is_file():
        raise DataError(f"{db_path}: bokeh movies database not found")
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as con:
            rows = con.execute("SELECT Genre FROM omdb").fetchall()
    except sqlite3.Error as exc:
        raise DataError(f"{db_path}: cannot read table omdb ({exc})") from exc
    lists = [[s.strip() for s in (r[0] or "").split(",") if s.strip() and s.strip() != "N/A"] for r in rows]
    return lists, str(db_path)


def compute_genre_stats(db_path: str | Path | None = None, calibrate: bool = True,
                        n_sim: int = 100_000, iters: int = 60, seed: int = 0) -> dict[str, Any]:
    """Genre statistics of bokeh-sampledata's movies (plus the imputed Short / Film-Noir) and, with
    ``calibrate``, sampler weights fitted so that :func:`sample_genre_sets` reproduces the marginals.

    Returns a JSON-able dict: ``genres`` (23, MMIMDB order), ``counts`` {genre: films}, ``frequency``
    {genre: fraction of labelled films}, ``cooccurrence`` (23x23 int, diagonal = counts),
    ``label_count_distribution`` {k: fraction of labelled films with k genres} and ``sampler``."""
    lists, src = _bokeh_genre_lists(db_path)
    unknown = sorted({g for gl in lists for g in gl} - set(MMIMDB_GENRES))
    labelled = [[g for g in gl if g in GI] for gl in lists]
    labelled = [gl for gl in labelled if gl]
    n_lab = len(labelled)
    Y = np.zeros((n_lab, G), dtype=np.int64)
    for i, gl in enumerate(labelled):
        Y[i, [GI[g] for g in gl]] = 1
    cooc = Y.T @ Y                                                  # (23, 23) film counts
    kdist = np.bincount(Y.sum(1), minlength=2)[1:] / n_lab          # P(k), k = 1..kmax
    for name, spec in IMPUTED_GENRES.items():
        gi = GI[name]
        c = int(round(spec["frequency"] * n_lab))
        cooc[gi, gi] = c
        for other, p in spec["conditional"].items():
            cooc[gi, GI[other]] = cooc[GI[other], gi] = int(round(p * c))
    counts = np.diag(cooc).copy()
    stats: dict[str, Any] = {
        "source": "bokeh-sampledata movies.db, table omdb, column Genre (CC0, Wikidata)",
        "source_path": Path(src).name,
        "n_films": len(lists),
        "n_films_with_genre": n_lab,
        "genres_outside_23": unknown,
        "imputed": {k: {"frequency": v["frequency"], "conditional": v["conditional"],
                        "note": "absent from movies.db; base rate near its MM-IMDb share, hand-set co-occurrence"}
                    for k, v in IMPUTED_GENRES.items()},
        "genres": list(MMIMDB_GENRES),
        "counts": {g: int(counts[i]) for i, g in enumerate(MMIMDB_GENRES)},
        "frequency": {g: float(counts[i] / n_lab) for i, g in enumerate(MMIMDB_GENRES)},
        "cooccurrence": cooc.astype(int).tolist(),
        "label_count_distribution": {str(k + 1): float(p) for k, p in enumerate(kdist)},
    }
    if calibrate:
        stats["sampler"] = _calibrate_sampler(stats, n_sim=n_sim, iters=iters, seed=seed)
    return stats


def regenerate_genre_stats(path: str | Path = STATS_PATH, db_path: str | Path | None = None,
                           seed: int = 0) -> Path:
    """Recompute the statistics from bokeh-sampledata and write them (atomically) to ``path``."""
    out = atomic_write_json(path, compute_genre_stats(db_path, calibrate=True, seed=seed))
    _load_stats_cached.cache_clear()
    return out


@lru_cache(maxsize=4)
def _load_stats_cached(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def load_genre_stats(path: str | Path | None = None) -> dict[str, Any]:
    """The committed genre statistics (see :func:`compute_genre_stats` for the keys)."""
    p = Path(path) if path is not None else STATS_PATH
    try:
        stats = json.loads(_load_stats_cached(str(p)))
    except FileNotFoundError as exc:
        raise DataError(f"{p}: MM-IMDb genre statistics missing; rebuild with "
                        "mango_lite.datasets.synth.mmimdb.regenerate_genre_stats() (needs bokeh-sampledata)") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{p}: unreadable genre statistics ({exc})") from exc
    if stats.get("genres") != list(MMIMDB_GENRES) or "sampler" not in stats:
        raise DataError(f"{p}: expected the 23 MM-IMDb genres in constants order and a 'sampler' entry, "
                        f"got genres={stats.get('genres')!r}")
    return stats


def _sampler_arrays(stats: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(log-lift (23,23) with zero diagonal, label-count probs (kmax,), first (23,), add (23,)).

    lift(g, h) = P(g, h) / (P(g) P(h)) from the co-occurrence counts, smoothed towards independence
    with ``lift_smoothing`` pseudo-films so that never-seen pairs are rare rather than impossible."""
    cooc = np.asarray(stats["cooccurrence"], dtype=np.float64)
    n = float(stats["n_films_with_genre"])
    s = stats.get("sampler", {})
    alpha = float(s.get("lift_smoothing", 1.0))
    f = np.diag(cooc) / n
    joint = (cooc + alpha * np.outer(f, f)) / (n + alpha)
    log_lift = np.log(joint / np.outer(f, f))
    np.fill_diagonal(log_lift, 0.0)
    pk = np.asarray(s.get("label_count_probs", list(stats["label_count_distribution"].values())), np.float64)
    first = np.asarray(s.get("first_weights", f), np.float64)
    add = np.asarray(s.get("add_weights", np.ones(G)), np.float64)
    return log_lift, pk / pk.sum(), first, add


def _categorical_rows(w: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Row-wise categorical draw: w (n, K) >= 0 with positive row sums, u (n,) in [0,1) -> (n,) int."""
    c = np.cumsum(w, axis=1)
    thr = u * c[:, -1]
    return np.minimum((c <= thr[:, None]).sum(1), w.shape[1] - 1)


def _sample_sets(n: int, rng: np.random.Generator, log_lift: np.ndarray, pk: np.ndarray,
                 first: np.ndarray, add: np.ndarray) -> np.ndarray:
    kmax = len(pk)
    # all random numbers are drawn in fixed shapes, so output depends on (n, seed) only
    k = 1 + np.minimum(np.searchsorted(np.cumsum(pk), rng.random(n), side="right"), kmax - 1)
    u = rng.random((n, kmax))
    S = np.zeros((n, G), dtype=bool)
    S[np.arange(n), _categorical_rows(np.broadcast_to(first, (n, G)), u[:, 0])] = True
    for step in range(1, min(kmax, G)):
        rows = np.flatnonzero(k > step)
        if rows.size == 0:
            break
        cur = S[rows]
        # a further genre h is drawn with weight add[h] * prod_{g in set} lift(g, h): pairs that
        # co-occur more than chance attract each other, rarer-than-chance pairs (Drama+Comedy) repel
        score = np.exp(cur.astype(np.float64) @ log_lift) * add
        score[cur] = 0.0
        S[rows, _categorical_rows(score, u[rows, step])] = True
    return S


def _calibrate_sampler(stats: dict[str, Any], n_sim: int, iters: int, seed: int) -> dict[str, Any]:
    """Fit first/add weights by fixed-point iteration on simulated marginals (common random numbers)."""
    target = np.asarray([stats["frequency"][g] for g in MMIMDB_GENRES])
    pk = np.asarray(list(stats["label_count_distribution"].values()))
    # Short / Film-Noir are extra labels on top of the bokeh films: shift label-count mass k -> k+1
    # by their total rate, so that sum(marginals) == E[k] stays consistent.
    delta = float(sum(v["frequency"] for v in IMPUTED_GENRES.values()))
    pk = np.append(pk, 0.0)
    pk = (1 - delta) * pk + delta * np.concatenate([[0.0], pk[:-1]])
    log_lift, _, _, _ = _sampler_arrays({**stats, "sampler": {"lift_smoothing": 1.0}})
    first, add = target.copy(), np.ones(G)
    for _ in range(iters):
        est = _sample_sets(n_sim, np.random.default_rng(seed), log_lift, pk, first, add).mean(0)
        r = (target / np.maximum(est, 1e-6)) ** 0.5
        first, add = first * r, add * r
        first, add = first / first.sum(), add / add.mean()
    est = _sample_sets(n_sim, np.random.default_rng(seed + 1), log_lift, pk, first, add).mean(0)
    return {
        "method": "k ~ label_count_probs; first genre ~ first_weights; each further genre h ~ "
                  "add_weights[h] * prod_{g in set} lift(g, h); weights fitted by fixed-point iteration",
        "lift_smoothing": 1.0,
        "label_count_probs": pk.tolist(),
        "first_weights": first.tolist(),
        "add_weights": add.tolist(),
        "calibration": {"n_sim": n_sim, "iters": iters, "seed": seed,
                        "max_abs_error": float(np.abs(est - target).max()),
                        "simulated_frequency": {g: float(est[i]) for i, g in enumerate(MMIMDB_GENRES)}},
    }


def sample_genre_sets(n: int, rng: np.random.Generator, stats: dict[str, Any] | None = None) -> np.ndarray:
    """``n`` label sets from the fitted sampler: bool (n, 23) over MMIMDB_GENRES, >= 1 label per row."""
    if n < 0:
        raise DataError(f"sample_genre_sets: expected n >= 0, got {n}")
    log_lift, pk, first, add = _sampler_arrays(stats if stats is not None else load_genre_stats())
    return _sample_sets(int(n), rng, log_lift, pk, first, add)


# --------------------------------------------------------------------------------------------------
# Cue bits
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CueConfig:
    """Strength of the cues. ``p_hit_*``: P(cue shown | genre on); ``p_false_*``: P(cue | genre off);
    ``synergy_flip``: P(the plot bit of a synergy genre is flipped) (each modality alone stays
    independent of the label for any value); ``pixel_noise``: std of Gaussian grain (0-255 units);
    ``p_extra_genre``: chance a JSON lists one genre outside the 23 (ignored by loaders)."""

    p_hit_image: float = 0.85
    p_false_image: float = 0.03
    p_hit_text: float = 0.85
    p_false_text: float = 0.03
    synergy_flip: float = 0.03
    pixel_noise: float = 10.0
    p_extra_genre: float = 0.01

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if k == "pixel_noise":
                if not (0.0 <= v <= 128.0):
                    raise DataError(f"CueConfig.pixel_noise: expected 0..128, got {v}")
            elif not (0.0 <= v <= 1.0):
                raise DataError(f"CueConfig.{k}: expected a probability in [0, 1], got {v}")


def _mask(kinds: tuple[str, ...]) -> np.ndarray:
    return np.array([GENRE_CUES[g] in kinds for g in MMIMDB_GENRES])


IMAGE_VISIBLE = _mask(("image", "both"))
TEXT_VISIBLE = _mask(("text", "both"))
SYNERGY = _mask(("synergy",))


def sample_cues(labels: np.ndarray, rng: np.random.Generator,
                config: CueConfig = CueConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Cue bits from labels (n, 23) bool/0-1 -> (image_cue, text_cue), each bool (n, 23).

    Column g of ``image_cue`` depends only on labels[:, g] and fresh noise, and is all-False for
    "text" genres (likewise ``text_cue`` for "image" genres). For "synergy" genres image = b and
    text = b ^ y ^ flip with b ~ Bernoulli(1/2). Random numbers are drawn in fixed shapes, so toggling
    one label column leaves every other cue bit unchanged."""
    y = np.asarray(labels).astype(bool)
    if y.ndim != 2 or y.shape[1] != G:
        raise DataError(f"sample_cues: expected labels of shape (n, {G}), got {y.shape}")
    n = y.shape[0]
    u_img, u_txt = rng.random((n, G)), rng.random((n, G))
    bit, flip = rng.random((n, G)) < 0.5, rng.random((n, G)) < config.synergy_flip
    img = np.where(y, u_img < config.p_hit_image, u_img < config.p_false_image) & IMAGE_VISIBLE
    txt = np.where(y, u_txt < config.p_hit_text, u_txt < config.p_false_text) & TEXT_VISIBLE
    img = np.where(SYNERGY, bit, img)
    txt = np.where(SYNERGY, bit ^ y ^ flip, txt)
    return img, txt


# --------------------------------------------------------------------------------------------------
# Posters
# --------------------------------------------------------------------------------------------------


def poster_width(size: int) -> int:
    """Poster width for poster height ``size`` (GMU aspect 160:256, e.g. 256 -> 160, 64 -> 40)."""
    return int(round(size * GMU_SIZE[1] / GMU_SIZE[0]))


# Background palettes (top colour, bottom colour) of the palette genres; the others only draw motifs.
_PALETTES: dict[str, tuple[tuple[int, int, int], tuple[int, int, int]]] = {
    "Horror": ((12, 4, 4), (120, 0, 0)),
    "Sci-Fi": ((6, 10, 55), (0, 160, 200)),
    "Romance": ((250, 185, 215), (205, 70, 135)),
    "Comedy": ((255, 245, 165), (255, 185, 50)),
    "Fantasy": ((55, 18, 90), (155, 85, 195)),
    "War": ((75, 82, 45), (145, 135, 90)),
}
_PAL_IDX = np.array([GI[g] for g in _PALETTES])
_PAL_COLS = np.array(list(_PALETTES.values()), dtype=np.float32)       # (P, 2, 3)
_NP = 16  # random parameters per (poster, genre) motif


def _c(rgb: tuple[int, int, int], j: np.ndarray, amount: float = 25.0) -> tuple[int, int, int]:
    """Colour jittered by j (3,) in [0,1)."""
    return tuple(int(np.clip(v + (jj - 0.5) * 2 * amount, 0, 255)) for v, jj in zip(rgb, j))  # type: ignore


def _xy(p: np.ndarray, W: int, H: int, y0: float = 0.12, y1: float = 0.78) -> tuple[float, float]:
    return W * (0.18 + 0.64 * p[0]), H * (y0 + (y1 - y0) * p[1])


def _m_teardrop(d: ImageDraw.ImageDraw, p: np.ndarray, W: int, H: int, s: float) -> None:
    x, y = _xy(p, W, H)
    col = _c((150, 195, 235), p[4:7])
    d.ellipse([x - s / 2, y, x + s / 2, y + s], fill=col)
    d.polygon([(x - s * 0.45, y + s * 0.4), (x + s * 0.45, y + s * 0.4), (x, y - s * 0.6)], fill=col)


def _m_smiley(d: ImageDraw.ImageDraw, p: np.ndarray, W: int, H: int, s: float) -> None:
    x, y = _xy(p, W, H)
    d.ellipse([x - s / 2, y - s / 2, x + s / 2, y + s / 2], fill=_c((255, 215, 30), p[4:7]), outline=(40, 30, 0))
    e = max(1.0, s * 0.09)
    for dx in (-0.17, 0.17):
        d.ellipse([x + dx * s - e, y - 0.15 * s - e, x + dx * s + e, y - 0.15 * s + e], fill=(30, 20, 0))
    d.arc([x - 0.3 * s, y - 0.25 * s, x + 0.3 * s, y + 0.3 * s], 20, 160, fill=(30, 20, 0), width=max(1, int(s * 0.07)))


def _m_heart(d: ImageDraw.ImageDraw, p: np.ndarray, W: int, H: int, s: float) -> None:
    x, y = _xy(p, W, H)
    col = _c((225, 30, 90), p[4:7])
    r = s * 0.28
    d.ellipse([x - 2 * r, y - r, x, y + r], fill=col)
    d.ellipse([x, y - r, x + 2 * r, y + r], fill=col)
    d.polygon([(x - 1.95 * r, y + 0.25 * r), (x + 1.95 * r, y + 0.25 * r), (x, y + 2.2 * r)], fill=col)


def _m_tape(d: ImageDraw.ImageDraw, p: np.ndarray, W: int, H: int, s: float) -> None:
    y = H * (0.25 + 0.5 * p[1])
    t = max(2.0, H * 0.06)
    slope = (p[2] - 0.5) * 0.8 * H
    poly = [(0, y - t - slope / 2), (W, y - t + slope / 2), (W, y + t + slope / 2), (0, y + t - slope / 2)]
    d.polygon(poly, fill=_c((245, 210, 0), p[4:7], 10))
    for j in range(4):  # black dashes along the tape
        x0 = W * (0.1 + 0.22 * j)
        yy = y + slope * (x0 / W - 0.5)
        d.rectangle([x0, yy - t * 0.35, x0 + W * 0.1, yy + t * 0.35], fill=(15, 15, 15))


def _m_explosion(d: ImageDraw.ImageDraw, p: np.ndarray, W: int, H: int, s: float) -> None:
    x, y = _xy(p, W, H)
    k = 9
    ang = np.linspace(0, 2 * np.pi, 2 * k, endpoint=False) + p[2]
    rad = np.where(np.arange(2 * k) % 2 == 0, 0.62 * s, 0.28 * s)
    d.polygon(list(zip(x + rad * np.cos(ang), y + rad * np.sin(ang))), fill=_c((255, 130, 0), p[4:7]))
    d.ellipse([x - 0.2 * s, y - 0.2 * s, x + 0.2 * s, y + 0.2 * s], fill=(255, 240, 90))


def _m_mountains(d: ImageDraw.ImageDraw, p: np.ndarray, W: int, H: int, s: float) -> None:
    base = H * (0.86 + 0.08 * p[1])
    col = _c((105, 85, 55), p[4:7])
    for j, (cx, hh) in enumerate(((0.25, 0.3), (0.6, 0.42), (0.9, 0.25))):
        cxp, hp = W * (cx + 0.1 * (p[8 + j] - 0.5)), H * hh * (0.8 + 0.4 * p[11 + j])
        d.polygon([(cxp - W * 0.35, base), (cxp + W * 0.35, base), (cxp, base - hp)], fill=col)
        d.polygon([(cxp - W * 0.06, base - hp * 0.8), (cxp + W * 0.06, base - hp * 0.8), (cxp, base - hp)],
                  fill=(245, 245, 245))
    d.rectangle([0, base, W, H], fill=col)


def _m_house(d: ImageDraw.ImageDraw, p: np.ndarray, W: int, H: int, s: float) -> None:
    x, y = _xy(p, W, H)
    d.rectangle([x - 0.4 * s, y - 0.1 * s, x + 0.4 * s, y + 0.5 * s], fill=_c((225, 190, 130), p[4:7]))
    d.polygon([(x - 0.55 * s, y - 0.1 * s), (x + 0.55 * s, y - 0.1 * s), (x, y - 0.55 * s)],
              fill=_c((190, 50, 40), p[7:10]))
    d.rectangle([x - 0.1 * s, y + 0.2 * s, x + 0.1 * s, y + 0.5 * s], fill=(90, 55, 30))


def _m_crosshair(d: ImageDraw.ImageDraw, p: np.ndarray, W: int, H: int, s: float) -> None:
    x, y = _xy(p, W, H)
    col, w = _c((60, 70, 25), p[4:7], 15), max(1, int(s * 0.08))
    d.ellipse([x - s / 2, y - s / 2, x + s / 2, y + s / 2], outline=col, width=w)
    d.line([x - 0.7 * s, y, x + 0.7 * s, y], fill=col, width=w)
    d.line([x, y - 0.7 * s, x, y + 0.7 * s], fill=col, width=w)


def _m_notes(d: ImageDraw.ImageDraw, p: np.ndarray, W: int, H: int, s: float) -> None:
    x, y = _xy(p, W, H)
    col, w = _c((235, 190, 50), p[4:7]), max(1, int(s * 0.08))
    for dx, dy in ((-0.25, 0.15), (0.25, 0.0)):
        hx, hy = x + dx * s, y + dy * s + 0.3 * s
        d.ellipse([hx - 0.14 * s, hy - 0.1 * s, hx + 0.14 * s, hy + 0.1 * s], fill=col)
        d.line([hx + 0.12 * s, hy, hx + 0.12 * s, hy - 0.6 * s], fill=col, width=w)
    d.line([x - 0.13 * s, y - 0.15 * s, x + 0.37 * s, y - 0.3 * s], fill=col, width=2 * w)


def _m_drips(d: ImageDraw.ImageDraw, p: np.ndarray, W: int, H: int, s: float) -> None:
    col = _c((170, 0, 0), p[4:7], 20)
    w = max(1.5, W * 0.05)
    d.rectangle([0, 0, W, H * 0.04], fill=col)
    for j in range(5):
        x, ln = W * (0.08 + 0.2 * j + 0.1 * (p[8 + j] - 0.5)), H * (0.08 + 0.3 * p[j + 1])
        d.rectangle([x - w / 2, 0, x + w / 2, ln], fill=col)
        d.ellipse([x - w, ln - w, x + w, ln + w], fill=col)


def _m_planet(d: ImageDraw.ImageDraw, p: np.ndarray, W: int, H: int, s: float) -> None:
    for j in range(6):  # stars
        sx, sy = W * p[(2 + 2 * j) % _NP], H * 0.6 * p[(3 + 2 * j) % _NP]
        d.rectangle([sx, sy, sx + max(1.0, W / 80), sy + max(1.0, W / 80)], fill=(255, 255, 255))
    x, y = _xy(p, W, H)
    d.ellipse([x - 0.75 * s, y - 0.18 * s, x + 0.75 * s, y + 0.18 * s], outline=(230, 230, 255),
              width=max(1, int(s * 0.07)))
    d.ellipse([x - 0.4 * s, y - 0.4 * s, x + 0.4 * s, y + 0.4 * s], fill=_c((80, 205, 235), p[4:7]))


def _m_moon(d: ImageDraw.ImageDraw, p: np.ndarray, W: int, H: int, s: float, bg: tuple[int, int, int]) -> None:
    x, y = _xy(p, W, H, 0.08, 0.5)
    d.ellipse([x - s / 2, y - s / 2, x + s / 2, y + s / 2], fill=_c((245, 235, 150), p[4:7], 10))
    d.ellipse([x - s / 2 + 0.3 * s, y - s / 2 - 0.1 * s, x + s / 2 + 0.3 * s, y + s / 2 - 0.1 * s], fill=bg)
    for j in range(3):  # sparkles
        sx, sy, r = W * p[8 + j], H * (0.3 + 0.5 * p[11 + j]), max(1.5, s * 0.12)
        d.polygon([(sx, sy - r), (sx + r / 3, sy), (sx, sy + r), (sx - r / 3, sy)], fill=(255, 250, 210))


def _m_western(d: ImageDraw.ImageDraw, p: np.ndarray, W: int, H: int, s: float) -> None:
    x, y = W * (0.2 + 0.6 * p[0]), H * (0.1 + 0.2 * p[1])
    d.ellipse([x - 0.45 * s, y - 0.45 * s, x + 0.45 * s, y + 0.45 * s], fill=_c((250, 170, 50), p[4:7]))
    cx, base = W * (0.15 + 0.7 * p[2]), H * 0.92
    w, h, col = max(2.0, 0.16 * s), 1.2 * s, _c((45, 110, 45), p[7:10])
    d.rectangle([cx - w / 2, base - h, cx + w / 2, base], fill=col)
    d.rectangle([cx - 0.45 * s, base - 0.65 * h, cx - w / 2, base - 0.65 * h + w], fill=col)
    d.rectangle([cx - 0.45 * s, base - 0.95 * h, cx - 0.45 * s + w, base - 0.65 * h + w], fill=col)
    d.rectangle([cx + w / 2, base - 0.45 * h, cx + 0.4 * s, base - 0.45 * h + w], fill=col)
    d.rectangle([cx + 0.4 * s - w, base - 0.8 * h, cx + 0.4 * s, base - 0.45 * h + w], fill=col)


def _m_keyhole(d: ImageDraw.ImageDraw, p: np.ndarray, W: int, H: int, s: float) -> None:
    x, y = _xy(p, W, H)
    d.ellipse([x - 0.5 * s, y - 0.5 * s, x + 0.5 * s, y + 0.5 * s], fill=_c((200, 165, 85), p[4:7], 15))
    d.ellipse([x - 0.15 * s, y - 0.3 * s, x + 0.15 * s, y], fill=(10, 10, 10))
    d.polygon([(x - 0.07 * s, y - 0.1 * s), (x + 0.07 * s, y - 0.1 * s), (x + 0.16 * s, y + 0.35 * s),
               (x - 0.16 * s, y + 0.35 * s)], fill=(10, 10, 10))


def _m_target(d: ImageDraw.ImageDraw, p: np.ndarray, W: int, H: int, s: float) -> None:
    x, y = _xy(p, W, H)
    for j, col in enumerate(((235, 235, 235), (200, 20, 20), (235, 235, 235), (200, 20, 20))):
        r = 0.5 * s * (1 - j / 4)
        d.ellipse([x - r, y - r, x + r, y + r], fill=col)


_MOTIFS: dict[str, Callable[..., None]] = {
    "Drama": _m_teardrop, "Comedy": _m_smiley, "Romance": _m_heart, "Crime": _m_tape,
    "Action": _m_explosion, "Adventure": _m_mountains, "Family": _m_house, "War": _m_crosshair,
    "Musical": _m_notes, "Horror": _m_drips, "Sci-Fi": _m_planet, "Fantasy": _m_moon,
    "Western": _m_western, "Mystery": _m_keyhole, "Thriller": _m_target,
}
# Order in which motifs are drawn (background scenery first, small icons last).
_MOTIF_ORDER = ("Adventure", "Western", "Horror", "Crime", "Sci-Fi", "Fantasy", "Drama", "Comedy",
                "Romance", "Action", "Family", "War", "Musical", "Mystery", "Thriller")


@lru_cache(maxsize=16)
def _font(px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=px)       # scalable default font (Pillow >= 10.1 + FreeType)
    except (TypeError, OSError, ImportError):      # older Pillow / no FreeType: fixed bitmap font
        return ImageFont.load_default()


@lru_cache(maxsize=4096)
def _title_mask(title: str, px: int) -> np.ndarray:
    """Glyph coverage of ``title`` at font size ``px``: float32 (h, w) in [0, 1], read-only."""
    font = _font(px)
    left, top, right, bottom = font.getbbox(title)
    im = Image.new("L", (max(1, right), max(1, bottom)), 0)
    ImageDraw.Draw(im).text((0, 0), title, fill=255, font=font)
    m = np.asarray(im, dtype=np.float32) / 255.0
    m.setflags(write=False)
    return m


def render_posters(image_cue: np.ndarray, rng: np.random.Generator, size: int = 256,
                   titles: list[str] | None = None, config: CueConfig = CueConfig()) -> np.ndarray:
    """Posters from image cue bits (n, 23) bool -> uint8 (n, size, poster_width(size), 3) RGB.

    The picture depends only on ``image_cue`` (and ``titles``, drawn in a band) plus ``rng``; every
    random number is drawn in a fixed shape, so two calls with equal cues and equally seeded ``rng``
    give identical pixels. Steps: background gradient (a palette genre's colours, or a random muted
    colour) -> genre motifs (PIL) -> title -> global tones (Western sepia, Film-Noir greyscale +
    blinds, Horror darkening) -> brightness jitter -> Animation posterisation, or film grain."""
    cue = np.asarray(image_cue).astype(bool)
    if cue.ndim != 2 or cue.shape[1] != G:
        raise DataError(f"render_posters: expected image_cue of shape (n, {G}), got {cue.shape}")
    if int(size) < 16:
        raise DataError(f"render_posters: expected size (poster height) >= 16, got {size}")
    n, H, W = cue.shape[0], int(size), poster_width(int(size))
    if titles is not None and len(titles) != n:
        raise DataError(f"render_posters: expected {n} titles, got {len(titles)}")
    # ---- fixed-shape random draws ------------------------------------------------------------
    neutral = rng.random((n, 2, 3)).astype(np.float32)
    pal_key = rng.random((n, len(_PALETTES)))
    pal_jit = rng.normal(0.0, 12.0, (n, 2, 3)).astype(np.float32)
    params = rng.random((n, G, _NP))
    scale = rng.uniform(0.30, 0.45, (n, G)) * W
    title_pos = rng.random((n, 2))
    bright = rng.uniform(0.85, 1.15, n).astype(np.float32)
    phase = rng.random(n).astype(np.float32)
    grain = rng.standard_normal((n, H, W, 3), dtype=np.float32) if config.pixel_noise > 0 else None
    # ---- background: vertical gradient --------------------------------------------------------
    # neutral: random hue, muted -> two shades of one colour; palette genres override it
    hue = neutral[:, 0, :1] * 6.0
    base = np.clip(np.abs((hue + np.array([0.0, 4.0, 2.0], np.float32)) % 6.0 - 3.0) - 1.0, 0, 1)
    sat, val = 0.15 + 0.35 * neutral[:, 0, 1:2], 0.35 + 0.45 * neutral[:, 0, 2:3]
    top = 255.0 * val * (1 - sat + sat * base)
    bot = top * (0.55 + 0.4 * neutral[:, 1, :1])
    cols = np.stack([top, bot], 1)                                     # (n, 2, 3)
    pal_on = cue[:, _PAL_IDX]                                          # (n, P)
    has_pal = pal_on.any(1)
    pick = np.argmax(np.where(pal_on, pal_key, -1.0), axis=1)          # a random active palette genre
    cols = np.where(has_pal[:, None, None], _PAL_COLS[pick] + pal_jit, cols)
    t = np.linspace(0.0, 1.0, H, dtype=np.float32)[None, :, None, None]
    img = cols[:, None, None, 0, :] * (1 - t) + cols[:, None, None, 1, :] * t
    img = np.ascontiguousarray(np.broadcast_to(np.clip(img, 0, 255), (n, H, W, 3))).astype(np.uint8)
    # ---- motifs and title (PIL, a few primitives per poster) ----------------------------------
    font_px = max(7, H // 16)
    for i in range(n):
        pil = Image.fromarray(img[i])
        d = ImageDraw.Draw(pil)
        for g in _MOTIF_ORDER:
            gi = GI[g]
            if cue[i, gi]:
                if g == "Fantasy":
                    _m_moon(d, params[i, gi], W, H, scale[i, gi], tuple(int(v) for v in img[i, 0, 0]))
                else:
                    _MOTIFS[g](d, params[i, gi], W, H, scale[i, gi])
        img[i] = np.asarray(pil)
        if titles is not None and titles[i]:
            # white title with a black drop shadow, composited from a cached glyph mask
            mask = _title_mask(titles[i], font_px)
            ty = int(H * (0.02 if title_pos[i, 0] < 0.5 else 0.88))
            tx = int(W * 0.04 * title_pos[i, 1])
            for off, col in ((1, 0.0), (0, 250.0)):
                y0, x0 = ty + off, tx + off
                h, w = min(mask.shape[0], H - y0), min(mask.shape[1], W - x0)
                if h > 0 and w > 0:
                    a = mask[:h, :w, None]
                    patch = img[i, y0:y0 + h, x0:x0 + w].astype(np.float32)
                    img[i, y0:y0 + h, x0:x0 + w] = (patch * (1 - a) + col * a + 0.5).astype(np.uint8)
    # ---- global tone effects (vectorised over the posters that have them) --------------------
    x = img.astype(np.float32)
    to_lum = np.array([0.299, 0.587, 0.114], np.float32)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    west = cue[:, GI["Western"]]
    if west.any():
        sepia = (x[west] @ to_lum)[..., None] * np.array([1.07, 0.82, 0.55], np.float32) + np.array([20, 8, 0], np.float32)
        x[west] = 0.25 * x[west] + 0.75 * sepia
    noir = cue[:, GI["Film-Noir"]]
    if noir.any():
        stripes = (((xx * 0.6 + yy) / max(H / 9.0, 2.0))[None] + phase[noir, None, None]) % 1.0 < 0.4
        gray = np.clip(((x[noir] @ to_lum) - 110.0) * 1.7 + 110.0, 0, 255) * np.where(stripes, 0.4, 1.0)
        x[noir] = gray[..., None]
    horror = cue[:, GI["Horror"]]
    if horror.any():
        vign = 1.0 - ((xx / W - 0.5) ** 2 + (yy / H - 0.5) ** 2)
        x[horror] *= 0.7 * vign[None, ..., None]
    x *= bright[:, None, None, None]
    anim = cue[:, GI["Animation"]]
    if anim.any():
        a = x[anim]
        m = a.mean(-1, keepdims=True)
        a = np.clip(m + (a - m) * 1.8, 0, 255)                          # saturate
        x[anim] = np.round(a / 85.0) * 85.0                             # 4 flat levels per channel
    if grain is not None:
        grain[anim] = 0.0                                               # cartoons are flat: no grain
        x += config.pixel_noise * grain
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------------

_TEXT_GENRES = tuple(g for g in MMIMDB_GENRES if g in _GENRE_SENTENCES)


def make_plots(text_cue: np.ndarray, rng: np.random.Generator) -> list[list[str]]:
    """Plot variants from text cue bits (n, 23) bool -> n lists of 1-3 strings of distinct lengths.

    The longest variant is a neutral opener, one sentence per genre whose text cue is on, and 1-3
    neutral sentences, in random order after the opener; shorter variants are its first sentences
    (like a "plot outline"). The list order is random, so a loader must pick the longest."""
    cue = np.asarray(text_cue).astype(bool)
    if cue.ndim != 2 or cue.shape[1] != G:
        raise DataError(f"make_plots: expected text_cue of shape (n, {G}), got {cue.shape}")
    n = cue.shape[0]
    # fixed-shape draws: names etc. (n, 8) ints, per-genre template choice (n, 23), order keys
    ints = rng.integers(0, 1 << 30, size=(n, 10))
    tmpl = rng.integers(0, 3, size=(n, G))
    order = rng.random((n, G + 4))
    n_neutral = rng.integers(1, 4, size=n)
    n_var = rng.integers(1, 4, size=n)
    var_cut = rng.random((n, 2))
    var_perm = rng.random((n, 3))
    plots: list[list[str]] = []
    for i in range(n):
        r = ints[i]
        a = _FIRST[r[0] % len(_FIRST)]
        b = _FIRST[(r[0] + 1 + r[1] % (len(_FIRST) - 1)) % len(_FIRST)]   # a different first name
        f = {"A": a, "B": b, "L": _LAST[r[2] % len(_LAST)], "occ": _OCCS[r[3] % len(_OCCS)],
             "place": _PLACES[r[4] % len(_PLACES)], "obj": _OBJECTS[r[5] % len(_OBJECTS)],
             "act": _ACTS[r[6] % len(_ACTS)], "season": _SEASONS[r[7] % len(_SEASONS)]}
        opener = _NEUTRAL_OPENERS[r[8] % len(_NEUTRAL_OPENERS)].format(**f)
        body = [_GENRE_SENTENCES[g][tmpl[i, GI[g]]].format(**f) for g in _TEXT_GENRES if cue[i, GI[g]]]
        k0 = r[9] % len(_NEUTRAL)
        body += [_NEUTRAL[(k0 + 3 * j) % len(_NEUTRAL)].format(**f) for j in range(n_neutral[i])]
        body = [body[j] for j in np.argsort(order[i, :len(body)])]
        sents = [opener] + body
        full = " ".join(sents)
        # shorter variants: prefixes with fewer sentences (strictly shorter, so lengths differ)
        cuts = sorted({1 + int(var_cut[i, j] * (len(sents) - 1)) for j in range(n_var[i] - 1)})
        variants = [" ".join(sents[:c]) for c in cuts if c < len(sents)] + [full]
        perm = np.argsort(var_perm[i, :len(variants)])
        plots.append([variants[j] for j in perm])
    return plots


_TOKEN = re.compile(r"[a-z]+|[0-9]+")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens, numbers -> "N" (the GMU normalisation, without punctuation tokens)."""
    return ["N" if t[0].isdigit() else t for t in _TOKEN.findall(text.lower())]


@lru_cache(maxsize=65536)
def _word_vector(word: str, dim: int = FEATURE_DIM) -> np.ndarray:
    # a fixed pseudo-random unit-variance vector per word, seeded by a hash of the word itself,
    # so it is the same in every process, run and dataset size (stand-in for word2vec)
    h = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
    v = np.random.default_rng(h).standard_normal(dim).astype(np.float32)
    v.setflags(write=False)
    return v


def text_features(texts: list[str], dim: int = FEATURE_DIM) -> np.ndarray:
    """Mean word vector of each text: float32 (n, dim). Word vectors are fixed Gaussian vectors from a
    hash of the word (a weight-free stand-in for GMU's mean GoogleNews word2vec); empty text -> 0."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    toks = [tokenize(t) for t in texts]
    vocab = sorted({w for ts in toks for w in ts})
    if not vocab:
        return out
    index = {w: j for j, w in enumerate(vocab)}
    V = np.stack([_word_vector(w, dim) for w in vocab])               # (|vocab|, dim)
    doc = np.concatenate([np.full(len(ts), i) for i, ts in enumerate(toks)]).astype(np.int64)
    wid = np.fromiter((index[w] for ts in toks for w in ts), dtype=np.int64, count=doc.size)
    # bag of words (n, |vocab|) via one bincount over flat (doc, word) cells
    counts = np.bincount(doc * len(vocab) + wid, minlength=len(texts) * len(vocab))
    counts = counts.reshape(len(texts), len(vocab)).astype(np.float32)
    lens = counts.sum(1, keepdims=True)
    return np.divide(counts @ V, lens, out=out, where=lens > 0)


# --------------------------------------------------------------------------------------------------
# Split and writer
# --------------------------------------------------------------------------------------------------


def split_sizes(n: int) -> dict[str, int]:
    """Split sizes in the 15552 / 2608 / 7799 proportions (same rounding as the loader's ranges)."""
    total = sum(MMIMDB_SPLIT_SIZES.values())
    n_train = int(round(n * MMIMDB_SPLIT_SIZES["train"] / total))
    n_dev = int(round(n * MMIMDB_SPLIT_SIZES["dev"] / total))
    return {"train": n_train, "dev": n_dev, "test": n - n_train - n_dev}


def split_indices(labels: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """GMU-style stratified split of samples with labels (n, 23): genres from rarest to most common,
    each genre's still-unassigned samples are permuted and dealt to test / dev / train. Unlike GMU's
    per-genre ceil, the number dealt is the change in round(cumulative * fraction), so the totals are
    exactly :func:`split_sizes` even for small n. Returns sorted int64 index arrays per split."""
    y = np.asarray(labels).astype(bool)
    n = y.shape[0]
    sizes = split_sizes(n)
    frac = {k: v / n for k, v in sizes.items()}
    assigned = np.zeros(n, dtype=bool)
    out: dict[str, list[np.ndarray]] = {"train": [], "dev": [], "test": []}
    done = {"test": 0, "dev": 0}
    seen = 0
    groups = [np.flatnonzero(y[:, g]) for g in np.argsort(y.sum(0), kind="stable")]
    groups.append(np.arange(n))  # anything without a label (not produced here) goes last
    for idx in groups:
        idx = rng.permutation(idx[~assigned[idx]])
        if idx.size == 0:
            continue
        assigned[idx] = True
        seen += idx.size
        n_test = int(round(seen * frac["test"])) - done["test"] if seen < n else sizes["test"] - done["test"]
        n_dev = int(round(seen * frac["dev"])) - done["dev"] if seen < n else sizes["dev"] - done["dev"]
        n_test = min(max(n_test, 0), idx.size)
        n_dev = min(max(n_dev, 0), idx.size - n_test)
        out["test"].append(idx[:n_test])
        out["dev"].append(idx[n_test:n_test + n_dev])
        out["train"].append(idx[n_test + n_dev:])
        done["test"] += n_test
        done["dev"] += n_dev
    res = {k: np.sort(np.concatenate(v)).astype(np.int64) if v else np.zeros(0, np.int64) for k, v in out.items()}
    # Safety net: a tiny last group could not absorb a carried deficit; move the surplus (highest
    # indices of over-full splits) to under-full ones so the totals are exact in every case.
    surplus = np.concatenate([res[k][sizes[k]:] for k in res])
    if surplus.size:
        res = {k: res[k][:sizes[k]] for k in res}
        for k in res:
            need = sizes[k] - res[k].size
            res[k], surplus = np.sort(np.concatenate([res[k], surplus[:need]])), surplus[need:]
    return res


def _fuel_split_attr(sizes: dict[str, int], sources: tuple[str, ...]) -> np.ndarray:
    """A Fuel-style ``split`` attribute: one row (split, source, start, stop, indices, available,
    comment) per split and source, as ``H5PYDataset.create_split_array`` builds it."""
    import h5py

    dt = np.dtype([("split", "S5"), ("source", "S15"), ("start", np.int64), ("stop", np.int64),
                   ("indices", h5py.special_dtype(ref=h5py.Reference)), ("available", np.bool_),
                   ("comment", "S1")])
    rows, start = [], 0
    for name in ("train", "dev", "test"):
        stop = start + sizes[name]
        rows += [(name.encode(), s.encode(), start, stop, h5py.Reference(), True, b".") for s in sources]
        start = stop
    return np.array(rows, dtype=dt)


def _ids(n: int) -> list[str]:
    return [f"{i + 1:07d}" for i in range(n)]


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *key]))


def write_mmimdb(root: str | Path, n: int, size: int = 256, seed: int = 0, hdf5: bool = True, *,
                 config: CueConfig = CueConfig(), jpeg_quality: int = 90) -> Path:
    """Write ``n`` synthetic MM-IMDb movies under ``root`` and return ``root``.

    Layout: ``dataset/{id}.jpeg`` (size x poster_width(size) RGB poster), ``dataset/{id}.json``
    (``plot``, ``genres``, ``title``, ``director``, ``year``, ``imdb_id``), ``split.json``
    (GMU-style stratified 60/10/30 split), ``meta.json`` (``synthetic: true``, seed, counts,
    GENRE_CUES, ...), ``synthetic_cues.npz`` (``ids`` (n,) str, ``labels`` / ``image_cue`` /
    ``text_cue`` (n, 23) bool) and, when ``hdf5`` and h5py is importable,
    ``multimodal_imdb.hdf5`` in the GMU / MultiBench schema, rows ordered train, dev, test:
    ``features`` (n,300) float32 = :func:`text_features` of the longest plot, ``images``
    (n,3,size,W) int32 = the decoded JPEG posters, ``genres`` (n,23) int32, ``imdb_ids`` (n,) S7,
    plus a Fuel-style ``split`` attribute. Ids are "0000001" .. 7-digit strings. Every file is
    written atomically; the output is a pure function of (n, size, seed, config)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 10 or n > 9_999_999:
        raise DataError(f"write_mmimdb: expected an integer n in 10..9999999 (every split non-empty), got {n!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise DataError(f"write_mmimdb: expected an integer size (poster height) >= 16, got {size!r}")
    n, size = int(n), int(size)
    root = Path(root)
    data_dir = root / "dataset"
    data_dir.mkdir(parents=True, exist_ok=True)
    H, W = size, poster_width(size)

    # ---- labels, cues, split and metadata (whole dataset, cheap) ------------------------------
    labels = sample_genre_sets(n, _rng(seed, 1))
    img_cue, txt_cue = sample_cues(labels, _rng(seed, 2), config)
    split = split_indices(labels, _rng(seed, 3))
    ids = _ids(n)
    m = _rng(seed, 4)
    t_form, t_adj, t_noun = m.integers(0, 3, n), m.integers(0, len(_TITLE_ADJ), n), m.integers(0, len(_TITLE_NOUN), n)
    d_first, d_last = m.integers(0, len(_FIRST), n), m.integers(0, len(_LAST), n)
    years = m.integers(1940, 2015, n)
    extra = m.random(n) < config.p_extra_genre
    extra_pick = m.integers(0, len(EXTRA_GENRES), n)
    genre_perm = m.random((n, G + 1))
    titles = [("The {} {}", "{} {}", "{1} of the {0} Sun")[f].format(_TITLE_ADJ[a], _TITLE_NOUN[b])
              for f, a, b in zip(t_form, t_adj, t_noun)]
    order = np.concatenate([split["train"], split["dev"], split["test"]])   # hdf5 row order

    h5py: Any = None
    if hdf5:
        try:
            import h5py  # noqa: F811  (optional dependency)
        except ImportError:
            h5py = None

    def generate(h5: Any) -> None:
        if h5 is not None:
            feats = h5.create_dataset("features", (n, FEATURE_DIM), dtype="float32")
            images = h5.create_dataset("images", (n, 3, H, W), dtype="int32",
                                       chunks=(1, 3, H, W), compression="lzf")
            genres = h5.create_dataset("genres", (n, G), dtype="int32")
            h5ids = h5.create_dataset("imdb_ids", (n,), dtype="S7")
            genres[...] = labels[order].astype(np.int32)
            h5ids[...] = np.asarray([ids[i] for i in order], dtype="S7")
            genres.attrs["target_names"] = json.dumps(list(MMIMDB_GENRES))
            for ds, names in ((feats, ("batch", "features")), (images, ("batch", "channel", "height", "width")),
                              (genres, ("batch", "classes")), (h5ids, ("batch",))):
                for j, nm in enumerate(names):
                    ds.dims[j].label = nm
            h5.attrs["split"] = _fuel_split_attr(split_sizes(n), ("features", "images", "genres", "imdb_ids"))
            h5.attrs["synthetic"] = True
        for c, start in enumerate(range(0, n, _CHUNK)):
            rows = order[start:start + _CHUNK]
            posters = render_posters(img_cue[rows], _rng(seed, 5, c), size, [titles[i] for i in rows], config)
            plots = make_plots(txt_cue[rows], _rng(seed, 6, c))
            decoded = np.empty((len(rows), H, W, 3), np.uint8) if h5 is not None else None
            for j, i in enumerate(rows):
                buf = io.BytesIO()
                Image.fromarray(posters[j]).save(buf, format="JPEG", quality=jpeg_quality)
                data = buf.getvalue()
                atomic_write(data_dir / f"{ids[i]}.jpeg", lambda tmp, b=data: Path(tmp).write_bytes(b))
                if decoded is not None:
                    decoded[j] = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
                names = [MMIMDB_GENRES[g] for g in np.flatnonzero(labels[i])]
                if extra[i]:
                    names.append(EXTRA_GENRES[extra_pick[i]])
                names = [names[k] for k in np.argsort(genre_perm[i, :len(names)])]
                meta = {"title": titles[i], "year": int(years[i]),
                        "director": f"{_FIRST[d_first[i]]} {_LAST[d_last[i]]}",
                        "genres": names, "plot": plots[j], "imdb_id": ids[i]}
                text = json.dumps(meta, indent=1)
                atomic_write(data_dir / f"{ids[i]}.json",
                             lambda tmp, s=text: Path(tmp).write_text(s, encoding="utf-8"))
            if h5 is not None:
                sl = slice(start, start + len(rows))
                feats[sl] = text_features([max(p, key=len) for p in plots])
                images[sl] = decoded.transpose(0, 3, 1, 2).astype(np.int32)

    if h5py is not None:
        atomic_write(root / "multimodal_imdb.hdf5", lambda tmp: _with_h5(h5py, tmp, generate))
    else:
        generate(None)

    atomic_write_json(root / "split.json", {k: [ids[i] for i in v] for k, v in split.items()})

    def _npz(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, ids=np.asarray(ids), labels=labels, image_cue=img_cue, text_cue=txt_cue)

    atomic_write(root / "synthetic_cues.npz", _npz)
    stats = load_genre_stats()
    atomic_write_json(root / "meta.json", {
        "synthetic": True,
        "generator": "mango_lite.datasets.synth.mmimdb.write_mmimdb",
        "seed": int(seed), "n": n, "poster_size_hw": [H, W],
        "counts": {k: int(v.size) for k, v in split.items()},
        "genre_counts": {g: int(labels[:, j].sum()) for j, g in enumerate(MMIMDB_GENRES)},
        "GENRE_CUES": GENRE_CUES, "cue_descriptions": CUE_DESCRIPTIONS, "cue_config": asdict(config),
        "hdf5": h5py is not None,
        "hdf5_features": "mean of fixed hash-seeded Gaussian word vectors (300-d) over the longest plot",
        "hdf5_images": "decoded JPEG posters, int32 (n, 3, H, W), rows train then dev then test",
        "genre_statistics": stats["source"],
    })
    return root


def _with_h5(h5py: Any, tmp: str, fill: Callable[[Any], None]) -> None:
    with h5py.File(tmp, "w") as h5:
        fill(h5)
