# %% [markdown]
# # 01 · Invertible cross-attention, from the change of variables to a layer you can trust
#
# > **Prerequisites:** linear algebra (determinants, triangular systems), the change-of-variables formula, PyTorch basics. **Runtime:** {{runtime}}. **Exercises:** 6, marked *Exercise 1.x* (solutions in this version; students get `notebooks/student/`).
#
# **Goal.** Derive MANGO's invertible cross-attention (ICA) layer, see *why* it is invertible and why
# its log-determinant is cheap, then check every claim numerically on the library's implementation
# (`mango_lite.ICA`). By the end you should be able to write the layer's Jacobian on a napkin.
#
# Arc: why flows need two things (an inverse and a log-det) → the ICA construction → its Jacobian →
# the triangular mask → exact log-det and inverse → checks → a word on conditioning → training without
# the T × T matrix → conventions.

# %%
import math

import matplotlib.pyplot as plt
import seaborn as sns
import torch

from mango_lite import ICA, exercises, get_preset, seed_everything
from mango_lite.flows import reference
from mango_lite.viz.flows import plot_attention, plot_jacobian

sns.set_theme(style="white", context="notebook")
preset = get_preset()
seed_everything(0)
print("preset:", preset.name)

# %% [markdown]
# ## 1. What a normalizing flow needs
#
# A flow is a bijection $f$ from data $x$ to a latent $z = f(x)$ with a simple density $p_Z$ (here a
# standard normal). The change of variables gives the exact log-likelihood
#
# $$\log p_X(x) = \log p_Z\big(f(x)\big) + \log\left|\det \frac{\partial f}{\partial x}\right|.$$
#
# So every layer must provide (i) an inverse, to sample and to reconstruct, and (ii) a log-determinant
# of its Jacobian that is cheap: a dense $n\times n$ determinant costs $O(n^3)$, hopeless for images.
# Coupling layers get both by leaving half of the input untouched and transforming the other half
# element-wise. ICA does the same, but the transformation *mixes tokens through attention*, which is
# what makes it a fusion layer.
#
# **Convention in mango_lite** (one direction everywhere): `z, logdet = module(x)` maps data to latent and
# returns $\log|\det \partial z/\partial x|$ per sample, shape `(B,)`; `x, logdet_inv = module.inverse(z)`
# returns `logdet_inv == -logdet`.

# %% [markdown]
# ## 2. The ICA layer
#
# The input holds $T$ tokens of modality A followed by $T$ tokens of modality B, each with $D$ channels:
# $x \in \mathbb{R}^{2T\times D}$. A **partition** (notebook 03) splits it into $X_1, X_2 \in \mathbb{R}^{T\times D}$.
# Then, for each head (one head here; with $h$ heads every head gets $d = D/h$ channels):
#
# $$Q = \mathrm{LN}(X_1 W_q),\quad K = \mathrm{LN}(X_1 W_k),\quad
#   S = \mathrm{softmax}\!\Big(\mathrm{mask}\big(\tfrac{QK^\top}{\tau\sqrt{d_{qk}}}\big)\Big),\quad
#   A = I + \gamma S,$$
# $$Y_1 = X_1, \qquad Y_2 = A\,X_2, \qquad y = \mathrm{merge}(Y_1, Y_2).$$
#
# Here $d_{qk}$ is the query/key width per head ($= d$ unless `qk_dim` sets it) and $\tau$ a learnable
# temperature per head. Queries and keys come **only from $X_1$**, values are $X_2$ itself. The mask
# keeps the upper triangle including the diagonal (token $i$ attends to tokens $j \ge i$), so $S$ is upper
# triangular with a strictly positive diagonal (softmax outputs are positive) and rows that sum to one.
#
# The official code uses $A = S + I$, i.e. $\gamma = 1$. mango_lite makes $\gamma = \tanh(g)\in(-1,1)$ a
# learnable per-head weight (default start 0.1); `ICA(..., gamma=None)` gives the paper's exact form.
# Section 6 explains why.

# %%
# NBVAL_CHECK_OUTPUT
# (deterministic and the same at every preset: CI compares this output with the committed one)
T, D = 6, 4
layer = ICA(dim=D, tokens=T, partition="mmca", variant=0, gamma=None).double()
x = torch.randn(2, 2 * T, D, dtype=torch.float64)
A = reference.attention_matrix(layer, x)[0, 0]  # (T, T) for sample 0, head 0

fig, ax = plt.subplots(1, 1, figsize=(4.2, 3.6))
plot_attention(A, ax, title="A = S + I (paper form), sample 0")
plt.show()
assert torch.equal(torch.tril(A, -1), torch.zeros_like(A)), "A must be upper triangular"
assert (torch.diagonal(A) > 1).all()
print("diagonal of A:", torch.diagonal(A).detach().numpy().round(3))

