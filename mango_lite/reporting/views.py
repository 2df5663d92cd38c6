"""Markdown views of results files: the README's result tables and the sentences that compare models.

Every view takes the parsed JSON of one results file and returns Markdown, so a comparative sentence
("MANGO is last of the four fusions in 3 of 6 seed/dataset pairs") is computed from the same numbers as
the table above it, never typed. :mod:`mango_lite.reporting.readme` fills README blocks
``<!-- include: results/cpu/results.json headline -->`` with them; notebook 08 displays the same views.

Views (:data:`VIEWS`):

* ``headline`` (``results/<preset>/results.json``): per group the headline metric of MANGO, its rank
  among the fused models, the best other fusion and the best single input; then counts.
* ``seed_spread`` (``seeds.json`` of ``python -m mango_lite seeds``): mean ± std of the fused models
  per group; then, per task, how often MANGO was first, last and better than concat per seed.
* ``train_step`` (``benchmarks/results/bench_train_step_*.json``): each model's step time as a ratio
  to concat, median [min-max] over interleaved rounds.
* ``ica_bench`` (``benchmarks/results/bench_ica_*.json``): ICA's inverse and forward against their
  references, and the deep flow's float32 round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..datasets.constants import DATASET_LABELS
from ..markdown import table
from ..tasks import TASKS
from ..training.reproduce import HEADLINE
from ..training.tasks import FUSION_MODELS

_METRIC_LABELS = {"miou": "mIoU % ↑", "mae_x10": "MAE×10 ↓", "macro_f1": "macro F1 % ↑", "micro_f1": "micro F1 % ↑"}
_TASK_LABELS = {name: task.label for name, task in TASKS.items()}


def _group_label(entry: Mapping[str, Any], key: str) -> str:
    """"NYUDv2 segmentation", "Taskonomy Shade+Texture→RGB" from a results entry or a group key."""
    from ..training.tasks import PAIRS

    task = entry.get("task") or key.split("/")[0]
    pair = key.split("/")[-1]
    label = entry.get("pair_label") or (PAIRS[pair].label if TASKS[task].has_pairs and pair in PAIRS else None)
    if label:
        return f"Taskonomy {label}"
    dataset = entry.get("dataset") or key.split("/")[-1]
    return f"{DATASET_LABELS.get(dataset, dataset)} {_TASK_LABELS.get(task, task)}"


def _fmt(v: float, nd: int) -> str:
    return f"{v:.{nd}f}"


def _digits(values: Sequence[float], large: int = 1) -> int:
    """3 decimals for MAE×10-sized numbers (0.3-2), ``large`` for percentages."""
    return 3 if max(abs(v) for v in values) < 10 else large


def _count(n: int, of: int) -> str:
    return f"{n} of {of}"


def headline(results: Mapping[str, Any]) -> str:
    """Table of the headline metric per group (bold: best of all models) and computed counts."""
    header = ["group (" + ", ".join(sorted({str(e.get('data')) for e in results['results'].values()})) + ")",
              "metric", "MANGO", "rank among fusions", "best other fusion", "best single input"]
    rows: list[list[str]] = []
    first = last = fused_beats_single = n_groups = 0
    places: list[str] = []
    for key, e in results["results"].items():
        metric, higher = HEADLINE[e["task"]]
        vals = {m: float(v[metric]) for m, v in e["models"].items() if "error" not in v and metric in v}
        fused = [m for m in FUSION_MODELS if m in vals]
        single = [m for m in vals if m not in FUSION_MODELS and not m.startswith("mango")]
        if "mango" not in vals or not single:
            continue
        n_groups += 1
        best = (max if higher else min)
        order = sorted(fused, key=lambda m: vals[m], reverse=higher)
        overall = best(vals, key=lambda m: vals[m])
        nd = _digits(list(vals.values()))
        rank = order.index("mango") + 1
        first += rank == 1
        last += rank == len(order)
        other = next(m for m in order if m != "mango")
        top_single = best(single, key=lambda m: vals[m])
        fused_beats_single += (vals[order[0]] > vals[top_single]) if higher else (vals[order[0]] < vals[top_single])

        def cell(m: str) -> str:
            s = _fmt(vals[m], nd)
            return f"**{s}**" if m == overall else s

        rows.append([_group_label(e, key), _METRIC_LABELS.get(metric, metric), cell("mango"), f"{rank} / {len(order)}",
                     f"{other} {cell(other)}", f"{top_single} {cell(top_single)}"])
        places.append(str(rank))
    lines = table(header, rows) + ["", f"Computed from the table: the best fused model beats the best single input in "
                        f"{_count(fused_beats_single, n_groups)} groups; MANGO is first of the {len(FUSION_MODELS)} "
                        f"fusions in {_count(first, n_groups)} groups and last in {_count(last, n_groups)} "
                        f"(places {', '.join(places)}). Bold: best of all models in the group."]
    return "\n".join(lines) + "\n"


def seed_spread(summary: Mapping[str, Any], model: str = "mango", reference: str = "concat") -> str:
    """Mean ± std per fused model and group (bold: best mean), then per task how often ``model`` ranked
    first and last among the fusions and beat ``reference``, counted per seed and group."""
    groups = summary["groups"]
    names = [m for m in FUSION_MODELS if any(m in g["models"] for g in groups.values())]
    rows: list[list[str]] = []
    per_task: dict[str, list[int]] = {}
    for key, g in groups.items():
        ms = g["models"]
        nd = _digits([s["mean"] for s in ms.values()], large=2)
        best = (max if g["higher_is_better"] else min)(ms, key=lambda m: ms[m]["mean"])
        cells = []
        for m in names:
            if m not in ms:
                cells.append("-")
                continue
            s = ms[m]
            txt = _fmt(s["mean"], nd) + (f" ± {_fmt(s['std'], nd)}" if s.get("std") is not None else "")
            cells.append(f"**{txt}**" if m == best else txt)
        task = key.split("/")[0]
        rows.append([_group_label({}, key), _METRIC_LABELS.get(g["metric"], g["metric"]), *cells])
        if model not in ms:
            continue
        sign = 1.0 if g["higher_is_better"] else -1.0
        fused_ranks = [[m for m in r if m in FUSION_MODELS] for r in g["rank_by_seed"]]
        c = per_task.setdefault(task, [0, 0, 0, 0])  # first, last, better than reference, pairs
        for i, r in enumerate(fused_ranks):
            c[0] += r[0] == model
            c[1] += r[-1] == model
            if reference in ms:
                c[2] += sign * (ms[model]["values"][i] - ms[reference]["values"][i]) > 0
            c[3] += 1
    seeds = len(summary.get("seeds") or [])
    lines = table(["group", "metric", *names], rows)
    lines += ["", f"Counted per seed and group ({seeds} seeds; computed from `seeds.json`):"]
    for task, (first, last, better, n) in per_task.items():
        lines.append(f"- {_TASK_LABELS.get(task, task)}: {model} first of the fusions in {_count(first, n)} seed/group "
                     f"pairs, last in {_count(last, n)}, better than {reference} in {_count(better, n)}.")
    return "\n".join(lines) + "\n"


def flop_reading(reference: str, flop_ratio: float, step_ratio: float, goal: float | None) -> str:
    """What a step ratio means given the forward FLOPs: MANGO's arithmetic per millisecond against the reference
    model's (``flop_ratio / step_ratio``), and what the goal's step ratio would need."""
    rate = flop_ratio / step_ratio
    text = (f"MANGO's forward pass does {flop_ratio:.2f}× {reference}'s arithmetic (matmuls and convolutions, "
            "`FlopCounterMode`; the backward scales with it), so at a step of "
            f"{step_ratio:.2f}× it runs {rate:.2f}× {reference}'s FLOPs per millisecond")
    if goal and step_ratio > goal:
        text += f"; the goal's step of {goal:g}× would need {flop_ratio / goal:.2f}×"
    return text + "."


def train_step(bench: Mapping[str, Any]) -> str:
    """One row per model: median step time and its ratio to concat with the spread over rounds."""
    models = bench["models"]
    flops = all("forward_gflops" in m for m in models.values()) and "concat" in models  # benchmarks since 2026-12
    rows = []
    for name, m in models.items():
        ratio = ("1 (reference)" if name == "concat"
                 else f"{m['ratio_to_concat']:.2f}× [{m['ratio_min']:.2f}-{m['ratio_max']:.2f}]")
        row = [name, f"{m['median_ms']:.0f}", ratio, f"{m['params'] / 1e6:.2f} M"]
        if flops:
            row.append(f"{m['forward_gflops']:.2f} ({m['forward_gflops'] / models['concat']['forward_gflops']:.2f}×)")
        rows.append(row)
    goal = bench.get("goal_ratio")
    met = [n for n, m in models.items() if n.startswith("mango") and goal and m["ratio_to_concat"] <= goal]
    lines = table(["model", "median step (ms)", "ratio to concat, median [min-max]", "parameters"]
                  + (["forward GFLOPs (ratio to concat)"] if flops else []), rows) + [
        "", f"Preset `{bench.get('preset')}`, batch {bench.get('batch')}, {bench.get('image_size')} px, "
                        f"{bench.get('threads')} thread(s), {bench.get('rounds')} interleaved rounds on "
                        f"{bench.get('device')}, torch {bench.get('torch')}."]
    if goal:
        lines.append(f"Goal: at most {goal:g}× concat; met by {', '.join(met) if met else 'no MANGO variant'}.")
    if flops and "mango" in models:
        m, c = models["mango"], models["concat"]
        lines.append(flop_reading("concat", m["forward_gflops"] / c["forward_gflops"], m["ratio_to_concat"], goal))
    return "\n".join(lines) + "\n"


def ica_bench(rows: Sequence[Mapping[str, Any]]) -> str:
    """``benchmarks/bench_ica.py --json``: (a) our inverse against the published pinv inverse and the
    forward, (b) ICA against plain masked attention, (c) the deep flow's float32 round trip. Ratios are
    medians of interleaved rounds with their min-max."""
    lines = table(["tokens per modality", "ICA forward", "ICA inverse (ours)", "published inverse (pinv)",
                   "speed-up, median [min-max]", "inverse / forward", "max error, ours / pinv"],
                  [[r["tokens"], f"{1e3 * r['forward_s']:.2f} ms", f"{1e3 * r['inverse_s']:.2f} ms",
                    f"{1e3 * r['published_inverse_s']:.1f} ms", f"{r['speedup_vs_published']:.0f}×"
                    + (f" [{r['speedup_min']:.0f}-{r['speedup_max']:.0f}]" if "speedup_min" in r else ""),
                    f"{r['inverse_over_forward']:.2f}×", f"{r['max_err_ours']:.1e} / {r['max_err_published']:.1e}"]
                   for r in rows if r["case"] == "a"])
    b = [r for r in rows if r["case"] == "b"]
    if b:
        parts = ", ".join(f"{r['ratio']:.2f}×" + (f" [{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]" if "ratio_min" in r else "")
                          + f" ({r['tokens']})" for r in b)
        lines += ["", f"- ICA forward + log-det vs plain masked cross-attention with the same projections: {parts}."]
    for r in (r for r in rows if r["case"] == "c"):
        lines.append(f"- {r.get('blocks', 12)}-block `MangoFlow` ({r.get('tokens', 256)} tokens per modality, D = "
                     f"{r.get('dim', 64)}) after ActNorm init: float32 round-trip error {r['roundtrip_max_abs_err']:.1e} "
                     f"(relative {r['roundtrip_rel_err']:.1e}); forward {r['forward_s']:.2f} s, inverse "
                     f"{r['inverse_s']:.2f} s; peak {r['peak_rss_mib']:.0f} MiB.")
    a = [r for r in rows if r["case"] == "a"]
    if rows and "threads" in rows[0]:
        lines.append(f"- Measured with {rows[0]['threads']} torch thread(s), torch {rows[0].get('torch')}; "
                     f"{rows[0].get('pairs', a[0].get('pairs') if a else '?')} interleaved rounds per ratio.")
    if a:
        lines.append("- Peak resident memory of the inverse benchmark: "
                     + " / ".join(f"{r['peak_rss_mib']:.0f}" for r in a) + " MiB at "
                     + " / ".join(str(r["tokens"]) for r in a) + " tokens.")
    return "\n".join(lines) + "\n"


def reproduce_jobs(bench: Mapping[str, Any]) -> str:
    """``benchmarks/bench_reproduce_jobs.py --out``: wall-time speed-up of worker processes over one run
    after another, per interleaved round, and whether every metric agreed."""
    rounds = bench["rounds"]
    cluster = bench.get("cluster")
    mode = f"as submitit {cluster} jobs (all started at once)" if cluster else f"{bench['jobs']} workers"
    label = f"submitit {cluster} jobs" if cluster else "workers"
    return (f"- preset `{bench['preset']}`, tasks "
            f"{bench['tasks'] if isinstance(bench['tasks'], str) else ', '.join(bench['tasks'])}"
            f" ({bench['runs']} runs), {mode} on {bench['device']}: speed-up "
            f"{bench['speedup_median']:.2f}× [{bench['speedup_min']:.2f}-{bench['speedup_max']:.2f}] over "
            f"{len(rounds)} round(s) (one after another "
            + ", ".join(f"{r['serial_s']:.0f} s" for r in rounds) + f"; {label} "
            + ", ".join(f"{r['parallel_s']:.0f} s" for r in rounds) + ")" + ("" if cluster else f"; goal {bench['goal']}×")
            + "; identical metrics in "
            f"every round: {'yes' if bench['same_metrics_every_round'] else 'NO'}.\n")


def reproduce_wall(run: Mapping[str, Any]) -> str:
    """``benchmarks/time_reproduction.py --out``: how long one whole reproduction took in its workers,
    against the plan's estimate, and how many runs gave the reference's headline metric again."""
    c = run["compared_with_reference"]
    est = run.get("plan_estimate_one_after_another_s")
    plan = f"; the plan estimated {est / 60:.0f} min one run after another" if est else ""
    rel = [(abs(d["value"] - d["reference"]) / max(abs(d["reference"]), 1e-12), d) for d in c["differ"]]
    worst = max(rel, key=lambda x: x[0], default=None)
    differ = (f"; {len(rel)} differ by at most {100 * worst[0]:.2g} % (largest: {worst[1]['run']}, "
              f"{worst[1]['metric']} {worst[1]['value']:.4g} against {worst[1]['reference']:.4g})"
              if worst else "")
    return (f"- preset `{run['preset']}`, {run['runs']} runs in {run['jobs']} worker processes on {run['device']}: "
            f"**{run['wall_time_s'] / 60:.0f} min** wall ({run['sum_of_run_times_s'] / 60:.0f} min of runs{plan}); "
            f"{c['same']} of {run['runs']} runs gave the headline metric of the committed reproduction again to "
            f"1e-6{differ}.\n")


def ddp_bench(bench: Mapping[str, Any]) -> str:
    """``benchmarks/bench_ddp.py --out``: one run on several DDP processes (``torchrun``) against one process,
    per interleaved round, and how far the final validation loss moved."""
    rounds = bench["rounds"]
    return (f"- {bench['task']} / {bench['model']} at preset `{bench['preset']}`, {bench['epochs']} epochs, "
            f"{bench['procs']} processes ({bench['backend']}) on {bench['device']}: speed-up "
            f"{bench['speedup_median']:.2f}× [{bench['speedup_min']:.2f}-{bench['speedup_max']:.2f}] over one process "
            f"in {len(rounds)} interleaved round(s) (one process " + ", ".join(f"{r['one_process_s']:.0f} s" for r in rounds)
            + "; DDP " + ", ".join(f"{r['ddp_s']:.0f} s" for r in rounds) + ", start-up and validation included); "
            + (f"the optimisation alone {bench['train_speedup_median']:.2f}× [{bench['train_speedup_min']:.2f}-"
               f"{bench['train_speedup_max']:.2f}]; " if "train_speedup_median" in bench else "") + "final validation "
            f"loss within {100 * bench['val_loss_rel_diff_max']:.1f} % of one process's.\n")


#: issue goals at the paper preset: MANGO's step and its peak training memory at most these times TokenFusion's
PAPER_STEP_GOAL, PAPER_MEMORY_GOAL = 3.0, 2.0


def paper_step(bench: Mapping[str, Any]) -> str:
    """``benchmarks/bench_paper_step.py --out``: MANGO's and TokenFusion's step at the paper preset and the
    time of one real-data run at that speed; where the file has them, each model's forward FLOPs and the peak
    memory of one step, the goals' readings and what the FLOP count means for the step (:func:`flop_reading`)."""
    m, t = bench["models"]["mango"], bench["models"]["tokenfusion"]
    q = bench["first_over"]["tokenfusion"]
    runs = bench["run_minutes"]
    text = (f"- preset `{bench['preset']}` on {bench['device']} ({bench['threads']} threads, torch {bench['torch']}), "
            f"segmentation at batch {bench['batch']}, {bench['image_size']} px, encoders {bench['encoders']}: "
            f"MANGO {m['step_ms'] / 1e3:.2f} s per step, TokenFusion {t['step_ms'] / 1e3:.2f} s "
            f"(MANGO / TokenFusion {q['ratio']:.2f}× [{q['ratio_min']:.2f}-{q['ratio_max']:.2f}] over "
            f"{bench['pairs']} interleaved pairs); one MANGO run at this speed: NYUDv2 {runs['nyudv2'] / 60:.0f} h, "
            f"SUN RGB-D {runs['sunrgbd'] / 60:.0f} h.\n")
    if "forward_gflops" not in m or "forward_gflops" not in t:  # files written before the FLOP count
        return text
    flops = m["forward_gflops"] / t["forward_gflops"]
    memory = m["peak_step_mib"] / t["peak_step_mib"] if t.get("peak_step_mib") else float("nan")
    step_goal = "met" if q["ratio"] <= PAPER_STEP_GOAL else "not met"
    memory_goal = "met" if memory <= PAPER_MEMORY_GOAL else "not met"
    text += (f"- Forward pass: MANGO {m['forward_gflops']:.1f} GFLOPs, TokenFusion {t['forward_gflops']:.1f} "
             f"({flops:.2f}×; `FlopCounterMode`, matmuls and convolutions). Peak memory of one step above what "
             f"was held before it: MANGO {m['peak_step_mib']:.0f} MiB, TokenFusion {t['peak_step_mib']:.0f} MiB "
             f"({memory:.2f}×).\n"
             f"- Goals: step at most {PAPER_STEP_GOAL:g}× TokenFusion's, {q['ratio']:.2f}×, {step_goal}; peak "
             f"training memory at most {PAPER_MEMORY_GOAL:g}×, {memory:.2f}×, {memory_goal}.\n- ")
    text += flop_reading("TokenFusion", flops, q["ratio"], PAPER_STEP_GOAL) + "\n"
    ck, ck_over = bench["models"].get("mango+checkpointed"), bench["first_over"].get("mango+checkpointed")
    if ck and ck_over and t.get("peak_step_mib"):
        slower = 1 / ck_over["ratio"]  # first_over = MANGO's step over the checkpointed one's
        ck_memory = ck["peak_step_mib"] / t["peak_step_mib"]
        text += (f"- With activation checkpointing (`use_activation_checkpointing`, each MANGO block's activations "
                 f"recomputed in the backward): peak {ck['peak_step_mib']:.0f} MiB, {ck_memory:.2f}× TokenFusion's "
                 f"(goal {PAPER_MEMORY_GOAL:g}×, {'met' if ck_memory <= PAPER_MEMORY_GOAL else 'not met'}); its step "
                 f"{slower:.2f}× MANGO's [{1 / ck_over['ratio_max']:.2f}-{1 / ck_over['ratio_min']:.2f}] (interleaved), "
                 f"so about {q['ratio'] * slower:.1f}× TokenFusion's (the product of the two medians).\n")
    return text


