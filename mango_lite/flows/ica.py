"""Invertible cross-attention (ICA), the layer MANGO is built from.

Given a partition x -> (X1, X2) of the 2T tokens (T each), queries and keys come from X1 only:

    Q = LN(X1 Wq),  K = LN(X1 Wk),  S = softmax(mask(Q K^T / (tau sqrt(d_qk))))   (per head)
    A = I + gamma S,  Y1 = X1,      Y2 = A X2,          y = merge(Y1, Y2)

(d_qk = the query/key width per head, qk_dim / heads; = d = D / heads unless ``qk_dim`` is set.)

The mask keeps the upper triangle including the diagonal (row i attends to j >= i), so S is upper
triangular with positive diagonal and rows summing to 1, and A has diagonal 1 + gamma s_ii > 0:
A is always invertible. Because A depends on X1 only and X1 passes through unchanged, the Jacobian is
block triangular, with identity on the X1 block and (A (x) I_d) on the X2 block (d channels per head):

    log|det J| = d * sum_i log(1 + gamma s_ii)   summed over heads      (exact, O(T) per head)

gamma. The official code uses A = S + I (gamma = 1). Each row of A then has diagonal 1 + s_ii and
off-diagonal mass 1 - s_ii, so each row is strictly diagonally dominant, but only by 2 s_ii, which
attention can make arbitrarily small; Varah's bound then gives only ||A^-1||_inf <= 1 / (2 min_i s_ii).
Worse, every layer doubles the smooth (token-mean) direction relative to the rest, ActNorm rescales, and
after 96 layers the composite is too ill-conditioned to invert in float32.
With gamma = tanh(g) in (-1, 1), learnable per head, every row is strictly diagonally dominant:
(1 + gamma s_ii) - |gamma| (1 - s_ii) >= 1 - |gamma|, hence ||A^-1||_inf <= 1 / (1 - |gamma|) and
cond_inf(A) <= (1 + |gamma|) / (1 - |gamma|), whatever the attention does. ``gamma=None`` restores
the paper's fixed gamma = 1.

gamma starts at 0.1: like Glow's zero-initialised couplings, each layer begins close to the identity, so
a 96-layer stack stays invertible in float32 after ActNorm's data init (benchmarks/bench_ica.py (c));
gamma, Q and K all receive gradients, so training sets how much attention mixing each layer uses (in our
runs it moves both ways: it shrank in the density model of notebook 04 and in the task models).

Direction. With the upper triangle, token i of X2 receives only from tokens j >= i: in IMCA, where
modality A's tokens come first in X2, B's tokens would never receive from A's. ``triangle="lower"``
masks the other way (row i attends to j <= i); A is then lower triangular, with the same diagonal and
log-det, and the inverse is a lower triangular solve. The paper's block uses the upper triangle in every
layer (:class:`~mango_lite.flows.MangoBlock`'s default, with ``FlowConfig.paper()``); mango_lite's recommended
layout (``FlowConfig.recommended()``, ``alternate=True``), used by its task models, alternates the two from
layer to layer, as TarFlow alternates its autoregressive direction, so within a block information moves
both ways.

Position. Attention from content alone cannot tell which tokens are co-located. With ``grid=(h, w)``
a fixed 2-D sinusoidal code of each X1 token's grid position is added (times a learnable scale per
head) to the normalised queries and keys. It depends on X1's positions only, never on X2, so A is
still a function of X1 alone: the Jacobian stays block triangular and the log-det and inverse are
unchanged.

Per-row gamma (``gamma_mode``; a DEVIATION FROM THE PAPER, off by default). One gamma per head serves every
row of X2, but rows can want opposite amounts: in the alignment toy (``mango_lite.training.alignment``) B's rows
gain from subtracting the A token the attention found (gamma < 0) while A's rows, whose tokens are independent,
want no mixing (gamma = 0), so a shared gamma settles in between. ``gamma_mode`` gives each row i of X2 its own
gamma_i, still computed from X1 alone (constants count as functions of X1):

    A = I + diag(gamma) S,   Y2 = A X2,   gamma = (gamma_1, ..., gamma_T) per head, |gamma_i| < 1

* ``"head"`` (default, the layer as described above, bit for bit): gamma_i = tanh(r g_h) for every row.
* ``"token"``: gamma_i = tanh(r (g_h + b_{h,i}) + w_h . LN(x1_i) / sqrt(D)), with b (heads, T) a learned bias per row
  and w (heads, D) a linear read of X1's token i (LN = layer norm without affine parameters, so the read
  does not depend on the token's scale; it is 0 when D = 1). Row i of X2 is paired with token i of X1: the
  co-located token for MMCA, a neighbouring one for IMCA, the token at the same row of W x for LICA.
* ``"modality"``: gamma_i = tanh(r (g_h + c_{h,m(i)})), with c (heads, 2) one learned offset per modality
  and m(i) the modality of the token that row i of X2 holds: for MMCA all rows hold the X2 modality (the
  mode is then head mode reparametrised; the other modality's offset gets no gradient), for IMCA the first
  T/2 rows hold A's tokens and the last T/2 B's. LICA's rows are learned mixtures; m(i) is the modality of the token
  row i holds at initialisation, when W is the starting
  permutation (as the positional codes use X1's starting positions): a learned constant per token position
  class, not a statement about what the row holds after training.

(r = ``gamma_rate``, g_h the per-head gate.) b, w and c start at 0, so at initialisation every row has the
per-head gamma and the layer equals head mode exactly; ``gamma`` then still returns tanh(r g_h), the per-head
part, and :meth:`InvertibleCrossAttention.row_gamma` the gamma of every row for given X1 tokens. Why the three
properties of the layer survive:

* Log-det. diag(gamma) S is upper (lower) triangular like S, so A is triangular with diagonal
  1 + gamma_i s_ii, and per head and channel the X2 block of the Jacobian is A; hence
  log|det J| = d * sum_i log(1 + gamma_i s_ii) summed over heads, with 1 + gamma_i s_ii > 0 since |gamma_i| < 1
  and 0 < s_ii <= 1.
* Conditioning. Row i of A has diagonal 1 + gamma_i s_ii and off-diagonal mass |gamma_i| (1 - s_ii), so
  (1 + gamma_i s_ii) - |gamma_i| (1 - s_ii) >= 1 - |gamma_i| > 0: every row is strictly diagonally dominant
  and ||A^-1||_inf <= 1 / (1 - max_i |gamma_i|), as for one gamma.
* Triangular Jacobian. gamma depends on X1 (and constants) only, never on X2, and X1 passes through: dY1/dX2 = 0,
  dY2/dX2 = A (x) I_d, so det J = det(A)^d as before (dY2/dX1 is non-zero but sits off the block diagonal).
  The inverse recomputes S and gamma from Y1 = X1 and solves (I + diag(gamma) S) X2 = Y2 triangularly.

Self logit (``self_logit``; a DEVIATION FROM THE PAPER, off by default). A learnable offset beta_h per head is
added to the diagonal logits before the softmax:

    S = softmax(mask(Q K^T / (tau sqrt(d_qk)) + diag(beta_h)))   (per head h; beta starts at 0)

Why: row i's query and key i both come from X1's token i, so a content-matching attention gives every row a
large weight on itself. In the alignment toy (``mango_lite.training.alignment``) B's row k's query and the
diagonal key k are read from the same X1 token, whose content is also that of the aligned A key, so the rows split
their attention between the diagonal (s_kk ~ 0.40-0.45) and the aligned A token (~ 0.40). gamma scales both
parts of the row together, so the row cannot subtract its prediction (gamma s_aligned -> -1) without shrinking its
own token by gamma s_kk as well: per-row gamma reached 0.029-0.030 bits/dim of the one-layer bound 0.180
(16-17 %). With beta (learned negative) B's diagonal weight drops to
~0.04 (beta ~ -3.5) and B's gamma to ~ -0.95: 0.148 ("token") and 0.150 ("modality") bits/dim, 82-83 % of the
bound (3 seeds, 400 steps); head gamma, which A's rows hold near 0, reaches 0.048 (26 %).
Why the layer's properties are unaffected: beta is a constant, so S is still computed from X1 (and constants)
only, never from X2; the offset is added before the mask and the softmax, so S is still a row-stochastic
triangular matrix with positive diagonal (0 < s_ii <= 1). Everything above - the triangular A, its diagonal
1 + gamma_i s_ii > 0, the block-triangular Jacobian, log|det J| = d * sum_i log(1 + gamma_i s_ii), the strict
diagonal dominance and the triangular-solve inverse - only uses those properties. ``self_logit=False`` adds no
parameter and leaves the layer bit for bit as it was. It combines with every ``gamma_mode`` and with positions.

Inverse: recompute A from Y1 (= X1) and solve A X2 = Y2 with a triangular solve: O(T^2 d), no
pseudo-inverse. (The published code multiplies slogdet(A) by L/2 instead of d; that is only right
when d = L/2 - see ``mango_lite.flows.reference`` and notebook 02.)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..utils import check_tokens
from .base import InvertibleModule
from .config import ICA_FIELDS, FlowConfig, resolve
from .fused_attention import masked_attention_terms
from .partition import PARTITIONS, make_partition


class InvertibleCrossAttention(InvertibleModule):
    """One MANGO layer: partition -> invertible cross-attention -> merge.

    Args:
        dim: channels D of every token.
        tokens: tokens T per modality (the input has 2T tokens).
        partition: "mmca", "imca" or "lica".
        variant: which MMCA (0-1) / IMCA (0-3) configuration; for LICA only a label.
        config: the flow's options (:class:`~mango_lite.flows.FlowConfig`; default ``FlowConfig()``, the paper's
            layer with a learnable gamma from 0.1). This layer reads:

            * ``heads``: channel groups; head h re-mixes channels [h*D/heads, (h+1)*D/heads) of X2 with its own A_h.
            * ``gamma``: initial weight of the attention in A = I + gamma S, in (-1, 1), learnable; ``None`` = the
              paper's fixed A = S + I.
            * ``learn_gamma``: ``False`` fixes gamma at its initial value (``gamma=0.0, learn_gamma=False`` is the
              no-attention control: the layer is then the identity on X2 and its log-det is 0).
            * ``gamma_rate``: gamma = tanh(gamma_rate * g) for the stored parameter g. Adam moves a scalar by
              about lr per step whatever its gradient, so with rate 1 gamma barely leaves its start in a
              few hundred steps; a rate r lets it travel r times faster (r = 1 is the plain tanh).
            * ``gamma_mode``: "head" (one gamma per head, the default), "token" (gamma per X2 row from a learned
              bias per row and a linear read of X1's token i) or "modality" (gamma per head and per modality of
              the X2 row). A deviation from the paper, see the module docstring; the extra parameters start at
              0, so the layer starts equal to head mode, and ``gamma_rate`` scales them like the gate.
            * ``qk_dim``: width of the query/key projections (``None`` = D), a multiple of ``heads``. Only S
              depends on it, never the log-det factor d = D / heads, so wide flow scales can use a narrow
              one (MANGO's task models use 2 x the encoder width).
            * ``self_logit``: add a learnable per-head offset beta_h (``self_logit_offset``, zero-initialised) to
              the diagonal logits of S before the softmax, so the layer can learn how much each row attends to
              its own X1 partner. A deviation from the paper (module docstring); ``False`` (default) = no
              parameter, the layer of before bit for bit.
        triangle: "upper" (row i attends to tokens j >= i, the paper's mask) or "lower" (j <= i).
        grid: (h, w) of each modality's tokens (raster order, T = h * w): adds fixed 2-D positional
            codes to the queries and keys (see the module docstring); ``None`` = no positions.
        **options: any of those fields, applied on top of ``config`` (``ICA(8, 16, "imca", heads=2)``).

    Shapes: forward(x: (B, 2T, D)) -> (y: (B, 2T, D), logdet: (B,)).
    """

    def __init__(
        self,
        dim: int,
        tokens: int,
        partition: str = "mmca",
        variant: int = 0,
        *,
        config: FlowConfig | None = None,
        triangle: str = "upper",
        grid: tuple[int, int] | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        # the options (heads, gamma, ...) and their defaults live in FlowConfig, stated once for every module
        self.config = cfg = resolve(config, options, owner="ICA", reads=ICA_FIELDS)
        heads, gamma, qk_dim = cfg.heads, cfg.gamma, cfg.qk_dim
        learn_gamma, gamma_rate, gamma_mode, self_logit = cfg.learn_gamma, cfg.gamma_rate, cfg.gamma_mode, cfg.self_logit
        if dim < 1 or tokens < 1:
            raise ValueError(f"ICA: expected dim >= 1 and tokens >= 1, got dim={dim}, tokens={tokens}")
        if heads < 1 or dim % heads:
            raise ValueError(f"ICA: dim ({dim}) must be divisible by heads ({heads})")
        key = str(partition).lower()
        if key not in PARTITIONS:
            raise ValueError(f"ICA: partition must be one of {tuple(PARTITIONS)}, got {partition!r}")
        qk_dim = dim if qk_dim is None else int(qk_dim)
        if qk_dim < heads or qk_dim % heads:
            raise ValueError(f"ICA: qk_dim ({qk_dim}) must be a positive multiple of heads ({heads})")
        self.dim, self.tokens, self.heads = dim, tokens, heads
        self.head_dim = dim // heads  # value channels per head: the log-det factor
        # query/key width: only the T x T attention depends on it, never the log-det, so it can be far
        # smaller than D (wide flow scales would otherwise spend 2 D^2 parameters per layer on it)
        self.qk_dim, self.qk_head_dim = qk_dim, qk_dim // heads
        self.partition_name, self.variant = key, variant
        self.partition = make_partition(key, tokens, dim, variant)
        self.query = nn.Linear(dim, qk_dim, bias=False)
        self.key = nn.Linear(dim, qk_dim, bias=False)
        self.query_norm = nn.LayerNorm(self.qk_head_dim)
        # no bias on the key norm: a shift shared by every key adds q_i . b to a whole softmax row,
        # which the softmax ignores, so it would be a parameter without a gradient
        self.key_norm = nn.LayerNorm(self.qk_head_dim, bias=False)
        # log of the learnable positive temperature tau, one per head
        self.log_temperature = nn.Parameter(torch.zeros(heads))
        # True where attention is blocked (strictly below the diagonal). Derived from ``tokens``, so it is
        # not saved in checkpoints (a 96-layer stack at T=1024 would otherwise store ~100 MB of masks).
        if triangle not in ("upper", "lower"):
            raise ValueError(f"ICA: triangle must be 'upper' or 'lower', got {triangle!r}")
        self.triangle = triangle
        self.upper = triangle == "upper"
        ones = torch.ones(tokens, tokens, dtype=torch.bool)
        self.register_buffer("blocked", ones.tril(-1) if self.upper else ones.triu(1), persistent=False)
        # fixed 2-D positional codes of the 2T tokens (A's grid, then B's: co-located tokens share a code)
        self.grid = None if grid is None else (int(grid[0]), int(grid[1]))
        if self.grid is not None:
            if self.grid[0] * self.grid[1] != tokens:
                raise ValueError(f"ICA: grid {self.grid} holds {self.grid[0] * self.grid[1]} tokens, expected tokens={tokens}")
            code = grid_position_code(*self.grid, self.qk_head_dim)
            # the codes of X1's tokens, gathered once: the partition's X1 positions are fixed (for LICA,
            # those W starts from), so the forward adds a constant (T, d_qk) table instead of a gather
            self.register_buffer("position_code", torch.cat([code, code]), persistent=False)
            self.register_buffer("x1_position_code", self.position_code[self.partition.x1_positions()],
                                 persistent=False)
            # LICA's starting permutation is a saved buffer: gather again once a checkpoint has replaced it
            self.register_load_state_dict_post_hook(_refresh_position_code)
            self.position_scale = nn.Parameter(torch.ones(heads))
        self.gamma_rate = float(gamma_rate)
        # gamma = tanh(g) in (-1, 1) weighs the attention against the identity (A = I + gamma S);
        # gamma=None fixes it at the paper's 1 (A = S + I). See the module docstring for why.
        if gamma is None:
            self.register_buffer("gate", torch.full((heads,), float("inf")))
        else:
            start = torch.full((heads,), math.atanh(gamma) / self.gamma_rate)
            if learn_gamma:
                self.gate = nn.Parameter(start)
            else:
                self.register_buffer("gate", start)
        self.learn_gamma = bool(learn_gamma) and gamma is not None
        # per-row gamma (deviation from the paper, module docstring): zero-initialised offsets of the gate's
        # argument, learnable with the gate (fixed zeros, i.e. head mode, when gamma is not learned)
        self.gamma_mode = gamma_mode
        extra: dict[str, Tensor] = {}
        if gamma_mode == "token":
            extra = {"gamma_row": torch.zeros(heads, tokens), "gamma_proj": torch.zeros(heads, dim)}
        elif gamma_mode == "modality":
            extra = {"gamma_modality": torch.zeros(heads, 2)}
        for name, value in extra.items():
            if self.learn_gamma:
                setattr(self, name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)
        # learnable offset of the diagonal logits, one per head (deviation from the paper, module docstring). It
        # shapes S, not gamma, so it is learned like the temperature even when gamma is fixed. Zero start: the
        # layer starts as without it. Registered only when asked for, so default state_dicts keep their keys.
        self.self_logit = bool(self_logit)
        if self.self_logit:
            self.self_logit_offset = nn.Parameter(torch.zeros(heads))
        # a fixed gamma of exactly 0 makes the layer the identity on X2: skip the attention altogether
        self.inert = gamma == 0.0 and not learn_gamma
        self.record_attention = False
        self.last_attention: Tensor | None = None
        # forward through fused attention kernels (use_fused_attention); the materialised path is the reference
        self.fused_forward = False

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # checkpoints written before the attention mask became derived (non-persistent) state carry it
        state_dict.pop(prefix + "mask", None)
        state_dict.pop(prefix + "key_norm.bias", None)  # dead parameter of older checkpoints (a shift of every key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        qk = f", qk_dim={self.qk_dim}" if self.qk_dim != self.dim else ""
        tri = ", triangle=lower" if not self.upper else ""
        pos = f", grid={self.grid}" if self.grid is not None else ""
        mode = f", gamma_mode={self.gamma_mode}" if self.gamma_mode != "head" else ""
        diag = ", self_logit=True" if self.self_logit else ""
        return (f"dim={self.dim}, tokens={self.tokens}, partition={self.partition_name}, variant={self.variant}, "
                f"heads={self.heads}{qk}{tri}{pos}{mode}{diag}")

    # -- attention ----------------------------------------------------------------------------------
    @property
    def gamma(self) -> Tensor:
        """The attention weight gamma per head, in (-1, 1) (exactly 1 for the paper's form). With
        ``gamma_mode`` "token" or "modality" this is the per-head part tanh(r g_h) only, the gamma of every row
        before its offsets (equal to every row's gamma at initialisation); :meth:`row_gamma` gives the rows'."""
        if self.gamma_rate == 1.0:
            return torch.tanh(self.gate)
        return torch.tanh(self.gamma_rate * self.gate)

    def x2_modality(self) -> Tensor:
        """LongTensor (T,): 0 where row i of X2 holds a token of modality A, 1 where it holds one of B. For LICA,
        whose rows are learned mixtures, the token each row holds at initialisation (W = the starting
        permutation): what ``gamma_mode="modality"`` keys its offsets on."""
        index = self.partition.token_index()
        if index is not None:
            rows = index[1]
        else:
            rows = self.partition.mixer.perm_inv[self.tokens:]  # type: ignore[attr-defined]
        return (rows >= self.tokens).long()

    def _gamma(self, x1: Tensor) -> Tensor:
        """gamma in the shape that scales the rows of S (B, heads, T, T): (1, heads, 1, 1) in head mode,
        (1, heads, T, 1) per modality, (B, heads, T, 1) per token of x1 (B, T, D)."""
        if self.gamma_mode == "head":
            return self.gamma.view(1, self.heads, 1, 1)
        arg = self.gate.view(1, self.heads, 1)
        if self.gamma_mode == "token":
            # the read of X1's token is not sped up by gamma_rate and is scaled by 1/sqrt(D): Adam moves each of
            # its D weights by about lr per step, so at rate 10 and D = 64 the argument of tanh jumped by ~0.5 a
            # step and gamma saturated at -1 (log-det -inf) within three epochs in the task models
            read = F.linear(F.layer_norm(x1, (self.dim,)), self.gamma_proj.to(x1.dtype)) / math.sqrt(self.dim)
            return torch.tanh(self.gamma_rate * (arg + self.gamma_row) + read.transpose(1, 2)).unsqueeze(-1)
        arg = arg + self.gamma_modality[:, self.x2_modality()]
        return torch.tanh(self.gamma_rate * arg).unsqueeze(-1)

    def row_gamma(self, x1: Tensor) -> Tensor:
        """The gamma of every row of X2, (B, heads, T) (B = 1 unless ``gamma_mode="token"``), given the
        conditioning tokens x1 (B, T, D): A = I + diag(gamma) S."""
        g = self._gamma(x1)[..., 0]
        return g.expand(g.shape[0], self.heads, self.tokens)

    def _queries_keys(self, x1: Tensor) -> tuple[Tensor, Tensor]:
        """Queries and keys (B, heads, T, d_qk) of the conditioning tokens x1 (B, T, D), positions added and the
        temperature folded into the queries: the logits are q k^T."""
        b, t, _ = x1.shape
        q = self.query_norm(self.query(x1).view(b, t, self.heads, self.qk_head_dim)).transpose(1, 2)
        k = self.key_norm(self.key(x1).view(b, t, self.heads, self.qk_head_dim)).transpose(1, 2)
        if self.grid is not None:  # constants of X1's positions: A stays a function of X1 only
            pos = self.x1_position_code.to(q.dtype) * self.position_scale.view(self.heads, 1, 1)  # (h, T, d_qk)
            q, k = q + pos, k + pos
        # temperature folded into q: a (T, d) multiply instead of a (T, T) one
        q = q * (torch.exp(-self.log_temperature).view(1, self.heads, 1, 1) / math.sqrt(self.qk_head_dim))
        return q, k

    def attention_probs(self, x1: Tensor) -> Tensor:
        """The masked softmax S (B, heads, T, T) of the conditioning tokens x1 (B, T, D): upper (lower)
        triangular, positive diagonal, rows summing to 1 (with ``self_logit``, beta_h added to the diagonal logits
        first)."""
        q, k = self._queries_keys(x1)
        logits = q @ k.transpose(-1, -2)  # fresh tensor (the matmul's backward needs q and k, not it): in place
        if self.self_logit:  # a constant per head on the diagonal: S stays a function of X1 only
            logits.diagonal(dim1=-2, dim2=-1).add_(self.self_logit_offset.to(logits.dtype).view(1, self.heads, 1))
        return torch.softmax(logits.masked_fill_(self.blocked, float("-inf")), dim=-1)

    def attention(self, x1: Tensor) -> Tensor:
        """diag(gamma) S (B, heads, T, T); the layer's matrix is A = I + diag(gamma) S (gamma S in head mode)."""
        return self.attention_probs(x1) * self._gamma(x1)

    def _heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.heads, self.head_dim).transpose(1, 2)  # (B, h, T, d)

    def _unheads(self, x: Tensor) -> Tensor:
        b, _, t, _ = x.shape
        return x.transpose(1, 2).reshape(b, t, self.dim)

    def _logdet(self, s: Tensor, g: Tensor) -> Tensor:
        """d * sum_i log(1 + gamma_i s_ii) per sample, from S (B, h, T, T) and gamma (1 or B, h, 1 or T, 1)."""
        return self.head_dim * torch.log1p(g[..., 0] * torch.diagonal(s, dim1=-2, dim2=-1)).sum((1, 2))

    def _matrix(self, s: Tensor, g: Tensor, reuse: bool = False) -> Tensor:
        """A = I + diag(gamma) S, materialised (needed by the triangular solve). ``reuse=True`` overwrites ``s``
        (one pass over T x T instead of three); only valid when no gradient flows through ``s``."""
        if reuse:
            a = s.mul_(g)
            a.diagonal(dim1=-2, dim2=-1).add_(1.0)
            return a
        return torch.eye(self.tokens, dtype=s.dtype, device=s.device) + g * s

    def _shortcut(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The inert layer (gamma fixed at 0): A = I, so partition + merge return x and the log-det is 0."""
        return x, x.new_zeros(x.shape[0])

    def _record(self, s: Tensor, g: Tensor) -> None:
        if self.record_attention:
            self.last_attention = self._matrix(s, g).detach()

    @property
    def last_partition(self) -> str:
        return self.partition_name

    @property
    def last_index(self) -> Tensor | None:
        return self.partition.token_index()

    def mixing_matrix(self, x: Tensor) -> Tensor:
        """The token-mixing matrix M (B, heads, 2T, 2T) such that, per head and channel, the layer's
        output is y = M x in the ORIGINAL token order (given the attention computed from x1).

        M = P^T diag(I, A) P for permutation partitions (MMCA, IMCA) and W^-1 diag(I, A) W for LICA:
        rows are output tokens, columns the input tokens they are built from. Used to show which tokens
        condition which (notebook 03)."""
        x1, _, _ = self.partition.partition(x)
        s = self.attention(x1)  # diag(gamma) S
        b, h, t, _ = s.shape
        eye_t = torch.eye(t, dtype=s.dtype, device=s.device)
        blk = torch.zeros(b, h, 2 * t, 2 * t, dtype=s.dtype, device=s.device)
        blk[..., :t, :t] = eye_t
        blk[..., t:, t:] = s + eye_t
        index = self.partition.token_index()
        eye = torch.eye(2 * t, dtype=s.dtype, device=s.device)
        if index is not None:
            p = eye[index.reshape(-1)]  # (P x) = x[perm]
            return p.T @ blk @ p
        mixer = self.partition.mixer  # type: ignore[attr-defined]
        w = mixer.weight().to(s.dtype)
        w_inv = mixer.inverse(eye[None])[0][0]
        return w_inv @ blk @ w

    # -- bijection ----------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            check_tokens(x, self.tokens, self.dim)
        if self.inert:
            return self._shortcut(x)
        x1, x2, ld_part = self.partition.partition(x)
        g = self._gamma(x1)
        v = self._heads(x2)
        if self.fused_forward and not (self.self_logit or self.record_attention):
            # S V and S's diagonal from fused attention kernels: S is never formed (flows/fused_attention.py)
            q, k = self._queries_keys(x1)
            sv, s_diagonal = masked_attention_terms(q, k, v, self.upper)
            logdet = self.head_dim * torch.log1p(g[..., 0] * s_diagonal).sum((1, 2))
        else:
            s = self.attention_probs(x1)
            sv, logdet = s @ v, self._logdet(s, g)
            self._record(s, g)
        y2 = self._unheads(v + g * sv)  # (I + diag(gamma) S) X2, gamma applied on (T, d) not (T, T)
        y, ld_merge = self.partition.merge(x1, y2)
        if self.partition.volume_preserving:  # MMCA, IMCA: the partition's log-dets are 0; two kernels fewer
            return y, logdet
        return y, ld_part + logdet + ld_merge

    def inverse(self, z: Tensor) -> tuple[Tensor, Tensor]:
        if self.check_inputs:
            check_tokens(z, self.tokens, self.dim, name="z")
        if self.inert:
            return self._shortcut(z)
        y1, y2, ld_part = self.partition.partition(z)
        s = self.attention_probs(y1)
        g = self._gamma(y1)
        logdet = self._logdet(s, g)
        self._record(s, g)
        reuse = not (torch.is_grad_enabled() and s.requires_grad)  # sampling / reconstruction: no autograd
        a, v = self._matrix(s, g, reuse), self._heads(y2)
        # under bf16/fp16 autocast the attention arrives in half precision, which the triangular solve has no
        # kernel for (and would be too coarse for): solve in at least float32, return in y2's dtype
        work = torch.promote_types(torch.promote_types(a.dtype, v.dtype), torch.float32)
        x2 = torch.linalg.solve_triangular(a.to(work), v.to(work), upper=self.upper).to(v.dtype)
        x, ld_merge = self.partition.merge(y1, self._unheads(x2))
        if self.partition.volume_preserving:
            return x, -logdet
        return x, ld_part - logdet + ld_merge


ICA = InvertibleCrossAttention


def _refresh_position_code(module: InvertibleCrossAttention, incompatible_keys: object) -> None:
    """Load hook: re-gather X1's positional codes from the (possibly just loaded) partition."""
    with torch.no_grad():
        module.x1_position_code.copy_(module.position_code[module.partition.x1_positions()])


def grid_position_code(h: int, w: int, dim: int) -> Tensor:
    """Fixed 2-D sinusoidal codes (h * w, dim) of the cells of an h x w grid in raster order: half of
    the channels encode the row, half the column, each as sin/cos pairs at geometric frequencies
    (Transformer codes per axis). Two cells' codes have a dot product that peaks when they coincide
    and falls over the nearest cells, which is what lets attention prefer co-located and nearby tokens. ``dim`` < 4
    gives the row and column themselves, centred and scaled to [-1, 1]."""
    rows = torch.arange(h, dtype=torch.float64).repeat_interleave(w)
    cols = torch.arange(w, dtype=torch.float64).repeat(h)
    if dim < 4:
        both = torch.stack([rows / max(h - 1, 1), cols / max(w - 1, 1)], 1) * 2 - 1
        return torch.cat([both, both.new_zeros(h * w, 2)], 1)[:, :dim].float()
    pairs = dim // 4  # sin/cos pairs per axis
    # periods from 4 cells up to 4x the grid side, geometrically spaced. A 2-cell period would make every
    # second cell look like the same one (cos(pi * d) = +-1); from 4 cells on, similarity falls over the
    # nearest 3 cells and the longest period still tells the whole grid apart
    side = max(h, w)
    periods = torch.logspace(math.log10(4.0), math.log10(4.0 * max(side, 1)), pairs, dtype=torch.float64)
    freq = 2 * math.pi / periods
    parts = [torch.sin(rows[:, None] * freq), torch.cos(rows[:, None] * freq),
             torch.sin(cols[:, None] * freq), torch.cos(cols[:, None] * freq)]
    code = torch.cat(parts, 1)
    return torch.cat([code, code.new_zeros(h * w, dim - code.shape[1])], 1).float()


def record_attention(module: nn.Module, enabled: bool = True) -> list[InvertibleCrossAttention]:
    """Switch attention recording on/off for every ICA inside ``module``; returns those layers."""
    layers = [m for m in module.modules() if isinstance(m, InvertibleCrossAttention)]
    for m in layers:
        m.record_attention = enabled
        if not enabled:
            m.last_attention = None
    return layers


def use_fused_attention(module: nn.Module, enabled: bool = True) -> list[InvertibleCrossAttention]:
    """Compute the forward of every ICA inside ``module`` through fused attention kernels (S @ X2 and S's
    diagonal without the T x T matrix, :mod:`mango_lite.flows.fused_attention`), or again through the
    materialised S (``enabled=False``, the reference). Same values and gradients (tested in float64); layers with
    ``self_logit`` or recording their attention keep the materialised path. Returns those layers."""
    layers = [m for m in module.modules() if isinstance(m, InvertibleCrossAttention)]
    for m in layers:
        m.fused_forward = bool(enabled)
    return layers