# %% [markdown]
# > **Notation (used in every notebook).** $B$ batch, $T$ tokens per modality (so $2T$ in all), $D$
# > channels per token, $h$ heads with $d = D/h$ channels each. A partition splits the tokens into the
# > conditioning half $X_1$ and the transformed half $X_2$ (each $T\times D$). Per head,
# > $S = \mathrm{softmax}(\mathrm{mask}(QK^\top/(\tau\sqrt{d_{qk}})))$, with $d_{qk}$ the query/key width per
# > head ($= d$ by default), is triangular with rows summing to 1,
# > and the layer's matrix is $A = I + \gamma S$ with $\gamma\in(-1,1)$ learnable (the paper: $\gamma = 1$,
# > $A = S + I$). $Y_2 = A X_2$; with tokens-major flattening the $X_2$ block of the Jacobian is
# > $A\otimes I_d$ and $\log|\det J| = d\sum_{\text{heads}}\sum_i \log(1+\gamma s_{ii})$. Log-dets and
# > log-likelihoods are in **nats**; *bits/dim* divides by $\ln 2$ and by the number of dimensions.
# > Direction: `z, logdet = module(x)` maps data to latent. Italic $A$ is always the layer's matrix
# > $I + \gamma S$; "modality A" and "modality B" (roman) name the two inputs.
#
# ### Exercise 1.1 · The layer in twenty lines
#
# Before trusting the library, write the layer yourself in plain torch, for the simplest partition
# (MMCA variant 0: $X_1$ = modality A's tokens, $X_2$ = modality B's) and one head, reading the weights
# off `mango_lite.ICA` so that the two can be compared number for number: the attention matrix $A$, the
# forward map with its log-det, and the inverse by a triangular solve (`torch.linalg.solve_triangular`,
# never a general inverse). Every line is one symbol of the equations above; the cell after the next one
# checks your functions against the library.

# %%
def attention_from(x1: torch.Tensor, lay: ICA) -> torch.Tensor:
    """A = I + gamma S (B, T, T) from the conditioning tokens x1 (B, T, D): one head, upper triangle."""
    # BEGIN SOLUTION
    q = torch.nn.functional.layer_norm(x1 @ lay.query.weight.T, (lay.qk_dim,), lay.query_norm.weight, lay.query_norm.bias)
    k = torch.nn.functional.layer_norm(x1 @ lay.key.weight.T, (lay.qk_dim,), lay.key_norm.weight)
    tau = lay.log_temperature.exp()
    logits = q @ k.transpose(1, 2) / (tau * math.sqrt(lay.qk_dim))
    t = x1.shape[1]
    allowed = torch.ones(t, t, dtype=torch.bool).triu()  # token i attends to tokens j >= i
    s = torch.softmax(logits.masked_fill(~allowed, float("-inf")), dim=-1)
    return torch.eye(t, dtype=x1.dtype) + lay.gamma * s
    # END SOLUTION


def my_ica_forward(x: torch.Tensor, lay: ICA) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 2T, D) -> (y, logdet (B,)): partition, A from X1, Y2 = A X2, merge."""
    # BEGIN SOLUTION
    t, d = x.shape[1] // 2, x.shape[2]
    x1, x2 = x[:, :t], x[:, t:]  # partition (MMCA 0)
    a = attention_from(x1, lay)
    logdet = d * torch.log(torch.diagonal(a, dim1=1, dim2=2)).sum(1)  # triangular: the diagonal only
    return torch.cat([x1, a @ x2], 1), logdet  # merge (Y1 = X1, Y2 = A X2)
    # END SOLUTION


def my_ica_inverse(y: torch.Tensor, lay: ICA) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 2T, D) -> (x, logdet_inv (B,)) with logdet_inv = -logdet."""
    # BEGIN SOLUTION
    t, d = y.shape[1] // 2, y.shape[2]
    y1, y2 = y[:, :t], y[:, t:]
    a = attention_from(y1, lay)  # Y1 = X1, so A is recomputed exactly
    x2 = torch.linalg.solve_triangular(a, y2, upper=True)  # back-substitution, no inverse
    return torch.cat([y1, x2], 1), -d * torch.log(torch.diagonal(a, dim1=1, dim2=2)).sum(1)
    # END SOLUTION


# %% [markdown]
# Now the check (`mango_lite.exercises.exercise_1_1`). The library's layer starts near the identity
# ($\gamma = 0.1$, zero-initialised temperature); a comparison at the starting point would hide a wrong
# $\gamma$ or $\tau$, so the check moves every parameter away from its initial value first, compares
# $A$, the forward map, the log-det and the inverse in float64, and refuses a general inverse
# (`torch.linalg.inv`, `solve`, `pinv`): a wrong answer gets a hint about what differs, never the numbers.

