"""Shared test fixtures: float64 by default for invertibility checks, seeded RNG, quiet threads."""

from __future__ import annotations

import functools
import os
import re

import pytest
import torch

os.environ.setdefault("MANGO_LITE_PRESET", "quick")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def jacobian_logdet(fn, x: torch.Tensor) -> torch.Tensor:
    """slogdet of the autograd Jacobian of ``fn`` (flat -> flat) at each sample of ``x``: (B,)."""
    out = []
    for xi in x:
        flat = xi.reshape(-1)
        jac = torch.autograd.functional.jacobian(lambda v: fn(v.view(1, *xi.shape)).reshape(-1), flat)
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign.abs() > 0, "Jacobian is singular"
        out.append(logabs)
    return torch.stack(out)


def multiscale_jacobian_logdet(m, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
    """slogdet of the Jacobian of a two-modality multiscale flow ``m`` at the first sample of
    ``(xa, xb)`` (each (B, C, H, W)), with every scale's latent flattened and concatenated: (1,)."""
    shape = xa.shape[1:]

    def flat(v):
        pair = v.view(-1, 2, *shape)
        return torch.cat([z.reshape(1, -1) for z in m((pair[:, 0], pair[:, 1]))[0]], 1)

    return jacobian_logdet(flat, torch.stack([xa, xb], 1)[:1].reshape(1, -1))


#: an absolute path of some machine - a home folder, a work, scratch or temporary tree, a Windows user
#: folder - in text the project ships (docs, results files, notebook outputs)
MACHINE_PATH = re.compile(r"(?<![\w.:/~-])(?:/(?:home|Users|work|scratch|tmp|root|mnt|private|var/folders)/[\w.-]+"
                          r"|[A-Za-z]:\\\\(?:Users|work)\\\\)")


@pytest.fixture(scope="session")
def mit_folder(tmp_path_factory):
    """A tiny randomly initialised SegFormer Mix Transformer (4 stages, reductions 4/8/16/32, widths 8-32),
    saved to a folder as a user's local copy of pretrained MiT weights would be (needs ``transformers``)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.SegformerConfig(
        num_channels=3, num_encoder_blocks=4, depths=[1, 1, 1, 1], sr_ratios=[8, 4, 2, 1], hidden_sizes=[8, 16, 24, 32],
        num_attention_heads=[1, 1, 1, 1], mlp_ratios=[2, 2, 2, 2],
    )
    folder = tmp_path_factory.mktemp("mit")
    transformers.SegformerModel(cfg).save_pretrained(folder)
    return folder


@functools.cache
def notebook_build():
    """``notebooks/build.py`` as a module (it is a script, not part of the package): parse_source,
    student_notebook, exercises, stable_cell_ids, ..."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("nb_build", Path(__file__).resolve().parents[1] / "notebooks" / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def execute_notebook(nb, env: dict[str, str] | None = None, folder: str | os.PathLike | None = None):
    """Execute notebook ``nb`` (an nbformat node, changed in place and returned) at the quick preset with
    progress bars off and ``env`` added to the environment for the kernel, in ``folder`` (default:
    ``notebooks/``, where Jupyter runs them); errors stay in the outputs for the test to read."""
    from pathlib import Path

    from nbclient import NotebookClient

    env = {"MANGO_LITE_PRESET": "quick", "TQDM_DISABLE": "1", **(env or {})}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", allow_errors=True, resources={"metadata": {
            "path": str(folder or Path(__file__).resolve().parents[1] / "notebooks")}}).execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return nb
