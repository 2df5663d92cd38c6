"""The cost of the task models as :func:`~mango_lite.training.train_task` builds them: every model of a task on its
first training batch (:func:`task_costs`), parameter counts per preset, and MANGO's train step against
TokenFusion's. The measurement itself (parameters, FLOPs, step time, peak memory of one model on one batch) is
:func:`mango_lite.engine.cost.measure_cost`.

    from mango_lite.training.cost import task_costs
    rows = task_costs("segmentation", ["mango", "concat"], "cpu")  # every model of a task at a preset
"""

from __future__ import annotations

import contextlib
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..engine.cost import COST_KEYS, forward_flops, measure_cost, peak_memory_bytes
from ..markdown import table

__all__ = ["task_costs", "parameter_counts", "parameter_markdown", "train_step_timings", "preset_model",
           "measure_cost", "peak_memory_bytes", "forward_flops", "COST_KEYS"]


def task_costs(
    task: str,
    models: Sequence[str] | None = None,
    preset: Any = None,
    *,
    data: Any = None,
    data_root: Any = None,
    pair: str | None = None,
    dataset: str | None = None,
    cache_dir: Any = None,
    batch_size: int | None = None,
    model_overrides: Mapping[str, Any] | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
    **measure_kw: Any,
) -> dict[str, dict[str, Any]]:
    """:func:`measure_cost` for every model of ``task`` (default: the four fusions and the two unimodal
    models) built exactly as :func:`mango_lite.training.train_task` builds them at ``preset``, on the
    first training batch (``batch_size``, default the preset's) of the task's data. Returns
    ``{model: cost dict}`` plus, per model, ``"params_fusion"`` (parameters of the fusion module alone),
    ``"task"`` and ``"data"`` (what the batch came from). ``measure_kw`` go to :func:`measure_cost`."""
    from torch.utils.data import DataLoader

    from ..models import count_parameters
    from ..utils import seed_everything
    from .tasks import (
        FUSION_MODELS,
        build_task_data,
        build_task_model,
        check_task,
        control_overrides,
        make_adapter,
        model_kwargs,
        resolve_model,
        resolve_preset,
        unimodal_names,
    )

    task = check_task(task)
    preset = resolve_preset(preset)
    if data is None:
        data = build_task_data(task, preset, data_root, pair, dataset, cache_dir, log=log)
    names = list(models) if models else list(FUSION_MODELS + unimodal_names(task, data.pair))
    bs = int(batch_size or preset.batch_size)
    loader = DataLoader(data.train, batch_size=min(bs, len(data.train)), shuffle=False)  # type: ignore[arg-type]
    batch = next(iter(loader))
    adapter = make_adapter(data, fid=False)
    cpu = torch.device("cpu")
    a, b = adapter.inputs(batch, cpu)
    y = adapter.target(batch, cpu)
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        fusion = resolve_model(task, name, data.pair)
        seed_everything(seed)
        over = {**control_overrides(name), **dict(model_overrides or {})}
        net = build_task_model(task, fusion, model_kwargs(task, data, preset, over))
        if log:
            log(f"cost {task} {name}")
        c = measure_cost(net, a if fusion != "b" else None, b if fusion != "a" else None, y, **measure_kw)
        c["params_fusion"] = count_parameters(net).get("fusion")
        c["task"] = task
        c["data"] = data.info.source
        out[name] = c
    return out


#: what the models of each task read when no data is at hand: (input channels, outputs, extra ModelConfig
#: keywords): NYUDv2 RGB + depth -> 40 classes; Shade + Texture -> RGB; MM-IMDb poster + 300-d plot vector
#: (the GMU release) -> 23 genres
_COUNT_SHAPES: dict[str, tuple[tuple[int, int], int, dict[str, Any]]] = {
    "segmentation": ((3, 1), 40, {}),
    "translation": ((1, 3), 3, {}),
    "genre": ((3, 3), 23, {"text_encoder": "vector", "text_dim": 300}),
}

#: what the paper says about its Table 8 (the numbers themselves are not in the public sources)
TABLE8_CLAIM = "MANGO has more parameters (and a longer inference time) than lighter fusions such as TokenFusion"