def notebook_runtimes(folder: Path) -> str:
    """One row per committed notebook of ``folder``: the preset and device of its committed run (``-`` where
    its outputs do not name them) and how long that run took (:func:`mango_lite.reporting.notebook_runs.committed_run`), so
    the README's runtimes are measured."""
    from .notebook_runs import committed_run

    def took(sec: float | None) -> str:
        return "-" if sec is None else (f"{sec:.0f} s" if sec < 90 else f"{sec / 60:.1f} min")

    rows = []
    timed = {}
    for nb in sorted(Path(folder).glob("*.ipynb")):
        run = committed_run(nb)
        if run["seconds"] is not None:
            timed[nb.stem] = run["seconds"]
        rows.append([f"`{nb.stem}`", run["preset"] or "-", run["device"] or "-", took(run["seconds"])])
    lines = table(["notebook", "committed run: preset", "device", "runtime"], rows)
    longer = {k: v for k, v in timed.items() if v > LAB_MINUTES * 60}
    lines += ["", f"{_count(len(timed) - len(longer), len(timed))} timed notebooks ran in at most {LAB_MINUTES} minutes"
              + ("." if not longer else "; longer: " + ", ".join(f"`{k}` ({took(v)})" for k, v in longer.items()) + ".")]
    return "\n".join(lines) + "\n"


