"""Fit a two-modality flow as a density model (used by notebook 04 and its tests)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..flows.multiscale import MultiscaleMango


@dataclass
class DensityHistory:
    """Training record of :func:`fit_density`. ``gammas``: at every validation step, the attention weight
    gamma of each ICA layer (head-averaged, flow order), so its trajectory can be plotted."""

    step: list[int] = field(default_factory=list)
    train_bpd: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_bpd: list[float] = field(default_factory=list)
    gammas: list[list[float]] = field(default_factory=list)


#: the layout MANGO's task models use (``build_model``'s defaults, chosen by the mechanisms study):
#: alternating triangles, fixed 2-D positions on Q/K, gamma rate 10, 3x3 grid conditioner. The
#: library's :class:`MultiscaleMango` defaults stay the paper's layout.
STUDY_LAYOUT: dict = {"alternate": True, "positions": True, "gamma_rate": 10.0, "conditioner": "grid"}


def layer_gammas(flow) -> list[float]:
    """gamma of every ICA layer of ``flow`` (mean over heads), in flow order."""
    from ..flows import ICA

    return [float(m.gamma.detach().float().mean()) for m in flow.modules() if isinstance(m, ICA)]


def dequantize(x: Tensor, levels: int = 256, generator: torch.Generator | None = None) -> Tensor:
    """Uniform dequantisation of values on the grid k / levels: x + U(0, 1/levels)."""
    return x + torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) / levels


@torch.no_grad()
def evaluate_bpd(flow: MultiscaleMango, a: Tensor, b: Tensor, levels: int = 256, batch_size: int = 64, seed: int = 0) -> float:
    """Mean discrete bits/dim of (a, b) under ``flow`` (one fixed dequantisation draw)."""
    flow.eval()
    g = torch.Generator(device=a.device).manual_seed(seed)
    total, count = 0.0, 0
    for i in range(0, len(a), batch_size):
        xa, xb = dequantize(a[i : i + batch_size], levels, g), dequantize(b[i : i + batch_size], levels, g)
        bpd = flow.bits_per_dim((xa, xb), n_bins=levels)
        total += bpd.sum().item()
        count += len(xa)
    return total / count


def fit_density(
    flow: MultiscaleMango,
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    levels: int = 256,
    eval_every: int = 50,
    seed: int = 0,
    progress: bool = True,
    grad_clip: float = 5.0,
) -> DensityHistory:
    """Maximum likelihood with Adam, a short warm-up and gradient clipping. Returns the history.
    The first batch initialises ActNorm (data-dependent init)."""
    from tqdm.auto import tqdm

    a, b = train
    device = next(flow.parameters()).device
    a, b = a.to(device), b.to(device)
    va, vb = val[0].to(device), val[1].to(device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    gd = torch.Generator(device=device).manual_seed(seed + 1)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    warmup = max(1, min(100, steps // 10))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    hist = DensityHistory()
    bar = tqdm(range(steps), desc="fit", disable=not progress)
    for step in bar:
        flow.train()
        idx = torch.randint(0, len(a), (batch_size,), generator=g).to(device)
        xa, xb = dequantize(a[idx], levels, gd), dequantize(b[idx], levels, gd)
        loss = flow.bits_per_dim((xa, xb), n_bins=levels).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite bits/dim at step {step}: {loss.item()}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), grad_clip)
        opt.step()
        sched.step()
        hist.step.append(step)
        hist.train_bpd.append(loss.item())
        if step % eval_every == 0 or step == steps - 1:
            hist.val_step.append(step)
            hist.val_bpd.append(evaluate_bpd(flow, va, vb, levels))
            hist.gammas.append(layer_gammas(flow))
            bar.set_postfix(train=f"{loss.item():.3f}", val=f"{hist.val_bpd[-1]:.3f}")
    return hist


def gaussian_baseline_bpd(a: Tensor, b: Tensor, levels: int = 256) -> float:
    """Bits/dim of an independent per-pixel Gaussian fitted to the data (what a flow must beat)."""
    x = torch.cat([a.flatten(1), b.flatten(1)], 1).double()
    x = x + 0.5 / levels
    mu, sd = x.mean(0), x.std(0).clamp_min(1.0 / levels)
    nll = 0.5 * ((x - mu) / sd) ** 2 + torch.log(sd) + 0.5 * math.log(2 * math.pi)
    return (nll.mean() / math.log(2) + math.log2(levels)).item()


#: variants of the density study: name -> MultiscaleMango keywords. "mango" is the library's default
#: block (the paper's layout), "no attention" the same with every gamma fixed at 0, "mango, study
#: changes" the task models' layout after the mechanisms study (alternating triangles, 2-D positions on
#: Q/K, gamma rate 10, 3x3 grid conditioner).
DENSITY_VARIANTS: dict[str, dict] = {
    "mango": {},
    "no attention (gamma = 0)": {"gamma": 0.0, "learn_gamma": False},
    "mango, study changes": dict(STUDY_LAYOUT),
    "study changes, no attention": {**STUDY_LAYOUT, "gamma": 0.0, "learn_gamma": False},
}


def density_study(
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    size: int,
    blocks: int,
    steps: int,
    seeds: tuple[int, ...] = (0, 1, 2),
    variants: dict[str, dict] | None = None,
    lr: float = 2e-3,
    batch_size: int = 32,
    progress: bool = False,
    log=None,
) -> dict:
    """Does ICA lower the joint bits/dim of two correlated modalities? Fit each variant (MultiscaleMango
    keywords, :data:`DENSITY_VARIANTS` by default) once per seed (initialisation and batch order) on the
    same data; returns ``{"variants": {name: {"options", "val_bpd": [per seed], "mean", "std", "params"}},
    "gaussian_bpd", "seeds", "size", "blocks", "steps"}`` (validation, discrete bits/dim)."""
    import statistics

    variants = DENSITY_VARIANTS if variants is None else variants
    channels = train[0].shape[1]
    out: dict = {"seeds": list(seeds), "size": size, "blocks": blocks, "steps": steps,
                 "gaussian_bpd": gaussian_baseline_bpd(*val), "variants": {}}
    for name, opts in variants.items():
        vals, params = [], 0
        for seed in seeds:
            torch.manual_seed(seed)
            flow = MultiscaleMango(channels=channels, size=size, scales=2, blocks=blocks, **opts)
            params = sum(p.numel() for p in flow.parameters() if p.requires_grad)
            fit_density(flow, train, val, steps=steps, batch_size=batch_size, lr=lr, seed=seed, progress=progress,
                        eval_every=max(steps, 1))
            vals.append(evaluate_bpd(flow, *val))
            if log:
                log(f"density study: {name} seed {seed}: {vals[-1]:.4f} bits/dim")
        out["variants"][name] = {"options": dict(opts), "val_bpd": vals, "mean": statistics.fmean(vals),
                                 "std": statistics.stdev(vals) if len(vals) > 1 else None, "params": params}
    return out


#: training / validation pairs of the two-modality toy data per preset (as notebook 04 uses them)
DENSITY_DATA_SIZES = {"quick": (256, 64), "cpu": (4000, 500), "gpu": (20000, 2000), "paper": (50000, 5000)}


def run_density_study(preset=None, seeds: tuple[int, ...] = (0, 1, 2), out=None, log=None) -> dict:
    """:func:`density_study` on notebook 04's data (``two_modality_shapes``) at the preset's density size,
    blocks and steps; writes ``OUT/density.json`` and ``OUT/density.md`` when ``out`` is given."""
    from pathlib import Path

    from ..datasets.toy import two_modality_shapes
    from ..presets import get_preset
    from ..utils import atomic_write_json, atomic_write_text

    p = get_preset(preset) if not hasattr(preset, "density_size") else preset
    n_train, n_val = DENSITY_DATA_SIZES[p.name]
    train = two_modality_shapes(n_train, p.density_size, seed=0)
    val = two_modality_shapes(n_val, p.density_size, seed=1)
    res = density_study(train, val, p.density_size, p.density_blocks, p.density_steps, seeds=seeds, log=log)
    from ..training.reproduce import git_commit
    from ..utils import device_name

    res.update(preset=p.name, n_train=n_train, n_val=n_val, git_commit=git_commit(), device=device_name("cpu"),
               data="generated two-modality shapes (intensity and depth of the same random shapes)")
    if out is not None:
        out = Path(out)
        atomic_write_json(out / "density.json", res)
        atomic_write_text(out / "density.md", density_markdown(res))
    return res


def density_markdown(res: dict) -> str:
    """The density study as Markdown: validation bits/dim per variant, mean ± std over seeds, and the
    computed difference of each attention variant to its gamma = 0 twin."""
    import statistics

    lines = [f"# Does ICA lower the joint bits/dim? — preset {res.get('preset')}", "",
             f"Data: {res.get('data')}, {res.get('n_train')} training / {res.get('n_val')} validation pairs at "
             f"{res['size']}x{res['size']}; MultiscaleMango, 2 scales x {res['blocks']} blocks, {res['steps']} Adam "
             f"steps; seeds {res['seeds']}. Validation discrete bits/dim (lower is better); an independent "
             f"per-pixel Gaussian scores {res['gaussian_bpd']:.3f}.", "",
             "| variant | bits/dim | per seed | params |", "|---|---|---|---|"]
    for name, v in res["variants"].items():
        spread = f"{v['mean']:.3f}" + (f" ± {v['std']:.3f}" if v.get("std") is not None else "")
        lines.append(f"| {name} | {spread} | {' / '.join(f'{x:.3f}' for x in v['val_bpd'])} | {v['params'] / 1e3:.1f} k |")
    pairs = [("mango", "no attention (gamma = 0)"), ("mango, study changes", "study changes, no attention")]
    lines.append("")
    for a, b in pairs:
        if a in res["variants"] and b in res["variants"]:
            va, vb = res["variants"][a], res["variants"][b]
            diffs = [y - x for x, y in zip(va["val_bpd"], vb["val_bpd"])]  # > 0: attention lowers bits/dim
            std = max(va.get("std") or 0.0, vb.get("std") or 0.0)
            mean = statistics.fmean(diffs)
            wins = sum(d > 0 for d in diffs)
            lines.append(f"- {a} vs {b}: attention lowers the bits/dim by {mean:+.3f} on average (larger seed std "
                         f"{std:.3f}; {'more' if mean > std else 'not more'} than one std), lower in {wins} of "
                         f"{len(diffs)} seeds.")
    return "\n".join(lines) + "\n"