def preset_model(task: str, name: str, preset: Any) -> nn.Module:
    """Model ``name`` (a fusion or a MANGO control) of ``task`` built as ``train`` builds it at ``preset``, with
    the data shapes of :data:`_COUNT_SHAPES` (no data needed)."""
    from types import SimpleNamespace

    from .runspec import resolve_preset
    from .tasks import build_task_model, control_overrides, model_kwargs, resolve_model

    preset = resolve_preset(preset)
    channels, outputs, extra = _COUNT_SHAPES[task]
    data = SimpleNamespace(in_channels=channels, num_outputs=outputs, model_kwargs=extra)
    return build_task_model(task, resolve_model(task, name), model_kwargs(task, data, preset, control_overrides(name)))


def parameter_counts(preset: Any = None, tasks: Sequence[str] | None = None,
                     models: Sequence[str] = ("mango", "tokenfusion", "crossattn", "concat")) -> dict[str, Any]:
    """Trainable parameters of ``models`` on ``tasks`` exactly as ``train`` / ``reproduce`` build them at
    ``preset`` (no data needed: the shapes of NYUDv2, Shade + Texture -> RGB and MM-IMDb's vectors).

    A preset whose encoders need weights that were not given (the ``paper`` preset without
    ``with_encoders(encoder_weights=...)``) is counted with encoders trained from scratch, and says so in
    ``"encoders"``. Returns ``{"preset", "encoders", "claim", "tasks": {task: {model: {"total", "encoders",
    "fusion", "head"}}}, "claim_holds": {task: bool}}`` (MANGO heavier than TokenFusion)."""
    from ..models import count_parameters
    from .runspec import resolve_preset
    from .tasks import TASK_NAMES

    preset = resolve_preset(preset)
    encoders = "as the preset builds them"
    needs_weights = any(
        dict(v.get("model", {})).get("encoder", "conv") != "conv" and not dict(v.get("model", {})).get("encoder_weights")
        for k, v in (preset.tasks or {}).items() if k in TASK_NAMES
    )
    if needs_weights:
        preset = preset.with_encoders(encoder="conv")
        encoders = "trained from scratch (ConvEncoder): no pretrained weights given"
    out: dict[str, Any] = {"preset": preset.name, "encoders": encoders, "claim": TABLE8_CLAIM, "tasks": {},
                           "claim_holds": {}}
    for task in tasks or TASK_NAMES:
        rows: dict[str, dict[str, int]] = {}
        for name in models:
            net = preset_model(task, name, preset)
            rows[name] = count_parameters(net)
            del net
        out["tasks"][task] = rows
        if "mango" in rows and "tokenfusion" in rows:
            out["claim_holds"][task] = rows["mango"]["total"] > rows["tokenfusion"]["total"]
    return out


def parameter_markdown(counts: Mapping[str, Any]) -> str:
    """The counts of :func:`parameter_counts` as a Markdown table (millions), with Table 8's claim checked."""
    lines = [f"# Parameters at the `{counts['preset']}` preset", "",
             f"Encoders: {counts['encoders']}. Millions of trainable parameters, built as `train` builds them.", ""]
    lines += table(["task", "model", "total", "encoders", "fusion", "head"],
                   [[task, name, *(f"{c[k] / 1e6:.2f}" for k in ("total", "encoders", "fusion", "head"))]
                    for task, rows in counts["tasks"].items() for name, c in rows.items()], align="llrrrr")
    holds = counts.get("claim_holds", {})
    if holds:
        yes = [t for t, v in holds.items() if v]
        lines += ["", f"Paper, Table 8: {counts['claim']}. Here MANGO has more parameters than TokenFusion on "
                      f"{len(yes)} of {len(holds)} tasks" + (f" ({', '.join(yes)})." if yes else ".")]
    return "\n".join(lines) + "\n"


#: training samples of one epoch of the real datasets (NYUDv2 795, SUN RGB-D 5,285, Taskonomy subset 1,000,
#: MM-IMDb 15,552), to turn a step time into the time of one run
REAL_TRAIN_SIZES: dict[str, int] = {"nyudv2": 795, "sunrgbd": 5285, "taskonomy": 1000, "mmimdb": 15552}