# %%
exercises.exercise_1_1(attention_from, my_ica_forward, my_ica_inverse)

# %% [markdown]
# Twenty lines reproduce the library to round-off. What `mango_lite.ICA` adds is bookkeeping: several
# heads, the other partitions (notebook 03), the lower-triangle direction, positional codes on $Q$ and
# $K$, a query/key width independent of $D$, and input checks. The rest of this notebook checks the
# claims behind these lines: the Jacobian, the log-det, the inverse and the conditioning.

# %% [markdown]
# ## 3. The Jacobian is block triangular
#
# Order the output as $(Y_1, Y_2)$ and the input as $(X_1, X_2)$ (a permutation, which changes
# nothing in $|\det|$). Then
#
# $$\frac{\partial (Y_1, Y_2)}{\partial (X_1, X_2)} =
# \begin{pmatrix} I & 0 \\ \partial Y_2/\partial X_1 & \partial Y_2/\partial X_2 \end{pmatrix},$$
#
# because $Y_1 = X_1$ does not depend on $X_2$. The lower-left block is messy (it carries the gradient
# through softmax), but it does not matter: a block-triangular determinant is the product of the
# diagonal blocks' determinants. And since $A$ depends on $X_1$ only, $Y_2 = A X_2$ is *linear* in
# $X_2$: with tokens-major flattening, $\partial\,\mathrm{vec}(Y_2)/\partial\,\mathrm{vec}(X_2) = A \otimes I_D$.
# Hence
#
# $$\log|\det J| = \log|\det(A\otimes I_D)| = D\,\log|\det A| = D \sum_{i=1}^{T} \log\big(1 + \gamma\, s_{ii}\big),$$
#
# because $A$ is triangular. That is $O(T)$ per head once $S$ is known, with no `slogdet`.
# Let us look at the actual autograd Jacobian of the layer (MMCA variant 0: $X_1$ = modality A's
# tokens, which are the first $TD$ coordinates).

# %%
# NBVAL_CHECK_OUTPUT
# (deterministic and the same at every preset: CI compares this output with the committed one)
flat = x[:1].reshape(-1)
jac = torch.autograd.functional.jacobian(lambda v: layer(v.view(1, 2 * T, D))[0].reshape(-1), flat)
n = T * D
fig, ax = plt.subplots(figsize=(5, 4.3))
plot_jacobian(jac, ax, title="|J| of one ICA layer (MMCA, A conditions B)", split=[n])
plt.show()

kron = torch.kron(A, torch.eye(D, dtype=torch.float64))
print("max |dY1/dX2|          =", jac[:n, n:].abs().max().item())
print("max |dY2/dX2 - A(x)I_D| =", (jac[n:, n:] - kron).abs().max().item())
assert jac[:n, n:].abs().max() == 0
assert torch.allclose(jac[n:, n:], kron, atol=1e-12)

# %% [markdown]
# The upper-right block is exactly zero and the lower-right block is exactly $A\otimes I_D$: the
# derivation holds. Now the determinant itself: the layer's returned log-det against `slogdet` of the
# full autograd Jacobian.

# %%
# NBVAL_CHECK_OUTPUT
# (deterministic and the same at every preset: CI compares this output with the committed one)
_, logdet = layer(x)
exact = torch.stack([
    torch.linalg.slogdet(torch.autograd.functional.jacobian(lambda v: layer(v.view(1, 2 * T, D))[0].reshape(-1), xi.reshape(-1)))[1]
    for xi in x
])
print("layer log-det   :", logdet.detach().numpy())
print("slogdet(J)      :", exact.detach().numpy())
print("published factor:", reference.published_logdet(layer, x).detach().numpy(), " <- slogdet(A) * (2T)/2")
assert torch.allclose(logdet, exact, atol=1e-10)

