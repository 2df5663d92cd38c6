# %% [markdown]
# # 06 · Multimodal image-to-image translation (Taskonomy stand-in): MANGO against four baselines
#
# > **Prerequisites:** notebooks 00, 01 and 05 (the same training harness). **Runtime:** {{runtime}} (a lab-length run: six models of one pair, two at a time, for 40 % of the preset's epochs). `MANGO_LITE_PAIRS=shade_texture_to_rgb,rgb_edge_to_depth MANGO_LITE_EPOCHS=12` trains two pairs on the full schedule instead. **Notation:** the box in notebook 01, section 2. **Exercises:** 2, marked *Exercise 6.x* (solutions in this version; students get `notebooks/student/`).
#
# **Goal.** Reproduce the *protocol* of the paper's Table 2 at laptop scale. The task is to predict one
# Taskonomy domain from two others. We train MANGO, three fusion baselines and both unimodal models
# on the same data with the same encoders and heads, and measure them with the paper's metrics.
# We also look at what the models produce and what MANGO's attention does. Finally we check which input
# each prediction relies on.
#
# **Read this first: what these numbers are and are not.**
# * The data are a **generated stand-in** in the exact Taskonomy sample-repository layout
#   (`mango_lite.datasets.synth`). The real Taskonomy is not shipped with mango_lite or downloaded by it.
#   Numbers below describe the stand-in, at the preset's image size, not the real data at 256 px.
# * Our models are trained with an **L1 task loss and no adversarial loss** (MANGO adds its flow's NLL
#   term, which trains the flow, section 1; TokenFusion its small score-sparsity penalty). TokenFusion /
#   CEN / MANGO use the pix2pix recipe, i.e. L1 (weight 100) plus an adversarial loss. No discriminator is
#   used here, which keeps CPU runs small and stable. Without it the models produce blurrier, per-pixel
#   "median" images, and that hurts FID/KID in particular.
# * FID/KID need InceptionV3 weights, which mango_lite never downloads. RGB-target FID/KID below use a
#   **proxy feature extractor**: a fixed, randomly initialised 4-layer CNN. They compare our runs with
#   each other and are **not comparable to the paper's numbers**.
# * This notebook trains one of the five pairs at the preset's sizes for **40 % of the preset's epochs** (5 of 12 at `cpu`), so that
#   it fits a lab session. The main job (`python -m mango_lite reproduce`) trains all five pairs on the full
#   schedule; section 5 reads its committed runs and shows what the rest of the schedule buys.
#
# Arc: the task → the data → train six models on one pair → learning curves → metric tables (the main job's
# five pairs, paper beside ours) → predictions vs ground truth → attention maps and modality contributions → a browser
# over the held-out views → what was measured, frankly.

# %% [markdown]
# ## 1. The task and its metrics
#
# The paper's Table 2 uses the Taskonomy subset of CEN / TokenFusion: 1,000 training and 500
# validation views of one building. It has five translation pairs (inputs → target):
#
# | pair | inputs | target | metrics in the paper (all ↓) |
# |---|---|---|---|
# | Shade+Texture→RGB | `reshading`, `edge_texture` | `rgb` | FID, KID×100 |
# | Depth+Normal→RGB | `depth_euclidean`, `normal` | `rgb` | FID, KID×100 |
# | RGB+Shade→Normal | `rgb`, `reshading` | `normal` | MAE×10, "MSE"×10 |
# | RGB+Normal→Shade | `rgb`, `normal` | `reshading` | MAE×10, "MSE"×10 |
# | RGB+Edge→Depth | `rgb`, `edge_texture` | `depth_euclidean` | MAE×10, "MSE"×10 |
#
# We train **Shade+Texture→RGB**, the paper's headline pair (it is also in its qualitative figure), and
# read the other four from the main job (section 5). `MANGO_LITE_PAIRS` picks other pairs, e.g.
# `rgb_edge_to_depth` (a geometric target) or `shade_texture_to_rgb,rgb_edge_to_depth` (both).
# Every image is scaled to $[-1,1]$, as in TokenFusion's
# loader (mean 0.5, std 0.5). Errors are measured on that scale, over all $N$ pixels and channels of the
# split they are measured on:
#
# $$\mathrm{MAE}=\frac1N\sum_i|\hat y_i-y_i|,\qquad \mathrm{RMSE}=\sqrt{\frac1N\sum_i(\hat y_i-y_i)^2}.$$
#
# The paper prints MAE×10 and "MSE"×10. TokenFusion's code prints the root of the mean MSE under
# that name, so we report RMSE×10 beside it. For RGB targets, FID compares Gaussian fits of the
# features $\phi$ of predicted and real images:
#
# $$\mathrm{FID}=\lVert\mu_p-\mu_r\rVert^2+\operatorname{tr}\big(\Sigma_p+\Sigma_r-2(\Sigma_p\Sigma_r)^{1/2}\big).$$
#
# KID is the unbiased MMD² with the kernel $k(x,y)=(x^\top y/d+1)^3$, printed ×100. Here $\phi$ is the
# proxy CNN (`mango_lite.metrics.RandomConvFeatures`, 64-d), not Inception.
#
# **The six models** (`mango_lite.models.build_model`) share one design. Each input goes through a
# convolutional encoder (stride 4) to a $C$-channel feature map. A fusion module runs at `scales`
# resolutions, and a translation head (upsampling, `tanh`) produces the target in $[-1,1]$:
# * `mango`: the two-modality multiscale MANGO flow (invertible cross-attention, 8 ICA layers per
#   block: 2 MMCA, 2×2 IMCA, 2 LICA). Its loss adds $\lambda\cdot$ the flow's bits/dim (the paper's
#   NLL term) to the L1 loss; as in notebook 05, that term trains the flow only (its gradient stops at
#   the encoder features).
# * `concat`: the two feature maps are concatenated, then convolution blocks.
# * `tokenfusion`: TokenFusion's token scoring and exchange between modalities.
# * `crossattn`: bidirectional cross-attention between the two token sets.
# * The two **unimodal** models, named after their input domain, see only one input.

# %%
import os
from pathlib import Path

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display
from torch.utils.data import Subset