#: the length of a lab session a notebook should fit in at the cpu preset
LAB_MINUTES = 6


#: views of a folder rather than of one JSON file (``<!-- include: notebooks notebook_runtimes -->``)
FOLDER_VIEWS: dict[str, Callable[[Path], str]] = {"notebook_runtimes": notebook_runtimes}


#: issue goal for ICA's forward + log-det through fused kernels: at most this times fused causal attention at
#: ``FUSED_GOAL_TOKENS`` tokens per modality
FUSED_GOAL_RATIO, FUSED_GOAL_TOKENS = 1.3, 1024


def fused_ica(res: Mapping[str, Any]) -> str:
    """``benchmarks/bench_fused_ica.py``: one ICA training step (forward + log-det + backward) through fused
    kernels against the materialised reference and against fused causal attention, with the memory each
    keeps for the backward; the forward alone against the attention's where the file has it (and the goal's
    reading at its token count)."""
    rows, has_forward = [], all("forward_fused_over_sdpa" in r for r in res["rows"])
    for r in res["rows"]:
        a, b, m = r["fused_over_materialised"], r["fused_over_sdpa"], r["saved_for_backward_mib"]
        row = [r["tokens"], f"{1e3 * r['fused_s']:.1f} ms", f"{1e3 * r['materialised_s']:.1f} ms",
               f"{1e3 * r['sdpa_s']:.1f} ms", f"{a[0]:.2f}× [{a[1]:.2f}-{a[2]:.2f}]", f"{b[0]:.2f}× [{b[1]:.2f}-{b[2]:.2f}]"]
        if has_forward:
            c = r["forward_fused_over_sdpa"]
            row.append(f"{c[0]:.2f}× [{c[1]:.2f}-{c[2]:.2f}]")
        rows.append(row + [f"{m['materialised']:.1f} / {m['fused']:.1f} / {m['sdpa']:.1f}"])
    header = ["tokens per modality", "fused ICA", "materialised ICA", "fused causal attention", "fused / materialised",
              "fused / attention"] + (["forward alone: fused / attention"] if has_forward else []) + [
              "kept for backward (MiB): materialised / fused / attention"]
    lines = table(header, rows)
    r0 = res["rows"][0] if res["rows"] else {}
    repeat = f", each timing {r0['repeat']} steps" if r0.get("repeat", 1) > 1 else ""
    lines += ["", f"- {res.get('device')}, {res.get('threads')} torch thread(s), torch {res.get('torch')}; D = "
              f"{r0.get('dim')}, batch {r0.get('batch')}, one head; {r0.get('pairs')} interleaved rounds per ratio "
              f"(median [min-max]){repeat}."]
    at_goal = [r for r in res["rows"] if r["tokens"] == FUSED_GOAL_TOKENS and "forward_fused_over_sdpa" in r]
    if at_goal:
        c, t = at_goal[0]["forward_fused_over_sdpa"], at_goal[0]["fused_over_sdpa"]
        verdict = "met" if c[0] <= FUSED_GOAL_RATIO else "not met"
        spread = " (its spread reaches past it)" if (c[0] <= FUSED_GOAL_RATIO) != (c[2] <= FUSED_GOAL_RATIO) else ""
        lines.append(f"- Goal, ICA forward + log-det at most {FUSED_GOAL_RATIO:g}× fused causal attention at "
                     f"{FUSED_GOAL_TOKENS} tokens: {c[0]:.2f}×, {verdict}{spread}; with the backward, {t[0]:.2f}×.")
    peaks = [r for r in res["rows"] if (r.get("peak_step_mib") or {}).get("fused") is not None]
    if peaks:
        lines.append("- Peak device memory of one step (MiB), materialised / fused / attention: " + "; ".join(
            f"{r['tokens']} tokens {r['peak_step_mib']['materialised']:.0f} / {r['peak_step_mib']['fused']:.0f} / "
            f"{r['peak_step_mib']['sdpa']:.0f}" for r in peaks) + ".")
    if res.get("agreement"):
        a = res["agreement"]
        lines.append(f"- Fused against materialised on this device ({a['dtype']}, {a['tokens']} tokens, parameters "
                     "perturbed, both triangles), largest relative difference: "
                     + ", ".join(f"{k} {v:.1e}" for k, v in a["max_rel_diff"].items()) + ".")
    return "\n".join(lines) + "\n"


