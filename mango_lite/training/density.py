"""Fit a two-modality flow as a density model (used by notebook 04 and its tests)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..errors import TrainingError
from ..flows.multiscale import MultiscaleMango
from ..markdown import table
from .executor import Outcome, execute


@dataclass
class DensityHistory:
    """Training record of :func:`fit_density`. ``gammas``: at every validation step, the attention weight
    gamma of each ICA layer (head-averaged, flow order), so its trajectory can be plotted."""

    step: list[int] = field(default_factory=list)
    train_bpd: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_bpd: list[float] = field(default_factory=list)
    gammas: list[list[float]] = field(default_factory=list)


#: the flow layout of the mechanisms study's ladder (its last row's flow changes): alternating triangles,
#: fixed 2-D positions on Q/K, gamma rate 10, 3x3 grid conditioner. The task models used it until the
#: selection split's stage 2 (results/selection/summary-defaults.md) moved their gamma rate to 1; the density
#: study and notebook 04 keep it, so their committed numbers mean this layout. The library's
#: :class:`MultiscaleMango` defaults stay the paper's layout.
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


#: name of the coupling-only control of the density study (see :data:`DENSITY_VARIANTS`)
CROSS_GLOW = "cross-modal Glow (coupling, no attention)"

#: variants of the density study: name -> MultiscaleMango keywords. "mango" is the library's default
#: block (the paper's layout), "no attention" the same with every gamma fixed at 0, "mango, study
#: changes" the task models' layout after the mechanisms study (alternating triangles, 2-D positions on
#: Q/K, gamma rate 10, 3x3 grid conditioner). The gamma = 0 twins have no cross-modal pathway at all;
#: :data:`CROSS_GLOW` (``"flow": "cross_glow"``, see :func:`build_density_flow`) has one without attention:
#: a :class:`~mango_lite.flows.cross_coupling.CrossModalGlow` (same multiscale skeleton, each block ``steps``
#: Glow steps whose couplings read both modalities) sized to the live parameters of MultiscaleMango(**budget).
DENSITY_VARIANTS: dict[str, dict] = {
    "mango": {},
    "no attention (gamma = 0)": {"gamma": 0.0, "learn_gamma": False},
    "mango, study changes": dict(STUDY_LAYOUT),
    "study changes, no attention": {**STUDY_LAYOUT, "gamma": 0.0, "learn_gamma": False},
    CROSS_GLOW: {"flow": "cross_glow", "steps": 4, "budget": dict(STUDY_LAYOUT)},
}

#: the paired comparisons :func:`density_markdown` reports with t intervals, (a, b, what a lowering says):
#: attention against cross-modal coupling at the same budget, and that coupling against no pathway
PAIRED_COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("mango, study changes", CROSS_GLOW, "attention against cross-modal coupling"),
    ("mango", CROSS_GLOW, "attention against cross-modal coupling"),
    (CROSS_GLOW, "study changes, no attention", "cross-modal coupling against no cross-modal pathway"),
)


def resolve_density_options(channels: int, size: int, blocks: int, opts: dict, scales: int = 2) -> dict:
    """``opts`` with everything :func:`build_density_flow` needs fixed: for ``"flow": "cross_glow"`` without a
    ``hidden``, the conditioner width that matches the live parameter count of ``MultiscaleMango(channels, size,
    scales, blocks, **opts["budget"])`` (``budget_params`` and ``params_ratio`` are added). Builds flows to count
    them (uses the global RNG): call it before seeding a run."""
    opts = dict(opts)
    if opts.get("flow", "mango") == "cross_glow" and opts.get("hidden") is None:
        from ..flows.cross_coupling import cross_glow_matching

        m = cross_glow_matching(channels, size, scales, blocks, opts.get("budget") or {}, int(opts.get("steps", 4)))
        opts.update(hidden=m["hidden"], budget_params=m["target"], params_ratio=m["ratio"])
    return opts


def build_density_flow(channels: int, size: int, blocks: int, opts: dict, scales: int = 2) -> MultiscaleMango:
    """The flow of one density-study variant: ``MultiscaleMango(channels, size, scales, blocks, **opts)``, or,
    for ``opts["flow"] == "cross_glow"``, a :class:`~mango_lite.flows.cross_coupling.CrossModalGlow` with
    ``opts["steps"]`` Glow steps per block and conditioner width ``opts["hidden"]`` (sized to
    ``opts["budget"]``'s MANGO when missing; :func:`resolve_density_options` does that once per variant)."""
    opts = dict(opts)
    kind = opts.pop("flow", "mango")
    if kind == "mango":
        return MultiscaleMango(channels=channels, size=size, scales=scales, blocks=blocks, **opts)
    if kind == "cross_glow":
        from ..flows.cross_coupling import CrossModalGlow

        unknown = set(opts) - {"steps", "hidden", "budget", "budget_params", "params_ratio"}
        if unknown:
            raise ValueError(f"density study: unknown cross_glow options {sorted(unknown)} (expected steps, hidden, budget)")
        opts = resolve_density_options(channels, size, blocks, {"flow": kind, **opts}, scales)
        return CrossModalGlow(channels, size, scales, blocks, hidden=int(opts["hidden"]), steps=int(opts.get("steps", 4)))
    raise ValueError(f"density study: unknown flow {kind!r} (expected 'mango' or 'cross_glow')")


def _fit_one_density(job: dict) -> dict:
    """One variant at one seed (a worker's body, or called in process): seeded by the seed alone, so the
    result does not depend on which process runs it. ``job``: ``train``, ``val``, ``size``, ``blocks``,
    ``steps``, ``seed``, ``resolved`` (the variant's options), ``lr``, ``batch_size``, ``threads``."""
    from ..flows.cross_coupling import live_parameter_count

    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))
    train, val = job["train"], job["val"]
    torch.manual_seed(job["seed"])
    flow = build_density_flow(train[0].shape[1], job["size"], job["blocks"], job["resolved"])
    params = sum(p.numel() for p in flow.parameters() if p.requires_grad)
    live = live_parameter_count(flow)
    fit_density(flow, train, val, steps=job["steps"], batch_size=job["batch_size"], lr=job["lr"], seed=job["seed"],
                progress=False, eval_every=max(job["steps"], 1))
    return {"val_bpd": evaluate_bpd(flow, *val), "params": params, "live_params": live}