from mango_lite import exercises
from mango_lite.datasets import TASKONOMY_DOMAINS, Taskonomy, translation_transforms
from mango_lite.models import attention_maps, cross_modal_share, modality_contribution
from mango_lite.notebook import lab_epochs, start_notebook
from mango_lite.training import (
    FUSION_MODELS, PAIRS, build_task_data, evaluate_checkpoint, latest_checkpoint, model_names, plan_runs, prepare_data,
    resolve_pair, train_models,
)
from mango_lite.training.tasks import load_model, predict_samples
from mango_lite.viz import plot_attention, plot_history, plot_results, translation_grid
from mango_lite.viz import data as vd
from mango_lite.viz import reproduction as rx
from mango_lite.viz.translation import (
    ablation_grid, ablation_maps, attention_row_maps, contrast_stretch, median_baseline, table2_comparison,
    translation_browser,
)
from mango_lite.viz.segmentation import full_row

# theme, one torch thread on small CPU-only machines, seed 0, preset from MANGO_LITE_PRESET, device, and a
# temporary folder for the run folders (removed at the end)
session = start_notebook("06_image_translation")
preset, device, WORK = session.preset, session.device, session.work
# the pair of section 1; MANGO_LITE_PAIRS=rgb_edge_to_depth (any pair names, comma-separated) trains others
RUN_PAIRS = [resolve_pair(p.strip()).name for p in
             os.environ.get("MANGO_LITE_PAIRS", "shade_texture_to_rgb").split(",") if p.strip()]
# a lab-length run: 40 % of the preset's epochs, so that six models fit a lab session with a margin
# (MANGO_LITE_EPOCHS=12 for the full cpu schedule); the cosine schedule is laid over these epochs, so it is a
# shorter run, not the beginning of the long one
EPOCHS = lab_epochs(preset, fraction=0.4)
DATA_CACHE = Path(os.environ.get("MANGO_LITE_DATA_CACHE", WORK / "data"))
TAG = "generated stand-in"
DEV = session.device_label
print(f"pairs {RUN_PAIRS}, {EPOCHS} of the preset's {preset.epochs} epochs, lr={preset.lr}, "
      f"flow weight λ={preset.flow_weight_for('translation')}")

# %% [markdown]
# ## 2. The data: a Taskonomy stand-in with every domain
#
# `prepare_data` generates $n_\text{train}+n_\text{val}$ views. It splits them 2:1, as in the real
# 1000/500 split, and writes them as `{domain}/point_P_view_V_domain_{domain}.png` with
# `train_domain.txt` / `val_domain.txt`. These are the files TokenFusion's `DatasetFromFolder` reads.
# The encodings are the real ones: 16-bit depth in 1/512 m, 127-centred normals, 16-bit edges.
# The `Taskonomy` loader applies TokenFusion's transforms (log depth / 11.1, edge scales, greyscale
# domains as one channel, $[-1,1]$). Pointed at the real sample repository, the same code reads the real data.
#
# All domains of a view come from **one** render of a procedurally generated room. That is what makes
# the pairs well-defined:
# * `rgb` is the scene lit by its own (tinted, several, shadow-casting) lights.
# * `reshading` is the same geometry under one canonical light with white albedo.
# * `edge_texture` is the edge magnitude of the albedo's luminance.
#
# So Shade+Texture→RGB must recover colour that neither input carries exactly. It has to guess it from
# where albedo edges are and how bright the surfaces are. RGB+Edge→Depth is geometric: RGB shows the
# layout, and texture edges say where the albedo changes (not where depth jumps).

# %%
info = prepare_data("taskonomy", preset, cache_dir=DATA_CACHE)
print(f"{info.source}, in the scratch folder   splits {info.meta.get('counts')}")
print(vd.layout_tree(info.root))
assert info.source == TAG and info.meta.get("synthetic") is True
scene = Taskonomy(info.root, "val", TASKONOMY_DOMAINS, transform=translation_transforms(preset.image_size, False))
fig = vd.taskonomy_grid([scene[0], scene[1]], TASKONOMY_DOMAINS, tag=TAG)
plt.show()

# %% [markdown]
# ## 3. Train MANGO, the baselines and the unimodal models
#
# `train_task` does everything for one model: it builds the model at the preset's sizes, trains with
# AdamW and a cosine schedule over the epochs asked for (seeded data order and augmentation), validates every epoch and
# checkpoints atomically. At the end it measures the last epoch's model on the held-out split and returns those
# metrics (`RunResult`).
# `train_models` calls it for the six models of a pair, several at once in worker processes on a CPU-only
# machine. All six models of a pair share one `TaskData`, so they see the same images in the same order.
# The augmentation is TokenFusion's: resize to 286/256 of the size, random crop, horizontal flip.

# %%
datas = {pair: build_task_data("translation", preset, pair=pair, info=info) for pair in RUN_PAIRS}
# what every table reports on: Taskonomy's own held-out split ("val"); the curves use d.val (section 4)
HELD = f"held-out {datas[RUN_PAIRS[0]].test_split}"
# per pair, its six runs at once, one per core (worker processes with one torch thread each; on a GPU one
# after another), the longest first; each run is seeded by seed 0 alone, so the numbers do not depend on how
# many run together
runs = {}
for pair in RUN_PAIRS:
    print(PAIRS[pair].label)
    done = train_models("translation", model_names("translation", pair), preset, WORK / "runs" / pair, datas[pair],
                        seed=0, epochs=EPOCHS, log=lambda line: print("   ", line))
    runs.update({(pair, model): r for model, r in done.items()})
live = {p: {m: runs[p, m].metrics for m in model_names("translation", p)} for p in RUN_PAIRS}  # pair -> model -> metrics
for (pair, model), r in runs.items():
    print(f"{PAIRS[pair].label:18s} {model:15s} {r.params / 1e6:5.2f} M params  {r.wall_time_s:6.1f} s  "
          f"{HELD} MAE×10 {r.metrics['mae_x10']:.3f}")
print(f"{len(runs)} runs, {sum(r.wall_time_s for r in runs.values()) / 60:.1f} min of training in all on {DEV} ({TAG} data)")

