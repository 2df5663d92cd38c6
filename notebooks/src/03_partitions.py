# %% [markdown]
# # 03 · Partitions: who conditions whom
#
# > **Prerequisites:** notebook 01. **Runtime:** {{runtime}}. **Notation:** the box in notebook 01, section 2. **Exercises:** 4, marked *Exercise 3.x* (solutions in this version; students get `notebooks/student/`).
#
# **Goal.** MANGO's three partitions decide which tokens provide queries and keys ($X_1$, passed through)
# and which tokens get re-mixed ($X_2$). This notebook draws them as token-assignment diagrams, shows the
# attention maps of a MANGO block, lets you explore interactively which tokens condition which, and trains
# one layer on a toy pair to see whether the attention learns to align the two modalities.
#
# Layout: tokens $0..T-1$ are modality A, $T..2T-1$ modality B.
#
# * **MMCA** (modality-to-modality): $X_1$ = one modality, $X_2$ = the other. Variant 0: A's tokens
#   re-mix B's; variant 1: the reverse. Information flows *across* modalities only.
# * **IMCA** (inter-modality): each modality is cut into even ($A_1$) and odd ($A_2$) positions; $X_1$ and
#   $X_2$ each hold one half of **each** modality. The four variants are
#   $(A_1B_1|A_2B_2)$, $(A_1B_2|A_2B_1)$, $(A_2B_1|A_1B_2)$, $(A_2B_2|A_1B_1)$.
#   Within-modality and cross-modality mixing happen at once.
# * **LICA** (learnable): a learnable invertible token-mixing matrix $W$ (LU form, starting as a random
#   permutation) is applied first; $X_1$/$X_2$ are its first/last $T$ outputs, and merge applies $W^{-1}$.
#   The partition is learned.

# %%
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from IPython.display import display

from mango_lite import ICA, MangoBlock, exercises, get_preset, seed_everything
from mango_lite.flows import make_partition, record_attention
from mango_lite.notebook import interact_with_static
from mango_lite.viz.flows import draw_partition, draw_partition_legend, plot_attention

sns.set_theme(style="white", context="notebook")
preset = get_preset()
seed_everything(0)
T = 8

# %% [markdown]
# ## 1. Token-assignment diagrams
# Top strip: the modality of each token. Bottom strip: its group (green = $X_1$, red = $X_2$). For LICA
# the bottom strip shows the share of each token's weight that $W$ sends into $X_1$ (a random
# permutation at initialisation: every token lands wholly in one group, whichever modality it is from).

# %%
specs = [("mmca", 0), ("mmca", 1), ("imca", 0), ("imca", 1), ("imca", 2), ("imca", 3), ("lica", 0)]
fig, axes = plt.subplots(len(specs) + 1, 1, figsize=(8, 1.15 * (len(specs) + 1)))
for ax, (name, variant) in zip(axes, specs):
    draw_partition(make_partition(name, T, 1, variant), ax)
draw_partition_legend(axes[-1])
plt.tight_layout()
plt.show()

# %% [markdown]
# The structural claims, checked: every partition is a bijection of the $2T$ tokens. MMCA puts whole
# modalities on each side. IMCA puts exactly $T/2$ tokens of each modality in each group.

