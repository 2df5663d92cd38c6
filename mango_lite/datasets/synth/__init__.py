"""Generated stand-ins written in the exact on-disk layouts of the real datasets.

Every writer has the signature ``writer(root, n, size, seed) -> Path``: ``n`` samples in total, split in
the real dataset's proportions, images ``size`` pixels on a side, fully determined by ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

SYNTH_NAMES = ("nyudv2", "sunrgbd", "taskonomy", "mmimdb")


def get_writer(name: str) -> Callable[..., Path]:
    """The writer for dataset ``name`` (imported lazily: the renderer is only loaded when used)."""
    if name == "nyudv2":
        from .writers import write_nyudv2 as w
    elif name == "sunrgbd":
        from .writers import write_sunrgbd as w
    elif name == "taskonomy":
        from .writers import write_taskonomy as w
    elif name == "mmimdb":
        from .mmimdb import write_mmimdb as w
    else:
        raise ValueError(f"unknown dataset {name!r}; expected one of {SYNTH_NAMES}")
    return w