def train_profile(res: Mapping[str, Any]) -> str:
    """``benchmarks/profile_train_step.py``: where MANGO's training step goes, by phase (against concat), by
    module of the forward, and by operator."""
    ph = res["phases"]
    names = ("forward", "loss", "backward", "optimizer", "step")
    lines = table(["model", *(f"{n} (ms)" for n in names)], [[model, *(f"{p[n]:.1f}" for n in names)]
                                                            for model, p in ph.items()])
    mods = res.get("modules") or {}
    fwd = sum(v for k, v in mods.items() if not k.startswith("flow:") and k != "fusion.flow") or None
    lines += ["", f"Preset `{res['preset']}` (batch {res['batch']}, {res['image_size']} px) on {res['device']}, torch "
              f"{res['torch']}; medians of {res['steps']} steps, each phase bracketed by device synchronisation."]
    if mods and fwd:
        flow = {k[len('flow: '):]: v for k, v in mods.items() if k.startswith("flow: ")}
        lines.append("- MANGO's forward by part (synchronising hooks; shares of their sum): "
                     + ", ".join(f"{k} {100 * v / fwd:.0f} %" for k, v in mods.items()
                                 if not k.startswith("flow:") and k != "fusion.flow")
                     + "; inside the flow, by layer type: "
                     + ", ".join(f"{k} {100 * v / fwd:.0f} %" for k, v in flow.items()) + ".")
    ops = res.get("operators") or {}
    if ops.get("operators"):
        top = ops["operators"][:5]
        kernels = f"{ops['kernels_per_step']:.0f} kernels launched per step; " if ops.get("kernels_per_step") else ""
        first = top[0]
        busy = first["ms_per_step"] / first["share"] if first.get("share") else None
        step = (ph.get("mango") or {}).get("step")
        if busy and step and ops.get("kernels_per_step"):
            kernels += (f"the device busy (sum of self device time) {busy:.0f} ms of MANGO's {step:.0f} ms step "
                        f"({100 * busy / step:.0f} %); ")
        lines.append(f"- {kernels}largest {ops['time_kind']}: " + ", ".join(
            f"`{o['name'][:40]}` {100 * o['share']:.1f} % ({o['calls_per_step']:.0f} calls)" for o in top) + ".")
    disp = res.get("dispatched") or {}
    if "mango" in disp and "concat" in disp:
        m, c = disp["mango"], disp["concat"]
        lines.append(f"- Operators dispatched per step, views left out (one kernel launch each on a GPU): MANGO "
                     f"{m['step']} (forward {m['forward']}, backward {m['backward']}, optimizer {m['optimizer']}), "
                     f"concat {c['step']} ({m['step'] / c['step']:.1f}×); in MANGO's forward, per layer: "
                     + ", ".join(f"{k} {v:.0f} ({m['layers'][k]} layers)" for k, v in m["per_layer_forward"].items())
                     + ".")
    return "\n".join(lines) + "\n"