def train_step_timings(device: str | torch.device, preset: Any, models: Sequence[str] = ("mango", "tokenfusion"),
                       task: str = "segmentation", pairs: int = 5, amp: bool = True) -> dict[str, Any]:
    """One optimizer step (forward, loss, backward, AdamW) of each of ``models`` at ``preset``'s batch and image
    size on ``device``, interleaved (:func:`mango_lite.timing.interleaved`, the first model against each
    other one), bf16 autocast on CUDA when ``amp``. Segmentation models get NYUDv2's shapes. A name may end in
    ``+checkpointed``: that fusion with its flow's activations recomputed in the backward
    (:func:`mango_lite.flows.use_activation_checkpointing`).

    Returns ``{"preset", "device", "batch", "image_size", "models": {name: {"step_ms", "params",
    "forward_gflops", "peak_step_mib"}}, "first_over": {name: {"ratio", "ratio_min", "ratio_max"}} (the first
    model's step over ``name``'s), "run_minutes": {dataset: minutes of one run of the first model at the preset's
    epochs}}``. ``forward_gflops``: one forward pass at the batch (``FlopCounterMode``); ``peak_step_mib``: the
    peak memory one step allocates above what was held before it (activations kept for the backward, gradients,
    temporaries; :func:`mango_lite.engine.cost.peak_memory_bytes`), measured after the timed steps, so the
    optimizer's state already exists."""
    from ..timing import interleaved
    from ..utils import device_name
    from .runspec import resolve_preset

    preset = resolve_preset(preset)
    dev = torch.device(device)
    bs, size = int(preset.batch_size), int(preset.image_size)
    channels, outputs, _ = _COUNT_SHAPES[task]
    g = torch.Generator().manual_seed(0)
    a = torch.randn(bs, channels[0], size, size, generator=g).to(dev)
    b = torch.randn(bs, channels[1], size, size, generator=g).to(dev)
    y = torch.randint(0, outputs, (bs, size, size), generator=g).to(dev)
    use_amp = amp and dev.type == "cuda"

    nets: dict[str, nn.Module] = {}

    def stepper(name: str) -> tuple[Callable[[], None], int]:
        fusion, _, variant = name.partition("+")
        if variant not in ("", "checkpointed"):
            raise ValueError(f"train_step_timings: a model is a fusion name, optionally with '+checkpointed', got {name!r}")
        torch.manual_seed(0)
        net = nets[name] = preset_model(task, fusion, preset).to(dev).train()
        if variant:
            from ..flows import use_activation_checkpointing

            use_activation_checkpointing(net)
        opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-12)

        def step() -> None:
            with torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext():
                loss, _ = net.loss(net(a, b), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step, int(sum(p.numel() for p in net.parameters() if p.requires_grad))

    steps = {name: stepper(name) for name in models}
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else None
    first = models[0]
    out: dict[str, Any] = {"preset": preset.name, "device": device_name(dev), "batch": bs, "image_size": size,
                           "task": task, "amp": use_amp, "first": models[0], "models": {}, "first_over": {}}
    first_ms: list[float] = []
    for name in models[1:]:
        r = interleaved(steps[first][0], steps[name][0], pairs, sync=sync)
        first_ms.append(1e3 * r["a_s"])
        out["models"][name] = {"step_ms": 1e3 * r["b_s"], "params": steps[name][1]}
        out["first_over"][name] = {"ratio": r["ratio"], "ratio_min": r["ratio_min"], "ratio_max": r["ratio_max"]}
    out["models"][first] = {"step_ms": statistics.median(first_ms) if first_ms else float("nan"),
                            "params": steps[first][1]}
    for name in models:
        with torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext():
            out["models"][name]["forward_gflops"] = forward_flops(nets[name], a, b) / 1e9
        out["models"][name]["peak_step_mib"] = peak_memory_bytes(steps[name][0], dev) / 2**20
    ms = out["models"][first]["step_ms"]
    out["run_minutes"] = {ds: math.ceil(n / bs) * int(preset.epochs) * ms / 6e4
                          for ds, n in REAL_TRAIN_SIZES.items() if ds in ("nyudv2", "sunrgbd")}
    return out
