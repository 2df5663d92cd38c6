"""Small shared helpers: seeding, device choice, atomic file writes, input validation."""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor


def seed_everything(seed: int = 0, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (CPU and CUDA). ``deterministic`` also asks torch for
    deterministic kernels (slower; CPU kernels used here are deterministic already)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def checked_device(preferred: str | None = None) -> torch.device:
    """:func:`pick_device`, refusing a device this machine lacks with a MangoLiteError naming it."""
    from .errors import MangoLiteError

    try:
        return pick_device(preferred)
    except (ValueError, RuntimeError) as exc:
        raise MangoLiteError(f"device: {exc}") from exc


def pick_device(preferred: str | None = None) -> torch.device:
    """``preferred`` if given ("cpu", "cuda", "cuda:1", "mps"), else cuda > mps > cpu."""
    if preferred:
        dev = torch.device(preferred)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {preferred!r} requested but CUDA is not available")
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device: torch.device | str) -> str:
    """Human-readable device label for result files, e.g. 'NVIDIA H100 80GB HBM3' or 'cpu (2 cores)'."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"cpu ({os.cpu_count()} cores)"
    return device.type


def display_path(path: str | os.PathLike) -> str:
    """``path`` as messages should show it: relative to the working directory when it lies inside it
    (``runs/05_segmentation/cpu/mango``), otherwise as given. Logs and notebook outputs then carry no
    machine-specific prefix such as a home folder."""
    p = Path(path)
    if not p.is_absolute():
        return str(p)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(p)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write(path: str | os.PathLike, writer: Callable[[str], None]) -> Path:
    """Write a file atomically: ``writer(tmp_path)`` fills a temporary file in the same folder,
    which then replaces ``path`` in one rename, so readers never see a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    def _w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)

    return atomic_write(path, _w)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Tensor):
        return o.detach().cpu().tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def json_normal(x: Any) -> Any:
    """``x`` as it reads back from JSON (tuples -> lists, non-JSON values -> str), so a stored configuration
    and a live one compare equal when they describe the same thing."""
    return json.loads(json.dumps(x, default=str))


def check_tokens(x: Tensor, tokens: int, dim: int, name: str = "x") -> None:
    """Validate a two-modality token tensor of shape (B, 2*tokens, dim) with finite values."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape (B, {2 * tokens}, {dim}), got {type(x).__name__}")
    if x.dim() != 3:
        raise ValueError(
            f"{name}: expected a 3-D tensor (B, 2*tokens, dim) = (B, {2 * tokens}, {dim}), got shape {tuple(x.shape)}"
        )
    if x.shape[1] != 2 * tokens:
        raise ValueError(
            f"{name}: expected 2*tokens = {2 * tokens} tokens (modality A then B) on axis 1, got {x.shape[1]} "
            f"(shape {tuple(x.shape)})"
        )
    if x.shape[2] != dim:
        raise ValueError(f"{name}: expected width dim = {dim} on axis 2, got {x.shape[2]} (shape {tuple(x.shape)})")
    check_finite(x, name)


def check_finite(x: Tensor, name: str = "x") -> None:
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).sum().item()
        raise ValueError(f"{name}: expected finite values, got {bad} non-finite entries (NaN or inf)")


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads: ``threads`` if given (the edges pass ``MANGO_LITE_THREADS``); otherwise 1
    on a CPU-only machine with at most 4 cores, where the small per-op work of these models gains nothing from threading and
    extra threads oversubscribe the cores (measured 7-10x slower steps on a shared 2-core machine);
    otherwise torch's default. Returns the thread count in force."""
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))
    elif not torch.cuda.is_available() and (os.cpu_count() or 1) <= 4:
        torch.set_num_threads(1)
    return torch.get_num_threads()