def _kept_fits(path, setting: dict, resolved: dict) -> dict[str, dict]:
    """The finished fits of a killed study's checkpoint file that it may reuse: same setting (sizes, steps,
    optimiser), and each fit's variant still resolving to the options it was fitted with."""
    import json

    if path is None or not path.is_file():
        return {}
    kept = json.loads(path.read_text(encoding="utf-8"))
    if kept.get("setting") != setting:
        return {}
    return {k: v for k, v in kept.get("fits", {}).items()
            if k.rsplit("|", 1)[0] in resolved and v.get("resolved") == json.loads(json.dumps(resolved[k.rsplit("|", 1)[0]]))}


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
    log=None,
    jobs: int = 1,
    checkpoint: str | os.PathLike | None = None,
) -> dict:
    """Does ICA lower the joint bits/dim of two correlated modalities? Fit each variant (MultiscaleMango
    keywords, :data:`DENSITY_VARIANTS` by default) once per seed (initialisation and batch order) on the
    same data; returns ``{"variants": {name: {"options", "resolved", "val_bpd": [per seed], "mean", "std",
    "params", "live_params"}}, "gaussian_bpd", "seeds", "size", "blocks", "steps"}`` (validation, discrete
    bits/dim). A variant may name another flow (``"flow": "cross_glow"``, see :func:`build_density_flow`);
    ``resolved`` holds its options as built (the conditioner width chosen for the budget). ``params`` counts
    every trainable entry, ``live_params`` those a gradient reaches
    (:func:`~mango_lite.flows.cross_coupling.live_parameter_count`).

    ``jobs`` > 1: the (variant, seed) fits run in that many spawned worker processes, one torch thread each
    (each fit is seeded by its seed alone: the numbers are those of ``jobs=1``). ``checkpoint``: a JSON file
    that keeps every finished fit, so a killed study resumes where it stopped (fits whose options, data sizes
    or steps differ are not reused); it is removed when the study completes. Fits show no progress bars."""
    import json
    import statistics
    from pathlib import Path

    from ..utils import atomic_write_json

    variants = DENSITY_VARIANTS if variants is None else variants
    channels = train[0].shape[1]
    out: dict = {"seeds": list(seeds), "size": size, "blocks": blocks, "steps": steps,
                 "gaussian_bpd": gaussian_baseline_bpd(*val), "variants": {}}
    # options fixed before any fit: resolving a budget builds flows with the global RNG
    resolved = {name: resolve_density_options(channels, size, blocks, opts) for name, opts in variants.items()}
    setting = {"size": size, "blocks": blocks, "steps": steps, "lr": lr, "batch_size": batch_size,
               "n_train": len(train[0]), "n_val": len(val[0])}
    path = Path(checkpoint) if checkpoint is not None else None
    fits = _kept_fits(path, setting, resolved)

    def key(name: str, seed: int) -> str:
        return f"{name}|{seed}"

    def record(name: str, seed: int, res: dict) -> None:
        fits[key(name, seed)] = {**res, "resolved": json.loads(json.dumps(resolved[name]))}
        if path is not None:
            atomic_write_json(path, {"setting": setting, "fits": fits})
        if log:
            log(f"density study: {name} seed {seed}: {res['val_bpd']:.4f} bits/dim")

    todo = [(name, seed) for name in variants for seed in seeds if key(name, seed) not in fits]
    base = dict(train=train, val=val, size=size, blocks=blocks, steps=steps, lr=lr, batch_size=batch_size)
    parallel = jobs > 1 and len(todo) > 1  # each fit in a worker process with one torch thread

    def done(fit: tuple[str, int], outcome: Outcome) -> None:
        if outcome.error is not None:
            raise TrainingError(f"density study: {fit[0]} seed {fit[1]}: {outcome.error}")
        record(*fit, outcome.value)

    execute(_fit_one_density, {(name, seed): {**base, "seed": seed, "resolved": resolved[name],
                                              "threads": 1 if parallel else None} for name, seed in todo},
            workers=min(jobs, len(todo)) if parallel else 0, on_done=done)
    for name, opts in variants.items():
        runs = [fits[key(name, seed)] for seed in seeds]
        vals = [r["val_bpd"] for r in runs]
        out["variants"][name] = {"options": dict(opts), "resolved": resolved[name], "val_bpd": vals,
                                 "mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else None,
                                 "params": runs[-1]["params"], "live_params": runs[-1]["live_params"]}
    if path is not None:
        path.unlink(missing_ok=True)
    return out