# %% [markdown]
# The published code multiplies $\log|\det A|$ by $L/2 = T$ (half the token count) instead of $D$.
# The two agree only when $D = T$; here $D=4$, $T=6$, so the published value is off by the factor
# $T/D = 1.5$. Notebook 02 measures this systematically.
#
# ## 4. What the triangular mask buys
#
# A triangular matrix is invertible exactly when no diagonal entry is zero. Here
# $a_{ii} = 1 + \gamma s_{ii}$ with $s_{ii}\in(0,1]$, so with $|\gamma|<1$ every diagonal entry is positive.
# (The token that attends only to itself has $s_{ii} = 1$ and $a_{ii} = 1 + \gamma$: at $\gamma = -1$ it
# would vanish, one reason $|\gamma|$ is kept below 1.)
#
# The mask is **not** what makes $A$ invertible. Without it $S$ is a dense matrix with positive entries
# whose rows sum to 1, so $\|\gamma S\|_\infty = |\gamma| < 1$: every eigenvalue of $\gamma S$ has modulus at
# most $|\gamma|$, every eigenvalue of $I + \gamma S$ lies within $|\gamma|$ of 1, and the unmasked matrix is
# invertible too. What the mask buys is *cheap, exact* invertibility:
#
# * the determinant of a triangular matrix is the product of its diagonal, so
#   $\log|\det A| = \sum_i \log(1 + \gamma s_{ii})$ costs $O(T)$, where a dense $A$ needs an $O(T^3)$ LU
#   factorisation at every training step;
# * the inverse is one triangular solve in $O(T^2 d)$ (section 5), the cost of the forward product, where a
#   dense $A$ needs a general solve;
# * the map becomes autoregressive over the token order, so each layer moves information one way along
#   it. The paper's block uses the upper triangle in every layer (`MangoBlock`'s default, with
#   `FlowConfig.paper()`); mango_lite's recommended layout (`FlowConfig.recommended()`), used by its task
#   models, alternates the triangle from layer to layer as TarFlow alternates its direction, so that
#   information moves both ways.
#
# ## 5. The inverse: one triangular solve
#
# Given $y$: partition it, $Y_1 = X_1$, so $Q$, $K$ and hence $A$ can be **recomputed exactly** from
# $Y_1$. Then $X_2$ solves $A X_2 = Y_2$, an upper-triangular system solved by back-substitution
# (`torch.linalg.solve_triangular`) in $O(T^2 d)$. That is the cost of the forward matrix product, and
# it runs in parallel over channels and batch. The published code instead calls `pinv(A)`, an SVD
# costing $O(T^3)$, which is also less accurate. `benchmarks/bench_ica.py` measures both.

# %%
z, ld = layer(x)
x_rec, ld_inv = layer.inverse(z)
x_pinv = reference.published_inverse(layer, z)
print(f"round trip, triangular solve: {(x_rec - x).abs().max().item():.2e}")
print(f"round trip, published pinv  : {(x_pinv - x).abs().max().item():.2e}")
print(f"logdet + logdet_inv         : {(ld + ld_inv).abs().max().item():.2e}")
assert (x_rec - x).abs().max() < 1e-12 and (ld + ld_inv).abs().max() < 1e-12

# %% [markdown]
# ## 6. Conditioning, and why mango_lite learns $\gamma$
#
# Invertible is not the same as *well-conditioned*. With $\gamma = 1$, row $i$ of $A$ has diagonal
# $1 + s_{ii}$ and off-diagonal mass $1 - s_{ii}$. Each row is strictly diagonally dominant, but only by
# $2s_{ii}$, which attention can make arbitrarily small; Varah's bound then gives only
# $\|A^{-1}\|_\infty \le 1/(2\min_i s_{ii})$. More importantly, every layer doubles the
# per-sample token-mean direction ($A\mathbf 1 = 2\cdot\mathbf 1$) relative to the rest. ActNorm
# rescales, so after dozens of layers all other directions are shrunk geometrically, and the inverse of
# the stack cannot be computed in float32.
#
# With $|\gamma| < 1$ every row is **strictly** diagonally dominant:
# $(1+\gamma s_{ii}) - |\gamma|(1-s_{ii}) \ge 1-|\gamma|$. By Varah's bound,
#
# $$\|A^{-1}\|_\infty \le \frac{1}{1-|\gamma|}, \qquad \mathrm{cond}_\infty(A) \le \frac{1+|\gamma|}{1-|\gamma|},$$
#
# **whatever the attention does**. Starting at $\gamma = 0.1$ keeps each layer close to the identity
# (the same idea as Glow's zero-initialised couplings); $\gamma$, $W_q$ and $W_k$ all receive gradients,
# and training sets how much mixing each layer keeps (notebooks 04-07 report the learned values). Below,
# sharp random attention, many draws:
# the measured $\|A^{-1}\|_\infty$ never crosses the bound.

# %%
gammas = [-0.9, -0.5, 0.0, 0.1, 0.5, 0.9, 0.99]
rows = []
for g in gammas:
    lay = ICA(dim=4, tokens=32, partition="imca", gamma=g if g != 0.0 else 1e-6).double()
    with torch.no_grad():
        lay.log_temperature.fill_(-2.0)  # sharp attention: the hardest case
    a = reference.attention_matrix(lay, torch.randn(64, 64, 4, dtype=torch.float64))
    inv_norm = torch.linalg.matrix_norm(torch.linalg.inv(a), ord=float("inf")).max().item()
    bound = 1 / (1 - abs(lay.gamma.item()))
    rows.append((g, inv_norm, bound))
    assert inv_norm <= bound * (1 + 1e-9)