# %%
for (pair, model), r in runs.items():
    m = r.metrics
    assert r.epochs_run == EPOCHS and len(r.history) == EPOCHS, (pair, model, r.epochs_run)
    assert all(np.isfinite(v) for v in m.values()), (pair, model, m)
    assert 0.0 < m["mae"] <= 2.0 and m["mae"] <= m["rmse"] + 1e-9 <= 2.0 + 1e-9, (pair, model, m)  # RMSE >= MAE always
    if PAIRS[pair].rgb_target:
        assert m["fid_proxy"] > -1e-6, (pair, model, m["fid_proxy"])  # FID is a squared distance
    first, last = r.history[0]["train_task"], r.history[-1]["train_task"]
    if EPOCHS > 1:  # one epoch (MANGO_LITE_EPOCHS=1) has nothing to compare with
        assert last < first, f"{pair}/{model}: the training L1 did not decrease ({first:.4f} -> {last:.4f})"

# %% [markdown]
# ## 4. Learning curves
#
# Per pair: the MAE of every model after each epoch (`val_mae`), and the training L1 (the task part of the
# loss). **Which split.** The curves are measured on the *selection split*: a share of the training views held
# out of training, used to choose the best checkpoint and the project's defaults. The tables from section 5
# on are measured on the *held-out val split* (Taskonomy's own `val`), which informs no choice. At `quick`
# there is no selection split, and both are the held-out split.
#
# The dotted line is the **input-blind median** reference, on the curves' split: it always predicts the
# per-pixel median of the training targets, the best constant under L1. A model that does not go below it
# has not (yet) learned to use its inputs better than a per-pixel constant. For MANGO, the full history also
# shows the flow's bits/dim. That is the NLL term, weighted by $\lambda$ in the loss.

# %%
def targets_of(ds, key):
    """The target images of a dataset, stacked (N, C, H, W)."""
    return vd.stack_items(ds, [key])[key]


def train_targets(d):
    """The targets of the training views the models learn from, without augmentation."""
    ds = Taskonomy(info.root, "train", [d.target_key], transform=translation_transforms(preset.image_size, False))
    if isinstance(d.train, Subset):  # a selection split is held out of the training split
        ds = Subset(ds, d.train.indices)
    return targets_of(ds, d.target_key)


blind, blind_sel = {}, {}  # input-blind median on the held-out split (tables) and on the selection split (curves)
for pair in RUN_PAIRS:
    d = datas[pair]
    tr, te = train_targets(d), targets_of(d.test, d.target_key)
    blind[pair] = median_baseline(tr, te)
    blind_sel[pair] = blind[pair] if d.val is d.test else median_baseline(tr, targets_of(d.val, d.target_key))
    print(f"{PAIRS[pair].label}: target {d.target_key}, std {te.std().item():.3f} on the [-1, 1] scale ({HELD}); "
          f"input-blind median MAE×10 {blind[pair]['mae_x10']:.3f} on the {HELD} split"
          + ("" if d.val is d.test else f", {blind_sel[pair]['mae_x10']:.3f} on the selection split"))
data0 = datas[RUN_PAIRS[0]]
CURVES = "selection split" if data0.val is not data0.test else f"{HELD} split"  # what the curves are measured on
print(f"curves: {CURVES}, {len(data0.val)} views; tables: {HELD} split, {len(data0.test)} views")