#: training / validation pairs of the two-modality toy data per preset (as notebook 04 uses them)
DENSITY_DATA_SIZES = {"quick": (256, 64), "cpu": (4000, 500), "gpu": (20000, 2000), "paper": (50000, 5000)}


def run_density_study(preset=None, seeds: tuple[int, ...] = (0, 1, 2), out=None, log=None, jobs: int = 1) -> dict:
    """:func:`density_study` on notebook 04's data (``two_modality_shapes``) at the preset's density size,
    blocks and steps, ``jobs`` fits at once; writes ``OUT/density.json`` and ``OUT/density.md`` when ``out``
    is given, and keeps finished fits in ``OUT/density.partial.json`` until then (a rerun resumes)."""
    from pathlib import Path

    from ..datasets.toy import two_modality_shapes
    from ..presets import get_preset
    from ..utils import atomic_write_json, atomic_write_text

    p = get_preset(preset) if not hasattr(preset, "density_size") else preset
    n_train, n_val = DENSITY_DATA_SIZES[p.name]
    train = two_modality_shapes(n_train, p.density_size, seed=0)
    val = two_modality_shapes(n_val, p.density_size, seed=1)
    partial = None if out is None else Path(out) / "density.partial.json"
    if partial is not None:
        partial.parent.mkdir(parents=True, exist_ok=True)
    res = density_study(train, val, p.density_size, p.density_blocks, p.density_steps, seeds=seeds, log=log,
                        jobs=jobs, checkpoint=partial)
    from ..training.reproduce import git_commit
    from ..utils import device_name

    res.update(preset=p.name, n_train=n_train, n_val=n_val, git_commit=git_commit(), device=device_name("cpu"),
               data="generated two-modality shapes (intensity and depth of the same random shapes)")
    if out is not None:
        out = Path(out)
        atomic_write_json(out / "density.json", res)
        atomic_write_text(out / "density.md", density_markdown(res))
    return res