lay = ICA(dim=4, tokens=32, partition="imca", gamma=None).double()
with torch.no_grad():
    lay.log_temperature.fill_(-2.0)
a = reference.attention_matrix(lay, torch.randn(64, 64, 4, dtype=torch.float64))
paper_norm = torch.linalg.matrix_norm(torch.linalg.inv(a), ord=float("inf")).max().item()

fig, ax = plt.subplots(figsize=(5.5, 3.5))
ax.plot([r[0] for r in rows], [r[2] for r in rows], "k--", label="bound 1/(1-|γ|)")
ax.plot([r[0] for r in rows], [r[1] for r in rows], "o-", label="measured max ‖A⁻¹‖∞ (64 draws)")
ax.axhline(paper_norm, color="tab:red", lw=1, label=f"paper form γ=1: {paper_norm:.2f}")
ax.set_yscale("log"); ax.set_xlabel("γ"); ax.set_ylabel("‖A⁻¹‖∞"); ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# **Explore.** Move $\gamma$ and the temperature and watch $\mathrm{cond}_\infty(A)$ against its bound. The
# matrix drawn is the mixing part $A - I = \gamma S$ on a diverging scale (white is 0,
# the masked triangle too): a negative $\gamma$ *subtracts* attention from each token. Sharp attention
# ($\log\tau$ well below 0) with $|\gamma|$ near 1 is where the bound is nearly reached. Three settings are
# drawn for a static reading (GitHub, the book); with a running kernel the sliders redraw it.

# %%
from mango_lite.notebook import interact_with_static
from mango_lite.viz.flows import plot_conditioning


def conditioning(gamma: float = 0.5, log_temperature: float = 0.0) -> None:
    fig, ax = plt.subplots(figsize=(4.4, 3.8), constrained_layout=True)
    plot_conditioning(gamma, log_temperature, ax=ax)
    plt.show()


interact_with_static(conditioning, [dict(gamma=0.1, log_temperature=0.0), dict(gamma=0.9, log_temperature=-2.0),
                                    dict(gamma=-0.9, log_temperature=-2.0)],
                     gamma=(-0.95, 0.95, 0.05), log_temperature=(-3.0, 1.0, 0.25))

# %% [markdown]
# ## 7. Training without the $T \times T$ matrix
#
# Everything above formed $S$, a $T\times T$ matrix per head and sample, and autograd keeps it for the
# backward pass: at $T = 1024$ tokens that is 4 MiB per sample, head and layer in float32. Yet the forward
# needs only two things from $S$: the product $S X_2$ and the diagonal $s_{ii}$ for the log-det. Write the
# logits $l_{ij} = q_i\cdot k_j$ (temperature folded into $q$) and the row log-sum-exp over the allowed
# tokens, $\mathrm{lse}_i = \log\sum_{j} e^{l_{ij}}$. Then
#
# $$s_{ii} = e^{\,q_i\cdot k_i - \mathrm{lse}_i}.$$
#
# A fused attention kernel (FlashAttention; PyTorch's `scaled_dot_product_attention`) computes $S V$ block
# by block without holding $S$, keeps $\mathrm{lse}$ for its backward, and recomputes the blocks there.
# The log-det needs the *gradient* of $\mathrm{lse}$ too: $\partial\,\mathrm{lse}_i / \partial l_{ij} = s_{ij}$, so
# a loss with $g_i = \partial L/\partial\,\mathrm{lse}_i$ adds $g_i s_{ij}$ to the gradient of logit $l_{ij}$.
# The kernel's backward already computes that gradient, for the output, as
#
# $$\frac{\partial L}{\partial l_{ij}} = s_{ij}\,(dO_i\cdot v_j - \Delta_i), \qquad \Delta_i = dO_i\cdot o_i ,$$
#
# reading $o_i$ from the output it is handed. Add one value column that is zero, hand the backward $-g_i$
# as that column's output and 1 as its output gradient: the column contributes $0$ to $dO_i\cdot v_j$ and
# $-g_i$ to $\Delta_i$, so the same kernel returns the gradients of $S V$ and of $\mathrm{lse}$ together.
# One fused forward and one fused backward per layer, and nothing of size $T\times T$ kept
# (`use_fused_attention(model)`; `mango_lite/flows/fused_attention.py`).
#
# The check: the two terms and their gradients against the materialised softmax, in float64, for both
# triangles; then a whole layer switched to the fused path, with its parameters moved away from their
# initial values.