# %%
# NBVAL_CHECK_OUTPUT
# (deterministic and the same at every preset: CI compares this output with the committed one)
for name, variant in specs[:-1]:
    idx = make_partition(name, T, 1, variant).token_index()
    assert sorted(idx.flatten().tolist()) == list(range(2 * T)), "tokens must be covered exactly once"
    from_a = (idx < T).sum(1).tolist()
    if name == "mmca":
        assert from_a in ([T, 0], [0, T])
    else:
        assert from_a == [T // 2, T // 2]
    print(f"{name} v{variant}: X1 has {from_a[0]} A-tokens + {T - from_a[0]} B-tokens; X2 has {from_a[1]} A + {T - from_a[1]} B")

# %% [markdown]
# ## 2. Effective token mixing
# For fixed $X_1$ an ICA layer is *linear* in its input: per channel, $y = M x$ with
# $M = P^\top \mathrm{diag}(I, A) P$ for the permutation partitions and $M = W^{-1}\mathrm{diag}(I,A)W$ for
# LICA (`ICA.mixing_matrix`). Row $i$ of $M$ says which input tokens output token $i$ is built from: that
# is exactly "which tokens condition which". We check the identity against the layer itself, then draw
# $M$ for every layer of a MANGO block, with $\gamma$ raised to 0.9 so the mixing is visible.

# %%
block = MangoBlock(dim=4, tokens=T)
x = torch.randn(1, 2 * T, 4)
with torch.no_grad():
    block.train(); block(x); block.eval()
    for m in block.modules():
        if isinstance(m, ICA):
            m.gate.fill_(torch.atanh(torch.tensor(0.9)).item())
icas = [m for m in block.modules() if isinstance(m, ICA)]
with torch.no_grad():
    for layer in icas:
        mix = layer.mixing_matrix(x)[0, 0]
        y, _ = layer(x)
        assert torch.allclose(mix @ x[0], y[0], atol=1e-5), "y = M x must hold"

fig, axes = plt.subplots(2, 4, figsize=(14, 6.5), constrained_layout=True)
with torch.no_grad():
    moved = [layer.mixing_matrix(x)[0, 0] - torch.eye(2 * T) for layer in icas]  # M - I: what each layer changes
    lim = max(float(m.abs().max()) for m in moved)
    for ax, layer, m in zip(axes.flat, icas, moved):
        im = ax.imshow(m.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)  # signed: 0 (passed through) is white
        ax.axhline(T - 0.5, color="k", lw=1); ax.axvline(T - 0.5, color="k", lw=1)
        ax.set_title(f"{layer.partition_name.upper()} v{layer.variant}")
        ax.set_xlabel("input token"); ax.set_ylabel("output token")
fig.colorbar(im, ax=axes, fraction=0.02)
fig.suptitle("What each of the 8 ICA layers of one block changes: M - I (black lines: modality boundary)")
plt.show()

# %% [markdown]
# Read the panels (each shows $M - I$, so a token that passes through unchanged is a white row): MMCA v0
# leaves the A block white (A passes through) and has an upper-triangular attention block on B×B (B
# re-mixed, with weights computed from A; its diagonal is $\gamma s_{ii}$). IMCA interleaves: every second token
# of each modality is re-mixed, using weights from the other half of *both* modalities. LICA's pattern
# follows its learned permutation.
#
# ## 3. Attention maps
# With `record_attention` the library keeps every layer's $A$ (in the $X_2$ order) for plotting
# (`mango_lite.flows.record_attention`). These are the matrices the log-det is read from.

# %%
record_attention(block, True)
with torch.no_grad():
    block(x)
fig, axes = plt.subplots(2, 4, figsize=(14, 6.5))
for ax, layer in zip(axes.flat, icas):
    plot_attention(layer.last_attention[0, 0], ax, title=f"A of {layer.partition_name.upper()} v{layer.variant}")
plt.tight_layout()
plt.show()
_ = record_attention(block, False)  # returns the layers it switched off: not worth printing

# %% [markdown]
# ## 4. Explore
# Pick a partition and variant; the left panel shows the assignment, the right panel the effective mixing
# $M$ for a fresh random input (γ = 0.9). One setting per partition is drawn below for a static reading;
# with a running kernel the controls redraw it (without ipywidgets the notebook still runs top to bottom).

# %%
def explore(partition: str = "imca", variant: int = 1, tokens: int = 8, seed: int = 0):
    n_var = {"mmca": 2, "imca": 4, "lica": 1}[partition]
    variant = min(variant, n_var - 1)
    torch.manual_seed(seed)
    layer = ICA(dim=2, tokens=tokens, partition=partition, variant=variant, gamma=0.9)
    xx = torch.randn(1, 2 * tokens, 2)
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(12, 3.5), gridspec_kw={"width_ratios": [2, 1]})
    draw_partition(layer.partition, a0)
    with torch.no_grad():
        moved = (layer.mixing_matrix(xx)[0, 0] - torch.eye(2 * tokens)).numpy()
    lim = float(np.abs(moved).max()) or 1.0
    a1.imshow(moved, cmap="RdBu_r", vmin=-lim, vmax=lim)  # signed, centred at 0: white = passed through
    a1.axhline(tokens - 0.5, color="k"); a1.axvline(tokens - 0.5, color="k")
    a1.set_title("what the layer changes, M - I (rows: outputs)")
    plt.show()


# one setting per partition drawn statically (what GitHub and the book show), then the widget
interact_with_static(
    explore,
    [dict(partition="mmca", variant=0, tokens=8, seed=0), dict(partition="imca", variant=1, tokens=8, seed=0),
     dict(partition="lica", variant=0, tokens=8, seed=0)],
    partition=widgets.Dropdown(options=["mmca", "imca", "lica"], value="imca"),
    variant=widgets.IntSlider(min=0, max=3, value=1),
    tokens=widgets.IntSlider(min=4, max=16, step=2, value=8),
    seed=widgets.IntSlider(min=0, max=9, value=0),
);

