"""Trainable parameters that the training loss can reach, beside the nominal count.

A model's nominal parameter count can overstate what it trains: the no-attention control (every gamma fixed
at 0) keeps the query and key weights of its ICA layers, but its layers skip the attention, so those weights
never receive a gradient. Tables that compare models by size show both counts.

* :func:`parameters_receiving_gradient`: the two counts of one built model, from one backward pass.
* :func:`effective_parameters`: the two counts of several task models, each built as a run builds it (named
  model plus ``build_model`` overrides), on a few samples of the task's data.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..presets import Preset

__all__ = ["parameters_receiving_gradient", "effective_parameters"]


def parameters_receiving_gradient(model: Any, batch_a: Any, batch_b: Any, target: Any) -> dict[str, int]:
    """Trainable parameters of ``model`` (nominal) and those the training loss can reach: the parameter tensors
    that get a non-zero gradient once every parameter is moved off its start (zero-initialised outputs would
    otherwise block the gradient of the layers before them at step one). The no-attention control's query and
    key weights, for instance, never get one: its layers skip the attention. ``model`` is perturbed in place."""
    from ..flows.perturb import perturb_parameters

    perturb_parameters(model, std=0.1, generator=torch.Generator().manual_seed(0))
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(batch_a, batch_b)
    loss, _ = model.loss(out, target)
    loss.backward()
    nominal = sum(p.numel() for p in model.parameters() if p.requires_grad)
    alive = sum(p.numel() for p in model.parameters()
                if p.requires_grad and p.grad is not None and bool(torch.any(p.grad != 0)))
    model.zero_grad(set_to_none=True)
    return {"nominal": int(nominal), "receiving_gradient": int(alive)}


def effective_parameters(task: str, preset: str | Preset, rows: Mapping[str, tuple[str, Mapping[str, Any]]],
                         dataset: str | None = None, pair: str | None = None, cache_dir: str | Path | None = None,
                         batch: int = 4) -> dict[str, dict[str, int]]:
    """:func:`parameters_receiving_gradient` of every row ``name -> (model, ModelConfig overrides)``, each
    built as :func:`~mango_lite.training.train_task` builds it (the model's control overrides, then the row's;
    seed 0), on the first ``batch`` samples of the evaluation split (no augmentation draws)."""
    from ..utils import seed_everything
    from .runspec import resolve_preset
    from .tasks import (
        build_task_data,
        build_task_model,
        control_overrides,
        default_cache_dir,
        model_kwargs,
        resolve_budget,
        resolve_model,
    )

    p = resolve_preset(preset)
    data = build_task_data(task, p, pair=pair, dataset=dataset,
                           cache_dir=cache_dir if cache_dir is not None else default_cache_dir())
    # the default collate, as the trainer batches every task
    stacked = torch.utils.data.default_collate([data.val[i] for i in range(min(batch, len(data.val)))])
    out = {}
    for name, (model, overrides) in rows.items():
        fusion = resolve_model(task, model, data.pair)
        kwargs = resolve_budget(task, fusion, model_kwargs(task, data, p, {**control_overrides(model), **dict(overrides)}))
        seed_everything(0)
        net = build_task_model(task, fusion, kwargs)
        out[name] = parameters_receiving_gradient(net, stacked[data.a_key], stacked[data.b_key], stacked[data.target_key])
    return out