# %%
from mango_lite.engine.cost import saved_for_backward_bytes
from mango_lite.flows import perturb_parameters, use_fused_attention
from mango_lite.flows.fused_attention import masked_attention_terms

g64 = torch.Generator().manual_seed(0)
q, k, v = (torch.randn(2, 1, 12, 8, dtype=torch.float64, generator=g64, requires_grad=True) for _ in range(3))
w_out, w_diag = torch.randn(2, 1, 12, 8, dtype=torch.float64), torch.randn(2, 1, 12, dtype=torch.float64)
keep = torch.ones(12, 12, dtype=torch.bool)
worst = 0.0
for upper in (True, False):
    s_full = torch.softmax((q @ k.transpose(-1, -2)).masked_fill(~(keep.triu() if upper else keep.tril()), float("-inf")), -1)
    fused_terms = masked_attention_terms(q, k, v, upper)
    dense_terms = (s_full @ v, torch.diagonal(s_full, dim1=-2, dim2=-1))
    grads = [torch.autograd.grad((sv * w_out).sum() + (torch.log1p(0.5 * d) * w_diag).sum(), (q, k, v))
             for sv, d in (fused_terms, dense_terms)]
    worst = max([worst, *((a - b).abs().max().item() for a, b in zip(fused_terms, dense_terms)),
                 *((a - b).abs().max().item() for a, b in zip(*grads))])
print(f"S V, diag(S) and their gradients, fused against materialised: largest difference {worst:.1e}")
assert worst < 1e-10

dense_layer = ICA(dim=8, tokens=256, partition="imca").double()
perturb_parameters(dense_layer, 0.3, torch.Generator().manual_seed(1))
fused_layer = ICA(dim=8, tokens=256, partition="imca").double()
fused_layer.load_state_dict(dense_layer.state_dict())
use_fused_attention(fused_layer)
x_big = torch.randn(2, 512, 8, dtype=torch.float64)


def kept_for_backward_mib(module) -> float:
    """MiB of the distinct tensors autograd keeps from one forward of ``module`` for the backward."""
    return saved_for_backward_bytes(lambda: module(x_big.clone().requires_grad_())) / 2**20


(y_d, ld_d), (y_f, ld_f) = dense_layer(x_big), fused_layer(x_big)
print(f"whole layer, T = 256: output {(y_f - y_d).abs().max().item():.1e}, log-det {(ld_f - ld_d).abs().max().item():.1e}; "
      f"kept for the backward: materialised {kept_for_backward_mib(dense_layer):.2f} MiB, "
      f"fused {kept_for_backward_mib(fused_layer):.2f} MiB")
assert (y_f - y_d).abs().max() < 1e-12 and (ld_f - ld_d).abs().max() < 1e-10
assert kept_for_backward_mib(fused_layer) < 0.5 * kept_for_backward_mib(dense_layer)

# %% [markdown]
# The fused path is off by default: for the small token grids of the task models here the materialised
# $S$ is cheap, and the inverse still needs $A$ itself (one triangular solve). How the two paths compare in
# time and memory at 256 and 1024 tokens, against PyTorch's own fused causal attention with the same
# projections, is measured by `benchmarks/bench_fused_ica.py` (README, *Measured performance*).
#
# ## 8. Direction conventions in other libraries
#
# Sign and direction bugs are the most common flow bug (normflows#27, pytorch-flows#16, glow-tts#17).
# This is how the libraries a reader may know compare with mango_lite:
#
# | library | `forward` maps | log-det returned | inverse |
# |---|---|---|---|
# | **mango_lite** | data → latent | `(z, logdet)`, summed, shape (B,) | `inverse(z)` → `(x, -logdet)` |
# | normflows | latent → data (sampling direction) per layer | `(z, log_det)` (B,) | `layer.inverse(z)` |
# | nflows | data → noise | `(outputs, logabsdet)` (B,) | `.inverse(inputs)` |
# | FrEIA | data → latent, `module([x], rev=False)` | `(outs, log_jac_det)`; `rev=True` gives −J | same call, `rev=True` |
# | zuko | `flow(c).transform`: data → latent | `call_and_ladj(x)` | `t.inv` |
# | Glow (rosinality) | data → latent | `(log_p, logdet, z_outs)` | `reverse(z_list)` |
# | TarFlow | data → noise | log-det **averaged** per dimension | sequential `reverse` |
# | UvA tutorial 11 | `flow(z, ldj, reverse=False)` | running `ldj` | `reverse=True` |
#
# ## Summary
# * ICA = partition → attention from $X_1$ only → $Y_2 = (I+\gamma S) X_2$ → merge.
# * Block-triangular Jacobian with $A\otimes I_D$ on the $X_2$ block ⇒ $\log|\det J| = D\sum_i\log(1+\gamma s_{ii})$,
#   exact and verified above against autograd (the published factor $T$ instead of $D$ is not).
# * Inverse = recompute $A$ from $Y_1$ + one triangular solve.
# * $|\gamma|<1$ gives a hard conditioning bound; notebook 02 shows what it does for a 96-layer stack.
# * Training needs only $S X_2$ and $\mathrm{diag}(S) = e^{q_i\cdot k_i - \mathrm{lse}_i}$: one fused attention forward
#   and one fused backward, the log-sum-exp's gradient folded into the kernel's $\Delta_i$; no $T\times T$ matrix kept.
#
# ## Exercises
#
# ### Exercise 1.2 · Predict the published log-det, then measure it
#
# The published code multiplies $\log|\det A|$ by $L/2 = T$ instead of $d$. For one head with $D = 64$
# channels and $T = 256$ tokens per modality, by what factor is the published log-det of one layer off
# from the exact one? Write your prediction as a number *before* running the check, which builds that
# layer and measures the ratio.