# %% [markdown]
# ## 5. Does the attention learn to align the modalities? A controlled toy
#
# The maps above come from untrained layers. What does training make of them? A toy where the answer is
# known: modality B is modality A **shifted by $s = 4$ token positions**, plus a little noise,
# $b_p = a_{p-s} + 0.1\,\varepsilon$, with A's tokens i.i.d. $\mathcal N(0, I_4)$, $T = 16$ tokens per
# modality. Nothing tells the layer where B's matching token in A is.
#
# One IMCA layer (variant 0: $X_1$ = the even tokens of A and B, $X_2$ = the odd ones; lower triangle, so
# B's rows of $X_2$ may read A's) is trained **as a density model only**, minimising
# $-\log\mathcal N(z;0,I) - \log|\det J|$ in bits per dimension
# (`mango_lite.training.alignment`). The likelihood rewards subtracting from every B token its best
# prediction, and the best prediction of $b_{2k+1}$ is $a_{2k+1-s}$. The queries and keys come from $X_1$:
# B's even token $b_{2k}$ carries the content of A's even token $a_{2k-s}$, so matching content is how the
# attention can find the A token whose odd neighbour predicts $b_{2k+1}$. If it does, each of B's rows of
# $S$ puts its weight on the A column $s$ places back. The control is the same layer with $\gamma$ fixed at
# 0 (no attention: the identity on $X_2$), scored on the same held-out pairs; three seeds.

# %%
import pandas as pd

from mango_lite.training.alignment import aligned_columns, alignment_study

study = alignment_study(seeds=(0, 1, 2), tokens=16, dim=4, shift=4, steps=400)
rows = pd.DataFrame(study["rows"]).set_index("seed")
display(rows.round(4))
(bpd, bpd_sd), (ctl, ctl_sd) = study["val_bpd_mean_std"], study["control_bpd_mean_std"]
share, share_sd = study["aligned_share_mean_std"]
print(f"bits/dim: trained {bpd:.4f} ± {bpd_sd:.4f}, gamma fixed at 0 {ctl:.4f} ± {ctl_sd:.4f}; "
      f"lower in {int((rows.val_bpd < rows.control_bpd).sum())} of {len(rows)} seeds")
print(f"share of B's attention to A that lands on the matching A token: {share:.3f} ± {share_sd:.3f} "
      f"(spread evenly it would be {study['uniform_share']:.3f}); the matching token is the most attended A token "
      f"in {int(rows.rows_aligned.sum())} of {int(rows.rows.sum())} rows over all seeds")

s_mat = study["attention"].numpy()
half = study["tokens"] // 2
fig, ax = plt.subplots(figsize=(5.2, 4.2))
im = ax.imshow(s_mat[half:, :half], cmap="magma", vmin=0)
ax.scatter(aligned_columns(study["tokens"], study["shift"]), range(half), marker="s", s=160, facecolors="none",
           edgecolors="c", linewidths=1.5, label="A token with B's content")
ax.set_xticks(range(half), [f"a{2 * j + 1}" for j in range(half)])
ax.set_yticks(range(half), [f"b{2 * k + 1}" for k in range(half)])
ax.set_xlabel("A's tokens in $X_2$ (keys from their even neighbours)")
ax.set_ylabel("B's tokens in $X_2$")
ax.set_title(f"learned attention S, B rows × A columns (seed {rows.index[-1]})")
ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), frameon=False)
fig.colorbar(im, ax=ax, fraction=0.046)
plt.tight_layout()
plt.show()

assert (rows.rows_aligned == rows.rows).all(), "in some seed a B row does not attend most to its matching A token"
assert (rows.aligned_share > 4 * study["uniform_share"]).all(), rows.aligned_share
assert (rows.val_bpd < rows.control_bpd).all(), "the attention did not lower the bits/dim in every seed"

# %% [markdown]
# The attention has **aligned the modalities**: every row of B reads the A token that carries its content,
# shifted by exactly $s$, learned from the likelihood alone. The likelihood gain over the control is small,
# and the table says why: one $\gamma$ serves every row of the layer. B's rows would like
# $\gamma \to -1$ (subtract the whole prediction), A's rows hold independent tokens and want no mixing at all
# (A's first row can only attend to itself, and a negative $\gamma$ there shrinks its log-det), so $\gamma$
# settles near the value printed above. The alignment lives in $S$, the amount in $\gamma$.
#
# **Summary.** MMCA moves information strictly between modalities, IMCA mixes within and across
# modalities in one layer, and LICA learns the split. A MANGO block cycles through all of them
# (2 MMCA, 4 IMCA, 2 LICA), so after one block every token can depend on every other token of both
# modalities, and the whole map stays exactly invertible with a log-det read off triangular diagonals.

# %% [markdown]
# ## Exercises
#
# Token indices below are the original ones: $0,\dots,T-1$ are modality A's tokens, $T,\dots,2T-1$ are B's
# ($T = 8$).
#
# ### Exercise 3.1 · Who feeds A's token 3?
#
# Take one IMCA layer, variant 0 ($X_1 = (A_1, B_1)$ the even tokens, $X_2 = (A_2, B_2)$ the odd ones), with
# the paper's upper triangle. Which input tokens does *output* token 3 of A have a non-zero weight on in
# the mixing matrix $M$? Work it out from the definitions (where does A's token 3 sit in $X_2$, and which
# $X_2$ positions may it attend to?), then let the check read row 3 of $M$.

