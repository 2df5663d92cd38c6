"""Token partitions of MANGO: which tokens form X1 (conditioning, passed through) and X2 (re-mixed).

Input layout: x of shape (B, 2T, D), T tokens of modality A then T tokens of modality B. Every
partition is a bijection ``x -> (x1, x2)`` with x1, x2 of shape (B, T, D), and ``merge`` is its exact
inverse, so a partition -> ICA -> merge layer leaves each token at its original position.

* MMCA (modality-to-modality): X1 = one modality, X2 = the other. ``variant=0``: A conditions B;
  ``variant=1``: B conditions A.
* IMCA (inter-modality): each modality is cut into even (``A1``) and odd (``A2``) token positions and
  X1, X2 each get one half of each modality (paper's four configurations):
  ``0: (A1,B1 | A2,B2)``, ``1: (A1,B2 | A2,B1)``, ``2: (A2,B1 | A1,B2)``, ``3: (A2,B2 | A1,B1)``.
* LICA (learnable inter-modality): a learnable invertible token-mixing matrix W (LU form) acts on
  all 2T tokens, then X1 = first T rows, X2 = last T rows; merge concatenates and applies W^-1.
  W starts as a random permutation (a random cross-modal partition, as the paper's "learnable
  permutation matrix") and learns to mix tokens from there.
  Partition log|det| = +D sum log|s|, merge -D sum log|s|: they cancel over the layer, but each
  bijection reports its own.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .lu import InvertibleLinearLU

PartitionName = Literal["mmca", "imca", "lica"]
PARTITIONS: dict[str, int] = {"mmca": 2, "imca": 4, "lica": 1}  # name -> number of variants


class Partition(nn.Module):
    """Base: ``partition(x) -> (x1, x2, logdet)`` and ``merge(x1, x2) -> (x, logdet)``."""

    name: str = ""
    #: True where partition and merge are permutations (log-det 0): a layer may then leave their log-dets out
    volume_preserving: bool = False

    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.tokens = tokens
        self.dim = dim

    def partition(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def merge(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def token_index(self) -> Tensor | None:
        """LongTensor (2, T): original positions of X1's (row 0) and X2's (row 1) tokens, in order;
        ``None`` when the partition is not a permutation (LICA)."""
        return None

    def x1_positions(self) -> Tensor:
        """LongTensor (T,): the original position (in [0, 2T)) of each X1 token, used to give the
        queries and keys positional codes. For LICA, whose X1 tokens are learned mixtures, the positions
        of the tokens X1 holds at initialisation (W starts as a permutation)."""
        raise NotImplementedError


class PermutationPartition(Partition):
    """A partition that is a fixed permutation of tokens (log|det| = 0)."""

    volume_preserving = True

    def __init__(self, tokens: int, dim: int, index1: Tensor, index2: Tensor) -> None:
        super().__init__(tokens, dim)
        perm = torch.cat([index1, index2])
        if sorted(perm.tolist()) != list(range(2 * tokens)):
            raise ValueError("partition indices must cover every token exactly once")
        self.register_buffer("perm", perm)
        self.register_buffer("perm_inv", torch.argsort(perm))
        # the zero log-det, returned as a broadcast view of one stored zero: no kernel launched per call
        self.register_buffer("zero", torch.zeros(()), persistent=False)
        # MMCA's halves are whole modalities: X1 and X2 are then slices (views, no gather) and the merge
        # one concatenation, instead of two gathers of all 2T tokens per layer
        self.x1_first = torch.equal(perm, torch.arange(2 * tokens))
        self.swapped = torch.equal(perm, torch.arange(2 * tokens).roll(tokens))

    def partition(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        t = self.tokens
        if self.x1_first:
            return x[:, :t], x[:, t:], self._zero_logdet(x)
        if self.swapped:
            return x[:, t:], x[:, :t], self._zero_logdet(x)
        xp = x.index_select(1, self.perm)
        return xp[:, :t], xp[:, t:], self._zero_logdet(x)

    def _zero_logdet(self, x: Tensor) -> Tensor:
        """Zeros (B,) in x's dtype: a read-only broadcast view (do not write into it)."""
        return self.zero.to(x.dtype).expand(x.shape[0])

    def merge(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        if self.x1_first or self.swapped:
            x = torch.cat([x1, x2] if self.x1_first else [x2, x1], 1)
        else:
            x = torch.cat([x1, x2], 1).index_select(1, self.perm_inv)
        return x, self._zero_logdet(x)

    def token_index(self) -> Tensor:
        return self.perm.view(2, self.tokens)

    def x1_positions(self) -> Tensor:
        return self.perm[: self.tokens]


class MMCAPartition(PermutationPartition):
    name = "mmca"

    def __init__(self, tokens: int, dim: int, variant: int = 0) -> None:
        if variant not in (0, 1):
            raise ValueError(f"MMCA: variant must be 0 (A conditions B) or 1 (B conditions A), got {variant}")
        a = torch.arange(tokens)
        b = torch.arange(tokens, 2 * tokens)
        first, second = (a, b) if variant == 0 else (b, a)
        super().__init__(tokens, dim, first, second)
        self.variant = variant


class IMCAPartition(PermutationPartition):
    name = "imca"

    def __init__(self, tokens: int, dim: int, variant: int = 0) -> None:
        if variant not in (0, 1, 2, 3):
            raise ValueError(f"IMCA: variant must be 0, 1, 2 or 3, got {variant}")
        if tokens % 2:
            raise ValueError(f"IMCA: tokens per modality must be even (even/odd halves), got {tokens}")
        a1, a2 = torch.arange(0, tokens, 2), torch.arange(1, tokens, 2)
        b1, b2 = a1 + tokens, a2 + tokens
        # (X1 | X2) per the paper's four configurations
        table = {0: (a1, b1, a2, b2), 1: (a1, b2, a2, b1), 2: (a2, b1, a1, b2), 3: (a2, b2, a1, b1)}
        p, q, r, s = table[variant]
        super().__init__(tokens, dim, torch.cat([p, q]), torch.cat([r, s]))
        self.variant = variant


class LICAPartition(Partition):
    name = "lica"

    def __init__(
        self, tokens: int, dim: int, variant: int = 0, init: Literal["orthogonal", "permutation", "identity"] = "permutation"
    ) -> None:
        super().__init__(tokens, dim)
        self.variant = variant  # only labels the layer: each LICA layer owns an independent W
        self.mixer = InvertibleLinearLU(2 * tokens, axis="tokens", init=init)
        self.mixer.check_inputs = False

    def partition(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        y, logdet = self.mixer(x)
        return y[:, : self.tokens], y[:, self.tokens :], logdet

    def merge(self, x1: Tensor, x2: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([x1, x2], 1)
        if x.shape[0] * x.shape[2] <= x.shape[1]:  # few columns: solving for them is cheaper
            return self.mixer.inverse(x)
        # W^-1 once (two triangular solves of the identity), then one product for every sample/channel
        y = self.mixer.apply_matrix(self.mixer.inverse_weight(), x)
        return y, -(x.shape[2] * self.mixer.log_abs_diag().sum()).expand(x.shape[0])

    def x1_positions(self) -> Tensor:
        # W = P L U starts as the permutation P (L = U = I): row i of W x is token perm_inv[i]
        return self.mixer.perm_inv[: self.tokens]


def make_partition(name: str, tokens: int, dim: int, variant: int = 0) -> Partition:
    """Build the partition ``name`` ("mmca", "imca", "lica") with the given variant."""
    key = str(name).lower()
    if key == "mmca":
        return MMCAPartition(tokens, dim, variant)
    if key == "imca":
        return IMCAPartition(tokens, dim, variant)
    if key == "lica":
        return LICAPartition(tokens, dim, variant)
    raise ValueError(f"partition must be one of {tuple(PARTITIONS)}, got {name!r}")
