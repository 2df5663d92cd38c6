"""Experiments: one run from its specification, the executor, the reproduction, ablations and studies.

    from mango_lite.training import RunSpec, reproduce, run_ablation, train_models, train_task
    res = train_task(RunSpec("segmentation", "mango", "quick"), "runs/seg-mango")  # RunResult (test metrics ...)
    runs = train_models("segmentation", ["mango", "concat"], "quick", "runs/seg", data)  # in worker processes
    reproduce("quick", "results/quick")                                      # results.json / results.md
    run_ablation("segmentation", ["mmca", "imca", "lica", "all"], "quick", "runs/ablation")

The engine underneath (re-exported here): :class:`Trainer` + :class:`TrainConfig` (any model with ``forward(a, b)``
and ``loss(output, target)``), :class:`BatchAdapter` (batch keys, metrics), checkpoints, :class:`History`; see
:mod:`mango_lite.engine`.
"""

from ..engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from ..engine.history import History
from ..engine.trainer import BatchAdapter, FitResult, TrainConfig, Trainer, epoch_seed, evaluate_model
from .executor import Outcome, RunJob, execute, train_runs
from .reproduce import parse_variant, plan_runs, reproduce, results_markdown, run_ablation
from .runspec import RunOptions, RunSpec
from .tasks import (
    CONTROL_MODELS,
    FUSION_MODELS,
    PAIRS,
    TASK_NAMES,
    DataInfo,
    GenreAdapter,
    RunResult,
    SegmentationAdapter,
    TaskData,
    TranslationAdapter,
    TranslationPair,
    build_task_data,
    evaluate_checkpoint,
    load_model,
    model_names,
    predict_samples,
    prepare_data,
    resolve_model,
    resolve_pair,
    train_task,
)
from .workers import default_jobs, train_models

__all__ = [
    "BatchAdapter", "CONTROL_MODELS", "DataInfo", "FUSION_MODELS", "FitResult", "GenreAdapter", "History", "PAIRS", "RunResult",
    "SegmentationAdapter", "TASK_NAMES", "TaskData", "TrainConfig", "Trainer", "TranslationAdapter",
    "TranslationPair", "build_task_data", "epoch_seed", "evaluate_checkpoint", "evaluate_model",
    "latest_checkpoint", "load_checkpoint", "load_model", "model_names", "predict_samples", "parse_variant",
    "plan_runs", "prepare_data",
    "reproduce", "resolve_model", "resolve_pair", "results_markdown", "run_ablation", "save_checkpoint",
    "default_jobs", "train_models", "train_task", "RunSpec", "RunOptions", "RunJob", "Outcome", "execute", "train_runs",
]