for pair in RUN_PAIRS:
    hist = {model: runs[pair, model].history for model in model_names("translation", pair)}
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, key in zip(axes, ("val_mae", "train_task")):
        for name, h in hist.items():
            ax.plot([rec["epoch"] for rec in h], [rec[key] for rec in h], marker="o", ms=3, label=name,
                    ls="-" if name in FUSION_MODELS else "--")
        ax.set_xlabel("epoch"); ax.set_ylabel(key); ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0].set_ylabel(f"val_mae ({CURVES})")
    axes[0].axhline(blind_sel[pair]["mae"], color="k", ls=":", lw=1, label="input-blind median")
    # one legend under both panels, where it covers no curve
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=7, fontsize=7, frameon=False)
    fig.suptitle(f"{PAIRS[pair].label} - {TAG} data, {preset.image_size}px, {DEV}", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    plt.show()
fig = plot_history(runs[RUN_PAIRS[0], "mango"].history, title=f"MANGO, {PAIRS[RUN_PAIRS[0]].label} (all loss terms)")
plt.show()

# %% [markdown]
# ## 5. Metric tables
#
# All on the held-out val split, with the input-blind median as the first row of each pair. Parameters
# count every trainable weight (encoders, fusion, head). Time is the wall-clock training time,
# validation included, in its worker process (runs that train at once share the machine's cores, so compare
# ratios).

# %%
rows = []
for pair in RUN_PAIRS:
    rows.append({"pair": PAIRS[pair].label, "model": "input-blind median", "inputs": "-", "params (M)": 0.0,
                 "train time (s)": 0.0, "MAE×10": blind[pair]["mae_x10"], "RMSE×10": blind[pair]["rmse_x10"]})
    for model in model_names("translation", pair):
        r = runs[pair, model]
        ins = "+".join(PAIRS[pair].inputs) if model in FUSION_MODELS else model
        rows.append({"pair": PAIRS[pair].label, "model": model, "inputs": ins, "params (M)": r.params / 1e6,
                     "train time (s)": r.wall_time_s, "MAE×10": r.metrics["mae_x10"], "RMSE×10": r.metrics["rmse_x10"],
                     "FID proxy": r.metrics.get("fid_proxy", np.nan), "KID×100 proxy": r.metrics.get("kid_x100_proxy", np.nan)})
table = pd.DataFrame(rows).set_index(["pair", "model"])
print(f"{HELD} split ({len(datas[RUN_PAIRS[0]].test)} views), {TAG} data, {preset.image_size}px, {EPOCHS} epochs, {DEV}; "
      "lower is better everywhere; FID/KID are PROXY values (random-init CNN features), not Inception")
display(table.round(3))

# %%
for pair in RUN_PAIRS:
    res = {**live[pair], "input-blind": blind[pair]}
    plot_results(res, "mae_x10", title=f"{PAIRS[pair].label}: MAE×10 ({HELD}, {TAG}, {DEV})")
    plt.show()
for pair in [p for p in RUN_PAIRS if PAIRS[p].rgb_target]:  # FID compares images: RGB targets only
    plot_results(live[pair], "fid_proxy", title=f"{PAIRS[pair].label}: FID with PROXY features (not Inception)")
    plt.show()
if preset.name != "quick":
    for pair in RUN_PAIRS:
        mae = {m: runs[pair, m].metrics["mae"] for m in model_names("translation", pair)}
        for model in mae:
            h = runs[pair, model].history
            assert h[-1]["val_mae"] < h[0]["val_mae"], f"{pair}/{model}: the MAE of the curves ({CURVES}) did not improve"
            assert h[-1]["train_task"] < 0.95 * h[0]["train_task"], f"{pair}/{model}: training L1 fell by less than 5%"
        # MANGO, and the best fusion, must have learned more than an input-blind predictor ...
        assert mae["mango"] < blind[pair]["mae"], f"{pair}: MANGO does not beat the input-blind median"
        best_fused = min(mae[m] for m in FUSION_MODELS)
        assert best_fused < blind[pair]["mae"], f"{pair}: no fusion beats the input-blind median"
        # ... and fusing two inputs must beat the less informative single input (measured, not assumed)
        assert best_fused < max(mae[m] for m in PAIRS[pair].inputs), f"{pair}: no fusion beats the weaker unimodal model"

# %% [markdown]
# ### The full schedule: the main job's runs of all five pairs
#
# `python -m mango_lite reproduce --preset cpu` (the main job, README) trains the six models of every pair
# on the preset's full schedule, with the same code, data generator and seed, and the repository carries
# its results (`results/cpu/results.json`). We read them here: the five pairs side by side and, for the pair
# trained above, what the rest of the schedule buys. Run outside the repository, where that file
# is not, the cell says so and the tables below show this notebook's run only.

# %%
MAIN = session.root / "results" / "cpu" / "results.json"
main = rx.load_results(MAIN) if MAIN.is_file() else None
full = {}  # pair -> model -> metrics of the main job
if main is None:
    print("results/cpu/results.json is not here (mango_lite without its repository): the main job's runs are not shown")
else:
    plan = {g.key: g.models for g in plan_runs("cpu") if g.task == "translation"}
    assert rx.check_results(main, plan) == [], "the committed reproduction is incomplete"
    full = {main["results"][k]["pair"]: {m: main["results"][k]["models"][m] for m in ms} for k, ms in plan.items()}
    full_epochs = main["preset_config"]["epochs"]
    print(f"main job: results/cpu, preset {main['preset']}, {full_epochs} epochs, seed {main['seed']}, {main['device']}, "
          f"{main['results'][next(iter(plan))]['data']} data; MAE×10 on the held-out "
          f"{main['results'][next(iter(plan))].get('test_split', 'val')} split (lower is better; A only / B only: the "
          f"unimodal model of the pair's first / second input):")
    cols = list(FUSION_MODELS) + ["A only", "B only"]
    grid = pd.DataFrame([{"pair": PAIRS[p].label, **{m: full[p][m]["mae_x10"] for m in FUSION_MODELS},
                          "A only": full[p][PAIRS[p].inputs[0]]["mae_x10"], "B only": full[p][PAIRS[p].inputs[1]]["mae_x10"]}
                         for p in full]).set_index("pair")[cols]
    grid["best"] = grid.idxmin(axis=1)
    display(grid.round(3))
    n_first = int((grid["best"] == "mango").sum())
    print(f"MANGO has the lowest MAE×10 on {n_first} of {len(grid)} pairs; a fusion beats both single inputs on "
          f"{int((grid[list(FUSION_MODELS)].min(axis=1) < grid[['A only', 'B only']].min(axis=1)).sum())} of {len(grid)}.")

if full and main["preset"] == preset.name:
    cmp_rows = [{"pair": PAIRS[p].label, "model": m, f"{EPOCHS} epochs (this run)": live[p][m]["mae_x10"],
                 f"{full_epochs} epochs (main job)": full[p][m]["mae_x10"]}
                for p in RUN_PAIRS for m in model_names("translation", p)]
    cmp = pd.DataFrame(cmp_rows).set_index(["pair", "model"])
    cmp["change (%)"] = 100 * (cmp.iloc[:, 1] / cmp.iloc[:, 0] - 1)
    print(f"\nMAE×10 of this run's models beside the main job's, trained {full_epochs} epochs:")
    display(cmp.round(3))
    ch = cmp["change (%)"]
    print(f"the full schedule lowers MAE×10 for {int((ch < 0).sum())} of {len(ch)} models "
          f"(change from {ch.min():+.1f} % to {ch.max():+.1f} %)")
    for p in RUN_PAIRS:
        ms = model_names("translation", p)
        rank_here = sorted(ms, key=lambda m: live[p][m]["mae_x10"]).index("mango") + 1
        rank_full = sorted(ms, key=lambda m: full[p][m]["mae_x10"]).index("mango") + 1
        print(f"{PAIRS[p].label}: MANGO ranks {rank_here} of {len(ms)} after {EPOCHS} epochs, "
              f"{rank_full} of {len(ms)} after {full_epochs}")
elif full:
    print(f"\n(this run is at preset {preset.name!r}; set MANGO_LITE_PRESET=cpu to compare it with the main job's runs)")

# %% [markdown]
# ### The paper's Table 2 beside ours (not comparable)
#
# The paper's rows (`paper (as printed)`, from `mango_lite.paper_tables`) were measured on the
# real Taskonomy at 256 px, with pretrained transformer backbones and GAN training. For RGB targets,
# their FID/KID use Inception features. Ours are the main job's runs of all five pairs (this notebook's
# run where those are not here), from a generated stand-in at the preset's size, with small CNN
# encoders, training without an adversarial loss and proxy FID/KID features. The table puts them side
# by side so the *format* is checkable. The absolute values are not comparable. Only the ordering of models
# within one source means anything.

# %%
ours, size = (full, main["preset_config"]["image_size"]) if full else (live, preset.image_size)
side = table2_comparison(ours, list(ours), data_label=TAG, size=size)
display(side.round(3))

# %% [markdown]
# ## 6. Predictions against the ground truth
#
# We reload every run's **last** checkpoint, the model the table describes. First we check that by
# re-evaluating MANGO's checkpoint with `evaluate_checkpoint` on the held-out split. Then we show the first
# held-out views: the two inputs, each model's output and the ground truth. This is the layout of the paper's
# qualitative figure. Depth spans a small part of $[-1,1]$, so for non-RGB targets the ground truth
# and all predictions are contrast-stretched by one common map (`contrast_stretch`). Otherwise they
# would all look uniformly grey.

# %%
models = {pair: {m: load_model(latest_checkpoint(runs[pair, m].out_dir), device)[0]
                 for m in model_names("translation", pair)} for pair in RUN_PAIRS}
# the reported split by its own name (Taskonomy's "val"): with a selection split that name means the held-out split
check = evaluate_checkpoint(latest_checkpoint(runs[RUN_PAIRS[0], "mango"].out_dir), split=datas[RUN_PAIRS[0]].test_split)
print(f"re-evaluated MANGO checkpoint on the {HELD} split: MAE {check['metrics']['mae']:.6f}  "
      f"(table: {runs[RUN_PAIRS[0], 'mango'].metrics['mae']:.6f})")
assert np.isclose(check["metrics"]["mae"], runs[RUN_PAIRS[0], "mango"].metrics["mae"], rtol=1e-5, atol=1e-7)

batches = {}
for pair in RUN_PAIRS:
    d = datas[pair]
    batch, preds = predict_samples(models[pair], d, n=4, split="test")  # "test": the held-out split of the tables
    batches[pair] = batch
    for name, p in preds.items():
        assert p.shape == batch[d.target_key].shape and torch.isfinite(p).all(), name
        assert p.min() >= -1.0 and p.max() <= 1.0, f"{name}: outputs leave [-1, 1] ({p.min():.3f}, {p.max():.3f})"
    target, note = batch[d.target_key], ""
    if not PAIRS[pair].rgb_target:
        # one affine map for truth and predictions: the target's own range becomes the full grey scale
        shown, (lo, hi) = contrast_stretch(preds, target)
        preds, target = {k: v for k, v in shown.items() if k != "reference"}, shown["reference"]
        note = f"; GT and predictions shown on the GT's range [{lo:.2f}, {hi:.2f}] of [-1, 1]"
    fig = translation_grid({d.a_key: batch[d.a_key], d.b_key: batch[d.b_key]}, target, preds,
                           target_name=f"GT {d.target_key}", n=4)
    fig.suptitle(f"{PAIRS[pair].label} - first 4 {HELD} views ({TAG}, {DEV}){note}", fontsize=10)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## 7. Inside MANGO: attention maps
#
# Each ICA layer maps $X_2\mapsto(I+\gamma S)X_2$. The attention $S$ is computed from $X_1$ only (its
# queries and keys also carry fixed 2-D codes of their grid positions) and is triangular in token
# order, which gives the layer its cheap exact log-determinant and triangular-solve inverse (notebook 01,
# section 4). The layers of a block
# alternate upper and lower triangles, so values move both ways between the modalities. Here we record
# every ICA matrix of MANGO's fusion on one held-out view of the first pair. The table lists each
# layer's partition, its learned weight $\gamma$ (initialised at 0.1, free to move in either direction)
# and, for IMCA, the share of attention a re-mixed token puts on the *other* modality. MMCA
# re-mixes one modality with weights computed from the other, so its share is 0 by construction.

# %%
pair0 = RUN_PAIRS[0]
d0, mango0 = datas[pair0], models[pair0]["mango"]
a1, b1 = batches[pair0][d0.a_key][:1].to(device), batches[pair0][d0.b_key][:1].to(device)
recs = attention_maps(mango0, a1, b1)
mods = dict(mango0.fusion.named_modules())
att_rows = []
for r in recs:
    scale = int(r.name.split("stages.")[1].split(".")[0])
    att_rows.append({"layer": r.name.replace("flow.stages.", "s").replace(".flow.layers.", " ICA "), "scale": scale,
                     "partition": r.partition.upper(), "tokens T": r.attention.shape[-1],
                     "gamma": float(mods[r.name].gamma.detach().mean()), "cross-modal share": cross_modal_share(r)})
att_table = pd.DataFrame(att_rows)
display(att_table.groupby(["scale", "partition"]).agg(layers=("gamma", "size"), gamma_mean=("gamma", "mean"),
                                                      gamma_min=("gamma", "min"), gamma_max=("gamma", "max"),
                                                      cross_share=("cross-modal share", "mean")).round(3))
for r in recs:
    A = r.attention[0]  # (heads, T, T), A = I + gamma S
    keep = torch.triu(A) if r.triangle == "upper" else torch.tril(A)  # blocks alternate the two triangles
    assert torch.equal(A, keep), f"{r.name}: ICA matrix must be {r.triangle} triangular"
    g = mods[r.name].gamma.detach().cpu().view(-1, 1).double()
    assert torch.allclose(A.double().sum(-1), 1.0 + g.expand(-1, A.shape[-1]), atol=1e-4), "rows of I + gamma S sum to 1 + gamma"
share = att_table["cross-modal share"].dropna()
assert len(share) > 0 and share.between(0, 1).all()

# %% [markdown]
# The matrices $\gamma S$ of the first block at the finest flow scale, averaged over heads. Upper layers
# let token $i$ mix in tokens $j\ge i$ and lower layers tokens $j\le i$; the token at the end of the
# allowed range (bottom-right for upper, top-left for lower) can attend only to itself, so its whole row
# sits on the diagonal.

# %%
first_scale = [r for r in recs if r.name.split("stages.")[1].startswith("0.")]
show = [(f"{r.partition.upper()}  {r.name.split('layers.')[-1]}", r.attention[0].mean(0)) for r in first_scale[:8]]
fig = plot_attention(show, without_identity=True, max_maps=8)
fig.suptitle(f"gamma*S of the first MANGO block, scale 0 (identity removed) - {PAIRS[pair0].label}, {TAG}", fontsize=9)
fig.tight_layout(rect=(0, 0, 1, 0.94))
plt.show()

# %% [markdown]
# What a single re-mixed token draws from, put back on the image grid. The query is the $X_2$ slot whose
# row the mask leaves whole (the first in an upper layer, the last in a lower one), marked with a red ×. Blank
# cells are positions that are not in $X_2$. For MMCA, all $X_2$ tokens belong to one modality. For
# IMCA, every other position of both modalities is in $X_2$.

# %%
picks = [r for r in first_scale if r.partition in ("mmca", "imca")][:3]
fig, axes = plt.subplots(len(picks), 2, figsize=(5.6, 2.6 * len(picks)), squeeze=False)
for row_axes, r in zip(axes, picks):
    t = r.attention.shape[-1]
    side_len = int(round(t ** 0.5))
    out = attention_row_maps(r, full_row(r), (side_len, side_len))  # the X2 slot that may see every X2 token
    vmax = float(np.nanmax(out["maps"].numpy()))
    for j, ax in enumerate(row_axes):
        ax.imshow(out["maps"][j].numpy(), cmap="viridis", vmin=0, vmax=vmax)
        if out["query"][0] == j:
            ax.plot(out["query"][2], out["query"][1], "rx", ms=10, mew=2)
        empty = bool(torch.isnan(out["maps"][j]).all())
        ax.set_title(f"{r.partition.upper()} {r.name.split('layers.')[-1]}: weights on {PAIRS[pair0].inputs[j]}"
                     + (" (not in X2)" if empty else f"\ncross-modal mass {out['cross']:.2f}" if out["query"][0] != j else ""), fontsize=7)
        ax.set_xticks([]); ax.set_yticks([])
    assert np.isclose(np.nansum(out["maps"].numpy()), 1.0, atol=1e-4)  # a row of S sums to 1
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 8. Which input does each prediction rely on?
#
# `modality_contribution` measures this in two ways:
# * **Ablation:** replace one modality's standardised encoder features by their mean (zero) and
#   measure the mean absolute change of the output.
# * **Gradient × input:** summed over that modality's features.
#
# Both give shares that sum to 1, computed the same way for every model. The unimodal models are a
# built-in check: they must put exactly 100 % on the input they read.

# %%
contrib_rows = []
for pair in RUN_PAIRS:
    d = datas[pair]
    held = vd.stack_items(d.test, [d.a_key, d.b_key], limit=32)  # the first views of the held-out split
    a, b = held[d.a_key].to(device), held[d.b_key].to(device)
    for model, net in models[pair].items():
        for method in ("ablation", "gradient"):
            c = modality_contribution(net, a, b, method=method)
            contrib_rows.append({"pair": PAIRS[pair].label, "model": model, "method": method,
                                 "share A": c["a"], "share B": c["b"], "raw A": c["raw_a"], "raw B": c["raw_b"],
                                 "A": d.a_key, "B": d.b_key})
contrib = pd.DataFrame(contrib_rows)
display(contrib.set_index(["pair", "model", "method"])[["A", "share A", "B", "share B", "raw A", "raw B"]].round(3))
for _, row in contrib.iterrows():
    ua, ub = next(PAIRS[p].inputs for p in RUN_PAIRS if PAIRS[p].label == row["pair"])
    if row["model"] == ua:
        assert row["share A"] == 1.0 and row["raw B"] == 0.0, row  # reads only A
    elif row["model"] == ub:
        assert row["share B"] == 1.0 and row["raw A"] == 0.0, row  # reads only B
    else:
        assert row["raw A"] > 0 and row["raw B"] > 0, f"fused model {row['model']} ignores an input"

fig, axes = plt.subplots(1, len(RUN_PAIRS), figsize=(5.2 * len(RUN_PAIRS), 3.2), squeeze=False)
for ax, pair in zip(axes[0], RUN_PAIRS):
    sub = contrib[(contrib["pair"] == PAIRS[pair].label) & contrib["model"].isin(FUSION_MODELS)]
    piv = sub.pivot(index="model", columns="method", values="share B").loc[list(FUSION_MODELS)]
    piv.plot.barh(ax=ax, xlim=(0, 1))
    ax.axvline(0.5, color="k", lw=0.8, ls=":")
    ax.set_xlabel(f"share of {PAIRS[pair].inputs[1]} (B)   [1 - share of {PAIRS[pair].inputs[0]}]")
    ax.set_title(f"{PAIRS[pair].label} ({TAG})", fontsize=9)
fig.tight_layout()
plt.show()

# %% [markdown]
# The same ablation, per pixel (`ablation_maps`): where in the image the output changes when one
# input is removed. Per model, the first two maps share one colour scale. The third map is the
# difference (red: the second input matters more there).

# %%
for pair in RUN_PAIRS:
    d = datas[pair]
    a1, b1 = batches[pair][d.a_key][:1].to(device), batches[pair][d.b_key][:1].to(device)
    maps = {m: ablation_maps(models[pair][m], a1, b1)[0] for m in FUSION_MODELS}
    ref = modality_contribution(models[pair]["mango"], a1, b1)
    assert np.isclose(maps["mango"][0].mean().item(), ref["raw_a"], rtol=1e-4, atol=1e-7)  # same measure, per pixel
    show_key = d.target_key if PAIRS[pair].rgb_target else "rgb"  # an RGB view for orientation
    fig = ablation_grid(maps, PAIRS[pair].inputs, image=batches[pair][show_key][0],
                        image_name=show_key, title=f"{PAIRS[pair].label} - one {HELD} view ({TAG})")
    plt.show()

# %% [markdown]
# ## 9. Browse the held-out views
#
# Move the slider to see any view of the held-out val split: the inputs, the ground truth, all six predictions with
# their per-image MAE, and the error maps. The widget runs the models on demand. In a static
# rendering of this notebook it shows view 0.

# %%
tabs = widgets.Tab(children=[translation_browser(datas[p].test, models[p], datas[p].a_key, datas[p].b_key,
                                                 datas[p].target_key, title=PAIRS[p].label, tag=TAG,
                                                 stretch=not PAIRS[p].rgb_target)
                             for p in RUN_PAIRS])
for i, p in enumerate(RUN_PAIRS):
    tabs.set_title(i, PAIRS[p].label)
display(tabs)

# %% [markdown]
# ## 10. What was measured
#
# The summary below is generated from this run's numbers. Nothing in it is typed in by hand.

# %%
lines = [f"Preset {preset.name}, {EPOCHS} of its {preset.epochs} epochs, {preset.image_size}px, {TAG} Taskonomy, "
         f"{len(data0.train)} training views, one seed, {DEV}. Every MAE below is on the {HELD} split ({len(data0.test)} views)."]
for pair in RUN_PAIRS:
    names = list(model_names("translation", pair))
    mae = {m: runs[pair, m].metrics["mae_x10"] for m in names}
    order = sorted(names, key=mae.get)
    ua, ub = PAIRS[pair].inputs
    best_uni = min((ua, ub), key=mae.get)
    best_fused = min(FUSION_MODELS, key=mae.get)
    base = [m for m in FUSION_MODELS if m != "mango"]
    best_base = min(base, key=mae.get)
    rel_blind = 100 * (mae[order[0]] / blind[pair]["mae_x10"] - 1)
    n_beat = sum(mae[m] < blind[pair]["mae_x10"] for m in names)
    lines.append(f"\n{PAIRS[pair].label}: MAE×10 ranking " + " < ".join(f"{m} {mae[m]:.3f}" for m in order)
                 + f"; input-blind median {blind[pair]['mae_x10']:.3f} (best model {rel_blind:+.1f}% relative to it; "
                 f"{n_beat} of {len(names)} models beat it).")
    lines.append(f"  MANGO ranks {order.index('mango') + 1} of {len(order)}; vs the best other fusion ({best_base}) "
                 f"{100 * (mae['mango'] / mae[best_base] - 1):+.1f}% MAE; spread of the four fusions "
                 f"{max(mae[m] for m in FUSION_MODELS) - min(mae[m] for m in FUSION_MODELS):.3f}.")
    lines.append(f"  More informative single input: {best_uni} ({mae[best_uni]:.3f} vs {mae[ua if best_uni == ub else ub]:.3f}); "
                 f"best fusion {best_fused}: {100 * (mae[best_fused] / mae[best_uni] - 1):+.1f}% MAE relative to it.")
    if PAIRS[pair].rgb_target:
        fid = {m: runs[pair, m].metrics["fid_proxy"] for m in names}
        lines.append("  PROXY FID ranking: " + " < ".join(f"{m} {fid[m]:.3f}" for m in sorted(names, key=fid.get)))
    sh = contrib[(contrib["pair"] == PAIRS[pair].label) & (contrib["method"] == "ablation")].set_index("model")
    lines.append("  Ablation share of " + ub + ": " + ", ".join(f"{m} {sh.loc[m, 'share B']:.2f}" for m in FUSION_MODELS))

# how far from trivial: the spread of every target of the five pairs, and RGB+Edge→Depth's input-blind median
# beside the main job's six models of that pair (trained or not here)
plain = translation_transforms(preset.image_size, False)
spread = {k: float(targets_of(Taskonomy(info.root, data0.test_split, [k], transform=plain), k).std())
          for k in dict.fromkeys(PAIRS[p].target for p in PAIRS)}
lines.append(f"\nTarget std on the {HELD} split ([-1, 1] scale), smallest first: "
             + ", ".join(f"{k} {v:.3f}" for k, v in sorted(spread.items(), key=lambda kv: kv[1])) + ".")
DEPTH = "rgb_edge_to_depth"
dd = datas[DEPTH] if DEPTH in datas else build_task_data("translation", preset, pair=DEPTH, info=info)
b_depth = blind[DEPTH] if DEPTH in blind else median_baseline(train_targets(dd), targets_of(dd.test, dd.target_key))
txt = f"{PAIRS[DEPTH].label}: input-blind median MAE×10 {b_depth['mae_x10']:.3f} at preset {preset.name}"
if DEPTH in full:
    fm = {m: v["mae_x10"] for m, v in full[DEPTH].items()}
    txt += f"; the main job's {len(fm)} models of this pair span {max(fm.values()) - min(fm.values()):.3f} MAE×10"
    if main["preset"] == preset.name:  # the same data: its models can be set against this median
        txt += (f", {sum(v < b_depth['mae_x10'] for v in fm.values())} of {len(fm)} beat the median, the best by "
                f"{100 * (min(fm.values()) / b_depth['mae_x10'] - 1):+.1f}% relative to it")
    else:
        txt += f" (at preset {main['preset']}, so not set against this preset's median)"
lines.append(txt + ".")

p0 = RUN_PAIRS[0]
ms0 = list(model_names("translation", p0))
t_m = np.mean([runs[p, "mango"].wall_time_s / runs[p, "concat"].wall_time_s for p in RUN_PAIRS])
rank_p = 1 + sum(runs[p0, m].params > runs[p0, "mango"].params for m in ms0)
rank_t = 1 + sum(runs[p0, m].wall_time_s > runs[p0, "mango"].wall_time_s for m in ms0)
lines.append(f"\nCost: MANGO {runs[p0, 'mango'].params / 1e6:.2f} M parameters vs concat "
             f"{runs[p0, 'concat'].params / 1e6:.2f} M; {t_m:.1f}x its training time. "
             + (f"MANGO is the most expensive of the {len(ms0)} models in parameters and in training time."
                if rank_p == rank_t == 1 else
                f"MANGO ranks {rank_p} of {len(ms0)} in parameters and {rank_t} of {len(ms0)} in training time (1 = most)."))
print("\n".join(lines))

# %% [markdown]
# **How to read this, frankly.**
# * *Scale of the experiment.* Each model trains on a small generated data set, for the epochs and at the
#   resolution of the summary's first line, with one seed. A ranking between fusions separated by a few
#   percent is therefore not a finding. The statements this notebook asserts at non-quick presets are
#   deliberately modest:
#   * the MAE of the curves (selection split) falls for every model;
#   * MANGO and the best fusion beat the input-blind median on the held-out split;
#   * the best fusion beats the less informative single input.
# * *How far from trivial.* Compare every row with the input-blind median. A target that varies little on
#   the $[-1,1]$ scale leaves the models little room below the median predictor, and some may not beat it.
#   The summary gives each target's spread, and for RGB+Edge→Depth (log depth / 11.1) the median's MAE×10
#   beside the main job's six models (their span, and how many beat it when the main job ran at this preset).
#   It counts this run's models too when that pair is trained here (`MANGO_LITE_PAIRS=rgb_edge_to_depth`).
#   Where the models' span is small beside the median's MAE, differences between them are fragile.
#   Notebook 08 reads the whole main job.
# * *A shorter schedule.* Section 5 compares this run with the main job's full-length one, model by model.
#   The ranking of fusions separated by a percent can change between the two: another reason not to read
#   a ranking from one short run.
# * *MANGO vs the paper.* The paper prints MANGO best in nearly every entry of Table 2. The summary
#   above says where MANGO ranks in this run and by how much. With one seed and a few epochs, a margin
#   of a few percent over the next fusion makes even a first place weak evidence, and a last place
#   too. We did not reproduce the paper's setting:
#   pretrained backbones, 256 px, GAN loss, 12 blocks. Nor do we claim that the gap would or would not
#   appear there. The summary also ranks MANGO's cost in parameters and training time. The paper itself
#   remarks that its cost exceeds lighter schemes such as TokenFusion.
# * *Shade+Texture→RGB is only partly determined by its inputs.* Colour and the scene's own lighting are
#   in neither input, so an L1 model predicts each pixel's conditional median, a desaturated, smoothed
#   colour. The predictions in section 6 show this. FID/KID are proxies here and only order our own
#   models.
# * *Interpretability.* The ablation and gradient shares say which input the trained model *uses*. They
#   do not say which input is *needed*. A model can lean on one input even when the other carries the
#   same information. MANGO's attention matrices are triangular by construction, so in one layer a token
#   can only draw from the tokens on one side of it in raster order (the layers alternate the side).
#   Attention maps of an invertible flow are therefore less free than those of ordinary cross-attention,
#   and $\gamma$ shows how much each layer mixes at all. Whether the mixing helps at all is measured by
#   the same model with every $\gamma$ fixed at 0 (`mango-noattn`, `python -m mango_lite mechanisms`;
#   README, *Controls*).
# * *What would make this comparable.* The real Taskonomy subset (`python -m mango_lite train --task
#   translation --pair ... --data PATH` with the sample repository's folder), the pytorch-fid Inception weights (pass them
#   to `mango_lite.metrics.InceptionFeatures`), an adversarial loss and the paper's model size.

# %% [markdown]
# ## Exercises
#
# ### Exercise 6.1 · Where does fusion help most?
#
# For each pair of the main job (`by_pair`: pair → model → metrics; this run's pairs when the main job's
# results are not here), compute the *fusion gain*: the MAE×10 of the better unimodal model minus that of
# the best fused model (`FUSION_MODELS`), so that a positive gain means fusing beats the better single
# input. Which pair gains most, and does that fit what each target needs from its two inputs (section 1)?

# %%
by_pair = full or live
# BEGIN SOLUTION
# STUB: fusion_gain = {}  # pair -> MAE×10 of the better unimodal model minus that of the best fused one
fusion_gain = {}
for pair, ms in by_pair.items():
    uni = min(v["mae_x10"] for m, v in ms.items() if m not in FUSION_MODELS)
    fused = min(v["mae_x10"] for m, v in ms.items() if m in FUSION_MODELS)
    fusion_gain[pair] = uni - fused
    print(f"{PAIRS[pair].label:18s} fusion gain {fusion_gain[pair]:+.3f} MAE×10")
# END SOLUTION

# %%
exercises.exercise_6_1(fusion_gain, by_pair)  # computes the gains itself; a wrong answer gets a hint, not them

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# *Answer (the second question).* Fusion can only help where neither input determines the target alone.
# RGB is, to a good approximation, albedo times shading: the shading carries the light and the geometry but
# no colour, the texture edges say where the albedo changes but not the light, so Shade+Texture→RGB needs
# both and should gain most. Where one input nearly determines the target the other has little to add:
# the shading is a function of the surface normal and the light (RGB+Normal→Shade), so the normal alone
# comes close, and the fusion may even come out slightly behind it. Compare the order of the gains printed
# above with this reasoning rather than their size: gains of a few thousandths are within the
# seed-to-seed spread that notebook 08 measures, and this run trains each model once.
# <!-- END SOLUTION -->

# %% [markdown]
# ### Exercise 6.2 · Why L1 blurs (written answer)
#
# Our translation models are trained with an L1 task loss and no adversarial term. When the inputs leave
# the target's fine texture uncertain, what does the L1-optimal prediction of each pixel look like, and
# which of the reported metrics should punish that most: MAE, RMSE or the (proxy) FID?
#
# <!-- BEGIN SOLUTION -->
# *Answer.* The L1-optimal prediction of each pixel is the *median* of its conditional distribution, so
# wherever the texture is uncertain the prediction smooths it away: a blurred image. MAE rewards exactly
# this, since the median minimises the expected absolute error. RMSE would be minimised by the conditional
# *mean*, a different but just as smooth image, so it barely punishes the blur either. FID compares
# feature *distributions*, and blurred images lack the high-frequency statistics of real ones, so FID
# punishes the blur most. That is why pix2pix-style recipes add an adversarial term (section "Read this
# first").
# <!-- END SOLUTION -->

# %%
print(session.finish())

# %% [markdown]
# ## References
#
# * Truong et al., *MANGO: Multimodal Attention-based Normalizing Flow Approach to Fusion Learning*, NeurIPS 2025, [arXiv:2508.10133](https://arxiv.org/abs/2508.10133)
# * Wang et al., *Multimodal token fusion for vision transformers* (TokenFusion), CVPR 2022, [arXiv:2204.08721](https://arxiv.org/abs/2204.08721)
# * Zamir et al., *Taskonomy*, CVPR 2018, [arXiv:1804.08328](https://arxiv.org/abs/1804.08328)
