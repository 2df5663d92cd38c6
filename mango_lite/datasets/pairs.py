"""The translation task's pairs: the rows of the paper's Table 2, two Taskonomy input domains -> a target domain.

    resolve_pair("rgb_edge_to_depth") == resolve_pair("RGB+Edge→Depth") == PAIRS["rgb_edge_to_depth"]
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MangoLiteError
from .constants import TRANSLATION_PAIRS

__all__ = ["TranslationPair", "PAIRS", "DEFAULT_PAIR", "resolve_pair"]


@dataclass(frozen=True)
class TranslationPair:
    """One row of the paper's Table 2: two input domains -> a target domain."""

    name: str  # CLI name, e.g. "shade_texture_to_rgb"
    inputs: tuple[str, str]  # Taskonomy domains (A, B)
    target: str
    label: str  # as printed in the paper, e.g. "Shade+Texture→RGB"

    @property
    def rgb_target(self) -> bool:
        return self.target == "rgb"


_PAIR_NAMES = ("shade_texture_to_rgb", "depth_normal_to_rgb", "rgb_shade_to_normal", "rgb_normal_to_shade",
               "rgb_edge_to_depth")
_PAIR_LABELS = ("Shade+Texture→RGB", "Depth+Normal→RGB", "RGB+Shade→Normal", "RGB+Normal→Shade", "RGB+Edge→Depth")
PAIRS: dict[str, TranslationPair] = {
    n: TranslationPair(n, tuple(ins), tgt, lab)  # type: ignore[arg-type]
    for n, (ins, tgt), lab in zip(_PAIR_NAMES, TRANSLATION_PAIRS, _PAIR_LABELS)
}
DEFAULT_PAIR = "shade_texture_to_rgb"


def _norm_key(s: str) -> str:
    return s.strip().lower().replace("→", "->").replace(" ", "")


def resolve_pair(name: str | TranslationPair | None) -> TranslationPair:
    """A :class:`TranslationPair` from its CLI name (``rgb_edge_to_depth``), its paper label
    (``RGB+Edge->Depth`` / ``RGB+Edge→Depth``) or its domains (``rgb+edge_texture->depth_euclidean``)."""
    if isinstance(name, TranslationPair):
        return name
    if name is None:
        return PAIRS[DEFAULT_PAIR]
    key = _norm_key(name)
    for p in PAIRS.values():
        if key in (p.name, _norm_key(p.label), f"{p.inputs[0]}+{p.inputs[1]}->{p.target}"):
            return p
    raise MangoLiteError(f"unknown translation pair {name!r}; expected one of {tuple(PAIRS)} "
                         f"(or the paper's labels {tuple(p.label for p in PAIRS.values())})")