def density_comparisons(res: dict, level: float = 0.95) -> list[dict]:
    """The :data:`PAIRED_COMPARISONS` present in a density study ``res``, each ``{"a", "b", "what", **paired}``
    with ``paired`` :func:`~mango_lite.metrics.paired.paired_difference` of the per-seed validation bits/dim
    (seed k of a against seed k of b; ``mean`` > 0: a has the lower bits/dim; ``verdict`` "better" when the
    t interval at ``level`` lies above 0, "worse" below, else "no difference shown")."""
    from ..metrics.paired import paired_difference

    out = []
    for a, b, what in PAIRED_COMPARISONS:
        va, vb = res["variants"].get(a), res["variants"].get(b)
        if va is None or vb is None:
            continue
        d = paired_difference(va["val_bpd"], vb["val_bpd"], higher_is_better=False, level=level)
        out.append({"a": a, "b": b, "what": what, **d.to_dict()})
    return out


def density_markdown(res: dict) -> str:
    """The density study as Markdown: validation bits/dim per variant, mean ± std over seeds, the computed
    difference of each attention variant to its gamma = 0 twin, and the paired comparisons
    (:func:`density_comparisons`) of attention with the cross-modal Glow when the study has it."""
    import statistics

    lines = [f"# Does ICA lower the joint bits/dim? — preset {res.get('preset')}", "",
             f"Data: {res.get('data')}, {res.get('n_train')} training / {res.get('n_val')} validation pairs at "
             f"{res['size']}x{res['size']}; MultiscaleMango, 2 scales x {res['blocks']} blocks, {res['steps']} Adam "
             f"steps; seeds {res['seeds']}. Validation discrete bits/dim (lower is better); an independent "
             f"per-pixel Gaussian scores {res['gaussian_bpd']:.3f}.", ""]
    glow = res["variants"].get(CROSS_GLOW)
    if glow is not None:
        r = glow.get("resolved") or glow.get("options", {})
        budget = ", ".join(f"{k}={v}" for k, v in (r.get("budget") or {}).items()) or "its defaults"
        lines += [f"{CROSS_GLOW}: the same multiscale skeleton (squeeze, ActNorm, 1x1 LU, split priors) with each "
                  f"block's 8 attention layers and coupling replaced by {r.get('steps', '?')} Glow steps (ActNorm, "
                  f"1x1 LU, affine coupling whose 3x3 conditioner reads both modalities' kept channels), conditioner "
                  f"width {r.get('hidden', '?')}, sized to the live parameters of MultiscaleMango with "
                  f"{budget} (same size and blocks). Live params: those a gradient reaches (not the masked "
                  "halves of the LU factors, not the attention of gamma = 0 layers).", ""]
    rows = []
    for name, v in res["variants"].items():
        spread = f"{v['mean']:.3f}" + (f" ± {v['std']:.3f}" if v.get("std") is not None else "")
        live = f"{v['live_params'] / 1e3:.1f} k" if v.get("live_params") is not None else "-"
        rows.append([name, spread, " / ".join(f"{x:.3f}" for x in v["val_bpd"]), f"{v['params'] / 1e3:.1f} k", live])
    lines += table(["variant", "bits/dim", "per seed", "params", "live params"], rows)
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
    for c in density_comparisons(res):
        interval = (f"{c['level'] * 100:.0f} % t interval [{c['low']:+.3f}, {c['high']:+.3f}] over {c['n']} "
                    "paired seeds" if c["n"] > 1 else "one seed, no interval")
        if c["verdict"] == "no difference shown":
            verdict = "no difference shown"
        elif c["b"] == CROSS_GLOW:
            verdict = "attention beats coupling" if c["verdict"] == "better" else "coupling beats attention"
        else:
            verdict = "the cross-modal pathway helps" if c["verdict"] == "better" else "the cross-modal pathway hurts"
        lines.append(f"- {c['a']} vs {c['b']} ({c['what']}, paired by seed): {c['a']} lowers the bits/dim by "
                     f"{c['mean']:+.3f} ({interval}; lower in {c['wins']} of {c['n']} seeds): {verdict}.")
    return "\n".join(lines) + "\n"