def compile_step(res: Mapping[str, Any]) -> str:
    """``benchmarks/bench_compile.py``: torch.compile on MANGO's training step."""
    if res.get("error"):
        return (f"`torch.compile` of MANGO's step at preset `{res['preset']}` on {res['device']} (torch "
                f"{res['torch']}) failed: {res['error']}\n")
    return (f"`torch.compile` of MANGO's training step at preset `{res['preset']}` (batch {res['batch']}, "
            f"{res['image_size']} px) on {res['device']}, torch {res['torch']}: compiled in {res['compile_s']:.0f} s; "
            f"step {res['compiled_ms']:.1f} ms against {res['eager_ms']:.1f} ms eager, "
            f"{res['compiled_over_eager']:.2f}× [{res['ratio_min']:.2f}-{res['ratio_max']:.2f}] over {res['pairs']} "
            f"interleaved pairs; the gradients of one step differ from eager by up to {res['gradient_max_rel_diff']:.1e} "
            f"of the model's largest gradient entry (largest at `{res['worst_parameter']}`)"
            + ("." if res.get("same_noise") else
               ", but the two steps drew different training noise, so that figure compares two noise draws, not "
               "the compiler (measured before the benchmark reseeded both).") + "\n")


#: view name -> function of the parsed JSON file
VIEWS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "headline": headline,
    "seed_spread": seed_spread,
    "train_step": train_step,
    "ica_bench": ica_bench,  # type: ignore[dict-item]
    "reproduce_jobs": reproduce_jobs,
    "paper_step": paper_step,
    "reproduce_wall": reproduce_wall,
    "ddp_bench": ddp_bench,
    "fused_ica": fused_ica,
    "train_profile": train_profile,
    "compile_step": compile_step,
}