# %%
# BEGIN SOLUTION
# STUB: predicted_ratio = None  # published log-det / exact log-det, as a number
predicted_ratio = 256 / 64  # the factor T replaces d = D: off by T / D = 4
# END SOLUTION

# %%
exercises.exercise_1_2(predicted_ratio)  # builds that layer, measures the ratio, compares without printing it

# %% [markdown]
# ### Exercise 1.3 · How large may gamma be?
#
# Section 6 bounds the condition number by $(1+|\gamma|)/(1-|\gamma|)$ whatever the attention does. Which
# largest $|\gamma|$ still guarantees $\mathrm{cond}_\infty(A) \le 10$? Compute it, then the check draws
# sharp random attention at that $\gamma$ and measures the worst condition number.

# %%
# BEGIN SOLUTION
# STUB: gamma_max = None  # the largest |gamma| with (1 + |gamma|) / (1 - |gamma|) <= 10
gamma_max = 9 / 11  # (1 + g) / (1 - g) = 10  <=>  g = 9 / 11
# END SOLUTION

# %%
worst = exercises.exercise_1_3(gamma_max)
print(f"at your gamma, the worst cond_inf(A) over 64 draws of sharp attention is {worst:.2f} (the bound: 10)")

# %% [markdown]
# ### Exercise 1.4 · Lower triangle (written answer)
#
# `ICA(..., triangle="lower")` masks the other way: token $i$ attends to tokens $j \le i$. What changes in
# the log-det and in the inverse, and why does mango_lite's recommended layout (`FlowConfig.recommended()`,
# the task models' default) alternate the two directions, where the paper's block keeps the upper
# triangle in every layer?
#
# <!-- BEGIN SOLUTION -->
# *Answer.* $A$ is then lower triangular with the same diagonal $1 + \gamma s_{ii}$, so the log-det formula
# is unchanged; the inverse is a *lower* triangular solve (forward substitution). With the upper triangle
# alone, token $i$ of $X_2$ receives only from tokens after it; in IMCA, where modality A's tokens come
# first in $X_2$, B's tokens would never receive from A's. Alternating the direction between layers (as
# TarFlow alternates its autoregressive order) lets information move both ways within a block.
# <!-- END SOLUTION -->

# %% [markdown]
# ### Exercise 1.5 · The log-det with several heads (derive, then implement)
#
# With $H$ heads, ICA cuts the $D$ channels of $X_2$ into $H$ groups of $D/H$ channels; head $h$ has its own
# queries, keys, temperature and $\gamma_h$, hence its own triangular $A_h = I + \gamma_h S_h$, and it mixes
# only its own group: $Y_2^{(h)} = A_h X_2^{(h)}$. Derive $\log|\det J|$ of the layer (start from the
# one-head derivation of §3: which block of $J$ does each head fill?), then write `multihead_logdet(a, dim)`
# that takes the matrices $A_h$ as a tensor of shape (B, H, T, T) and $D$ and returns the log-det per
# sample, shape (B,). The check builds a two-head layer with its parameters moved away from their start and
# compares with the layer's own log-det.

# %%
def multihead_logdet(a: torch.Tensor, dim: int) -> torch.Tensor:
    # BEGIN SOLUTION
    # STUB: raise NotImplementedError  # sum over heads of (channels per head) x sum_i log A_h[i, i]
    channels_per_head = dim // a.shape[1]
    return channels_per_head * torch.log(torch.diagonal(a, dim1=-2, dim2=-1)).sum(dim=(-1, -2))
    # END SOLUTION


