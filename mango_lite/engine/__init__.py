"""The training engine: any model with ``forward(a, b)`` and ``loss(output, target)`` trained, checkpointed and
evaluated, knowing nothing of tasks, studies or figures (it reports through callbacks).

* :mod:`.trainer`: :class:`Trainer`, :class:`TrainConfig`, :class:`BatchAdapter` (batch keys, metrics).
* :mod:`.checkpoint`: atomic checkpoints, resume, RNG state.
* :mod:`.history`: per-epoch records as JSON and CSV.
* :mod:`.distributed`: one run on several processes (torchrun; gloo on CPU, NCCL on CUDA).
* :mod:`.cost`: parameters, FLOPs, step time and peak memory of a model on one batch.
"""

from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .history import History
from .trainer import BatchAdapter, FitResult, TrainConfig, Trainer, config_differences, epoch_seed, evaluate_model

__all__ = ["BatchAdapter", "FitResult", "History", "TrainConfig", "Trainer", "config_differences", "epoch_seed",
           "evaluate_model", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]