# %%
# BEGIN SOLUTION
# STUB: feeds_a3 = set()  # original indices j with M[3, j] != 0
# A's odd tokens 1, 3, 5, 7 then B's odd tokens 9, 11, 13, 15 form X2; A3 is X2's second token, and the
# upper triangle lets it attend to X2 positions >= its own: A3, A5, A7 and all of B's odd tokens
feeds_a3 = {3, 5, 7, 9, 11, 13, 15}
# END SOLUTION

# %%
exercises.exercise_3_1(feeds_a3, tokens=T)  # reads row 3 of M; a wrong set gets counts, not tokens

# %% [markdown]
# ### Exercise 3.2 · The same with the lower triangle
#
# mango_lite's task models alternate the triangle (`FlowConfig.recommended()`; the paper's block, drawn in
# §2–3, uses the upper triangle in every layer). With `triangle="lower"` token $i$ attends to $j \le i$. Which inputs
# feed A's token 3 now? What does this say about B's odd tokens receiving from A's within one IMCA layer?

# %%
# BEGIN SOLUTION
# STUB: feeds_a3_lower = set()
feeds_a3_lower = {1, 3}  # X2 positions <= A3's own: A1 and A3 (B's odd tokens come later in X2)
# END SOLUTION

# %%
exercises.exercise_3_2(feeds_a3_lower, tokens=T)

# %% [markdown]
# ### Exercise 3.3 · After one block, can A's token 3 depend on B's token 5?
#
# Through the values ($M$) *and* through the attention weights (which depend on $X_1$), after a whole
# MANGO block of 8 ICA layers and a coupling. Answer `True` or `False`; the check computes the block's
# autograd Jacobian block $\partial y_{A,3} / \partial x_{B,5}$.

# %%
# BEGIN SOLUTION
# STUB: a3_depends_on_b5 = None  # True or False
a3_depends_on_b5 = True  # MMCA v1 alone already re-mixes A with weights from B, and IMCA/LICA add value paths
# END SOLUTION

# %%
exercises.exercise_3_3(a3_depends_on_b5, tokens=T)  # from the block's autograd Jacobian block d y[A3] / d x[B5]

# %% [markdown]
# ### Exercise 3.4 · IMCA as a bijection you write
#
# A partition is itself a flow layer: a permutation of the $2T$ tokens, so its log-det is 0, and the merge
# must be its exact inverse. Write IMCA's configuration 0 (section 1's first diagram): `my_partition(x, T)`
# takes tokens (B, 2T, D), modality A's first, and returns $X_1$ = A's even-indexed tokens followed by B's
# even-indexed ones and $X_2$ = the odd-indexed ones in the same order; `my_merge(x1, x2, T)` puts every
# token back. The check compares your halves with the library's, then puts your pair into an ICA layer in
# place of the library's partition and runs the float64 checks of notebook 02 (round trip, log-det
# cancellation, log-det against the autograd Jacobian) with the layer's parameters moved from their start.

# %%
def my_partition(x: torch.Tensor, tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    # BEGIN SOLUTION
    # STUB: raise NotImplementedError  # slices with a step of 2 within each modality
    a, b = x[:, :tokens], x[:, tokens:]
    return torch.cat([a[:, 0::2], b[:, 0::2]], dim=1), torch.cat([a[:, 1::2], b[:, 1::2]], dim=1)
    # END SOLUTION


def my_merge(x1: torch.Tensor, x2: torch.Tensor, tokens: int) -> torch.Tensor:
    # BEGIN SOLUTION
    # STUB: raise NotImplementedError  # write each half back to the positions it was read from
    half = tokens // 2
    x = x1.new_empty(x1.shape[0], 2 * tokens, x1.shape[2])
    x[:, 0:tokens:2], x[:, tokens::2] = x1[:, :half], x1[:, half:]
    x[:, 1:tokens:2], x[:, tokens + 1::2] = x2[:, :half], x2[:, half:]
    return x
    # END SOLUTION


# %%
exercises.exercise_3_4(my_partition, my_merge)

# %% [markdown]
# ## References
#
# * Truong et al., *MANGO: Multimodal Attention-based Normalizing Flow Approach to Fusion Learning*, NeurIPS 2025, [arXiv:2508.10133](https://arxiv.org/abs/2508.10133)
# * Zhai et al., *Normalizing flows are capable generative models* (TarFlow), 2024, [arXiv:2412.06329](https://arxiv.org/abs/2412.06329)
# * Kingma, Dhariwal, *Glow: generative flow with invertible 1×1 convolutions*, NeurIPS 2018, [arXiv:1807.03039](https://arxiv.org/abs/1807.03039)