# %%
exercises.exercise_1_5(multihead_logdet)

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# *Model answer.* Order the coordinates of $X_2$ head by head and channel by channel. Head $h$ maps its
# group $X_2^{(h)}$ (T tokens × D/H channels) by $A_h$, the same matrix for each of its D/H channels, so its
# block of $J$ is $A_h \otimes I_{D/H}$ (up to the ordering, which does not change $|\det|$); the blocks of
# different heads do not touch. $J$ is block-triangular with the identity on $X_1$, so
# $\log|\det J| = \sum_h \frac{D}{H} \log|\det A_h| = \frac{D}{H}\sum_h \sum_i \log(1 + \gamma_h s^{(h)}_{ii})$.
# With one head this is §3's $D\sum_i \log(1+\gamma s_{ii})$.
# <!-- END SOLUTION -->

# %% [markdown]
# ### Exercise 1.6 · A bound on the inverse (derive, then measure)
#
# §6 used the bound $\|A^{-1}\|_\infty \le 1/(1-|\gamma|)$ for $A = I + \gamma S$. (a) Derive it from two
# facts about $S$: its entries are non-negative and each row sums to 1 (a softmax, masked or not). Hint:
# what is $\|\gamma S\|_\infty$, and what does the Neumann series $\sum_k (-\gamma S)^k$ converge to?
# (b) Write `inverse_inf_norm(a)` returning $\|A^{-1}\|_\infty$ (the largest row sum of $|A^{-1}|$) for a batch
# (B, T, T) of upper-triangular matrices *without* a general inverse (the check forbids one). The check
# compares with its own value and measures how close sharp attention at $\gamma = -0.8$ comes to the bound.

# %%
def inverse_inf_norm(a: torch.Tensor) -> torch.Tensor:
    # BEGIN SOLUTION
    # STUB: raise NotImplementedError  # solve A X = I (triangular), then the largest row sum of |X|
    eye = torch.eye(a.shape[-1], dtype=a.dtype).expand_as(a)
    a_inv = torch.linalg.solve_triangular(a, eye, upper=True)
    return a_inv.abs().sum(dim=-1).amax(dim=-1)
    # END SOLUTION


# %%
closeness = exercises.exercise_1_6(inverse_inf_norm)
print(f"largest measured ||A^-1||_inf, as a share of the bound 1 / (1 - |gamma|): {closeness:.6f}")

# %% [markdown]
# <!-- BEGIN SOLUTION -->
# *Model answer.* (a) $\|\gamma S\|_\infty = |\gamma| \max_i \sum_j s_{ij} = |\gamma| < 1$. Then
# $(I + \gamma S)\sum_{k=0}^{n}(-\gamma S)^k = I - (-\gamma S)^{n+1} \to I$, so $A^{-1} = \sum_k (-\gamma S)^k$
# and $\|A^{-1}\|_\infty \le \sum_k |\gamma|^k = 1/(1-|\gamma|)$. Nothing here needs the mask: the bound
# (and invertibility) hold for an unmasked softmax too; the mask buys the cheap log-det and solve.
# (b) The measured share is 1 to round-off: the last token of an upper-triangular $S$ attends to itself
# alone ($s_{TT} = 1$), so $a_{TT} = 1 + \gamma$ and, for $\gamma < 0$, that row of $A^{-1}$ has
# $1/(1-|\gamma|)$ on its diagonal: the bound is attained.
# <!-- END SOLUTION -->

# %% [markdown]
# ## References
#
# * Truong et al., *MANGO: Multimodal Attention-based Normalizing Flow Approach to Fusion Learning*, NeurIPS 2025, [arXiv:2508.10133](https://arxiv.org/abs/2508.10133)
# * Dinh, Krueger, Bengio, *NICE*, 2015, [arXiv:1410.8516](https://arxiv.org/abs/1410.8516)
# * Dinh, Sohl-Dickstein, Bengio, *Density estimation using Real NVP*, ICLR 2017, [arXiv:1605.08803](https://arxiv.org/abs/1605.08803)
# * Kingma, Dhariwal, *Glow: generative flow with invertible 1×1 convolutions*, NeurIPS 2018, [arXiv:1807.03039](https://arxiv.org/abs/1807.03039)
# * Papamakarios et al., *Normalizing flows for probabilistic modeling and inference*, JMLR 2021, [arXiv:1912.02762](https://arxiv.org/abs/1912.02762)
# * Zhai et al., *Normalizing flows are capable generative models* (TarFlow), 2024, [arXiv:2412.06329](https://arxiv.org/abs/2412.06329)
# * Vaswani et al., *Attention is all you need*, NeurIPS 2017, [arXiv:1706.03762](https://arxiv.org/abs/1706.03762)
