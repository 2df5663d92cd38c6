"""Task-agnostic training loop: seeded data order, bf16 autocast on CUDA, atomic per-epoch checkpoints,
bit-identical ``resume`` on CPU, a NaN/inf guard, JSON/CSV history and learning curves.

The engine knows nothing about segmentation or genres. It talks to

* a **model** with ``output = model(a, b)`` and ``loss, parts = model.loss(output, target)``
  (``loss`` a scalar tensor, ``parts`` a dict of scalar tensors/floats, e.g. task loss and flow
  bits/dim) -- the contract of :func:`mango_lite.models.build_model`;
* an **adapter** (:class:`BatchAdapter` or a subclass, see :mod:`mango_lite.training.tasks`) that
  says which batch entries are modality A, modality B and the target, and how to turn model outputs
  into validation metrics (``new_metrics`` / ``update`` / ``compute``).

Determinism: the training order of epoch ``e`` comes from a ``torch.Generator`` seeded with
``epoch_seed(seed, e)`` (passed to the DataLoader, so the sampler and the worker base seed depend on
nothing else); python/numpy/torch RNG states and any extra generators (e.g. the augmentation
generator of the dataset transforms) are saved in each checkpoint and restored on resume, so a run
stopped after epoch k and resumed reproduces the uninterrupted run bit for bit on CPU.

Output folder layout::

    OUT/checkpoints/epoch_NNN.pt   one per completed epoch (the newest ``keep_checkpoints`` are kept)
    OUT/best.pt                    the epoch with the best validation ``select_metric``
    OUT/history.json, history.csv  one record per epoch
    OUT/curves.png                 learning curves, when a caller passes on_fit_end=[viz.plots.write_run_curves]
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..errors import MangoLiteError, TrainingError
from ..models.config import ModelConfig, without_foreign_keys
from ..utils import checked_device, display_path, json_normal, seed_everything
from . import checkpoint as ckpt, distributed as ddp_util
from .history import History


# ------------------------------------------------------------------------------------ config
@dataclass
class TrainConfig:
    """Optimisation and bookkeeping settings of one run (JSON-friendly; saved in every checkpoint)."""

    epochs: int = 2
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 0  # linear warm-up, in optimizer steps
    # "cosine" (to ``min_lr_ratio * lr``), "poly" ((1 - t) ** poly_power, TokenFusion/GeminiFusion's
    # PolyWarmupAdamW) or "constant"
    scheduler: str = "cosine"
    min_lr_ratio: float = 0.05
    poly_power: float = 1.0
    # learning rate of the layers that start from scratch, as a multiple of ``lr``; pretrained backbones
    # (mango_lite.models.pretrained) train at ``lr`` itself (SegFormer fine-tuning: 10x for the new layers)
    new_layer_lr_mult: float = 1.0
    grad_clip: float | None = 1.0  # max global grad norm; None disables clipping (the inf check stays)
    seed: int = 0
    device: str | None = None  # None: cuda > mps > cpu
    amp: bool = True  # bf16 autocast, used only on CUDA
    num_workers: int = 0
    progress: bool | None = None  # tqdm bars; None = in a terminal or Jupyter, never when CI is set
    verbose: bool = True  # one summary line per epoch
    eval_every: int = 1  # validate every k epochs (and always after the last one)
    keep_checkpoints: int = 2  # newest per-epoch checkpoints kept; <= 0 keeps all
    save_best: bool = True  # also write OUT/best.pt for the best validation epoch
    select_metric: str | None = None  # validation key for best.pt (e.g. "val_miou"); None: val_loss
    select_mode: str = "max"  # "max" or "min" for select_metric (val_loss is always "min")
    max_steps_per_epoch: int | None = None  # cap (smoke tests); None = the full epoch
    eval_batch_size: int | None = None
    # validate segmentation on whole images by sliding windows of this side (models whose flow is sized to
    # one input resolution, e.g. LICA); None: the model sees the validation images as they come
    eval_window: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 0:
            raise MangoLiteError(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1:
            raise MangoLiteError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise MangoLiteError(f"lr must be a positive finite number, got {self.lr}")
        if self.scheduler not in ("cosine", "poly", "constant"):
            raise MangoLiteError(f"scheduler must be 'cosine', 'poly' or 'constant', got {self.scheduler!r}")
        if not (self.new_layer_lr_mult > 0 and math.isfinite(self.new_layer_lr_mult)):
            raise MangoLiteError(f"new_layer_lr_mult must be a positive finite number, got {self.new_layer_lr_mult}")
        if self.eval_window is not None and self.eval_window < 1:
            raise MangoLiteError(f"eval_window must be a positive number of pixels or None, got {self.eval_window}")
        if self.select_mode not in ("max", "min"):
            raise MangoLiteError(f"select_mode must be 'max' or 'min', got {self.select_mode!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# loss parts that repeat the total loss (already logged as "loss")
_DUPLICATE_PARTS = frozenset({"total", "loss"})


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of the data order of ``epoch`` (0-based) for run ``seed``; distinct runs do not share
    epoch orders (``seed + epoch`` would make seed 0 epoch 1 == seed 1 epoch 0)."""
    return (int(seed) * 1_000_003 + int(epoch) * 7919 + 12345) % (2**63 - 1)


# ----------------------------------------------------------------------------------- adapter
def move_to(obj: Any, device: torch.device) -> Any:
    """Recursively move tensors in dicts/lists/tuples to ``device``; strings and others untouched."""
    if isinstance(obj, Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: move_to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and obj and isinstance(obj[0], Tensor):
        return type(obj)(move_to(v, device) for v in obj)
    return obj


class BatchAdapter:
    """Maps a collated batch (dict) to model inputs/targets and accumulates validation metrics.

    The default uses ``batch[a_key]``, ``batch[b_key]`` and ``batch[target_key]`` and reports no metric
    beyond the validation loss. Task adapters override ``new_metrics``/``update``/``compute``.
    ``select_metric``/``select_mode`` name the validation key that picks ``best.pt``."""

    select_metric: str | None = None
    select_mode: str = "max"

    def __init__(self, a_key: str, b_key: str, target_key: str) -> None:
        self.a_key, self.b_key, self.target_key = a_key, b_key, target_key

    def _get(self, batch: Mapping[str, Any], key: str) -> Any:
        if key not in batch:
            raise MangoLiteError(f"batch has no entry {key!r}; it holds {sorted(batch)}")
        return batch[key]

    def inputs(self, batch: Mapping[str, Any], device: torch.device) -> tuple[Any, Any]:
        """(modality A, modality B) on ``device``."""
        return move_to(self._get(batch, self.a_key), device), move_to(self._get(batch, self.b_key), device)

    def target(self, batch: Mapping[str, Any], device: torch.device) -> Any:
        return move_to(self._get(batch, self.target_key), device)

    def batch_size(self, batch: Mapping[str, Any]) -> int:
        t = self._get(batch, self.target_key)
        return int(t.shape[0]) if isinstance(t, Tensor) else len(t)

    def new_metrics(self) -> Any:
        """A fresh accumulator for one validation pass."""
        return None

    def update(self, state: Any, output: Any, target: Any, batch: Mapping[str, Any]) -> Any:
        """Fold one batch into ``state``; returns the (possibly new) state."""
        return state

    def compute(self, state: Any) -> dict[str, float]:
        """Metrics (plain floats) of the accumulated pass, keys without the ``val_`` prefix."""
        return {}


# ------------------------------------------------------------------------------------ result
@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns."""

    history: History
    final: dict[str, float]  # metrics of the last validation (``val_*`` keys)
    best: dict[str, Any] | None  # {"metric", "value", "epoch"}
    out_dir: Path | None
    epochs_run: int  # epochs trained by this call (0 when resuming a finished run)
    wall_time_s: float
    device: str
    extra: dict[str, Any] = field(default_factory=dict)


def _is_finite(x: Any) -> bool:
    if isinstance(x, Tensor):
        return bool(torch.isfinite(x).all())
    return math.isfinite(float(x))


def _auto_progress() -> bool:
    """Progress bars by default in a terminal or a Jupyter kernel (tqdm.auto widgets); tqdm's own
    ``TQDM_DISABLE`` turns them off (CI does, for the notebooks and the command line)."""
    if "ipykernel" in sys.modules:
        return True
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


def config_differences(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """``"key: old -> new"`` for every field whose value differs between two stored model configurations
    (:meth:`ModelConfig.to_dict <mango_lite.models.ModelConfig.to_dict>`, any version); empty when either is
    missing (checkpoints that predate stored configs are not second-guessed). Fields that only another fusion
    reads (MANGO's ``flow_*`` for a concat model) are not compared; a configuration this version cannot read is
    compared key by key as stored."""
    if not old or not new:
        return []
    a, b = json_normal(_relevant(old)), json_normal(_relevant(new))
    return [f"{k}: {a.get(k, '(absent)')!r} -> {b.get(k, '(absent)')!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k)]


def _relevant(config: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return ModelConfig.from_dict(config).relevant_dict()
    except (TypeError, ValueError):  # not a whole configuration: its keys as stored, less other fusions' keys
        return without_foreign_keys(config)


class Trainer:
    """Fits ``model`` on ``train_set`` and validates on ``val_set`` (see module docstring).

    Args:
        model: ``nn.Module`` with ``forward(a, b)`` and ``loss(output, target) -> (loss, parts)``.
        train_set, val_set: map-style datasets of dict items (``val_set`` may be None).
        adapter: :class:`BatchAdapter` (which keys are A, B, target; validation metrics).
        config: :class:`TrainConfig`.
        out_dir: folder for checkpoints/history/curves; None keeps everything in memory.
        spec: JSON-friendly run description stored in checkpoints (task, model, preset, data ...);
            on resume its ``identity_keys`` must match the checkpoint's.
        generators: extra ``torch.Generator`` objects (e.g. the augmentation generator of the train
            transforms) whose states are checkpointed and restored.
        collate_fn: DataLoader collate function (default: torch's, which batches tensors and keeps
            strings as lists).
        log: where summary lines go (default: ``tqdm.write`` to stderr).
    """

    identity_keys: tuple[str, ...] = ("task", "model", "pair", "dataset")

    def __init__(
        self,
        model: nn.Module,
        train_set: Dataset,
        val_set: Dataset | None,
        adapter: BatchAdapter,
        config: TrainConfig | None = None,
        out_dir: str | os.PathLike | None = None,
        spec: Mapping[str, Any] | None = None,
        generators: Sequence[torch.Generator] = (),
        collate_fn: Callable[[list[Any]], Any] | None = None,
        log: Callable[[str], None] | None = None,
        on_fit_end: Sequence[Callable[[Trainer], Any]] = (),
    ) -> None:
        self.config = config or TrainConfig()
        self.on_fit_end = tuple(on_fit_end)  # e.g. viz.plots.write_run_curves; run on rank 0 after fit
        self.device = checked_device(self.config.device)
        if len(train_set) == 0:  # type: ignore[arg-type]
            raise MangoLiteError("the training set is empty")
        self.model = model.to(self.device)
        self.train_set, self.val_set = train_set, val_set
        self.adapter = adapter
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.spec: dict[str, Any] = dict(spec or {})
        self.generators = list(generators)
        self.collate_fn = collate_fn
        self.progress = _auto_progress() if self.config.progress is None else bool(self.config.progress)
        self._log = log
        self.history = History()
        self.epoch = 0  # epochs completed
        self.global_step = 0
        self.best: dict[str, Any] | None = None
        self.last_val: dict[str, float] = {}
        self.use_amp = bool(self.config.amp) and self.device.type == "cuda"
        # several processes (torchrun): each trains on its slice of every global batch (distributed.py)
        self.dist = ddp_util.state()
        self.ddp: nn.Module | None = None
        if self.dist.active:
            if self.config.batch_size % self.dist.world_size:
                raise MangoLiteError(f"batch_size {self.config.batch_size} must be divisible by the "
                                     f"{self.dist.world_size} processes")
            if len(train_set) < self.config.batch_size:  # type: ignore[arg-type]
                raise MangoLiteError(f"a distributed run needs at least one full batch ({self.config.batch_size}) "
                                     f"of training samples, got {len(train_set)}")  # type: ignore[arg-type]
        self.optimizer = torch.optim.AdamW(self._param_groups(), lr=self.config.lr,
                                           weight_decay=self.config.weight_decay)
        self.steps_per_epoch = self._steps_per_epoch()
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)

    # ------------------------------------------------------------------ helpers
    def log(self, msg: str) -> None:
        if not self.config.verbose or not self.dist.is_main:
            return
        if self._log is not None:
            self._log(msg)
        else:
            from tqdm.auto import tqdm

            tqdm.write(msg, file=sys.stderr)

    def _drop_last(self) -> bool:
        # a final batch of 1 breaks batch statistics (BatchNorm / ActNorm init); drop it when the
        # set holds more than one batch (always with several processes: every rank needs a full slice)
        return self.dist.active or len(self.train_set) > self.config.batch_size  # type: ignore[arg-type]

    def _steps_per_epoch(self) -> int:
        n = len(self.train_set)  # type: ignore[arg-type]
        bs = self.config.batch_size
        steps = n // bs if self._drop_last() else math.ceil(n / bs)
        if self.config.max_steps_per_epoch is not None:
            steps = min(steps, int(self.config.max_steps_per_epoch))
        return max(1, steps)

    def _param_groups(self) -> list[dict[str, Any]]:
        """One group of every trainable parameter, or, when the model holds pretrained backbones and
        ``new_layer_lr_mult != 1``, the layers trained from scratch at ``lr * new_layer_lr_mult`` first and
        the backbones at ``lr`` (the scheduler scales both alike)."""
        from ..models.pretrained import split_pretrained_parameters

        pre, new = split_pretrained_parameters(self.model)
        if not pre or self.config.new_layer_lr_mult == 1.0:
            return [{"params": [p for p in self.model.parameters() if p.requires_grad]}]
        return [{"params": new, "lr": self.config.lr * self.config.new_layer_lr_mult},
                {"params": pre, "lr": self.config.lr}]

    def _lr_factor(self, step: int) -> float:
        """Multiplier of the base lr after ``step`` optimizer steps: linear warm-up, then cosine, poly or
        constant."""
        cfg = self.config
        if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.scheduler == "constant":
            return 1.0
        total = max(1, cfg.epochs * self.steps_per_epoch - cfg.warmup_steps)
        t = min(1.0, max(0.0, (step - cfg.warmup_steps) / total))
        if cfg.scheduler == "poly":
            return (1.0 - t) ** cfg.poly_power
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA (when ``config.amp``), a no-op elsewhere."""
        if self.use_amp:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_loader(self, epoch: int) -> DataLoader:
        """Loader of ``epoch`` (0-based): shuffled by a generator seeded with :func:`epoch_seed`."""
        g = torch.Generator()
        g.manual_seed(epoch_seed(self.config.seed, epoch))
        init = None
        if self.config.num_workers > 0 and self.generators:
            # each worker holds a copy of the augmentation generators; without reseeding they would
            # all replay the same random stream
            init = functools.partial(_reseed_worker, self.generators)
        if self.dist.active:  # this rank's slice of every global batch of the same permutation
            per_rank = self.config.batch_size // self.dist.world_size
            sampler = _RankSlices(len(self.train_set), self.config.batch_size, self.dist.world_size,  # type: ignore[arg-type]
                                  self.dist.rank, g)
            # generator=g too: the loader draws its worker base seed from it before the sampler draws the
            # permutation, exactly as the single-process loader does, so the permutations agree
            return DataLoader(self.train_set, batch_size=per_rank, sampler=sampler, num_workers=self.config.num_workers,
                              collate_fn=self.collate_fn, pin_memory=self.device.type == "cuda",
                              worker_init_fn=init, generator=g)
        return DataLoader(
            self.train_set, batch_size=self.config.batch_size, shuffle=True, generator=g,
            drop_last=self._drop_last(), num_workers=self.config.num_workers,
            collate_fn=self.collate_fn, pin_memory=self.device.type == "cuda",
            persistent_workers=False, worker_init_fn=init,
        )

    def _wrap_ddp(self, epoch: int) -> None:
        """Before the first distributed step: initialise data-dependent layers (ActNorm) on the first
        global batch - the same on every rank - then wrap the model in DistributedDataParallel."""
        from torch.nn.parallel import DistributedDataParallel

        if any(not bool(getattr(m, "initialized", True)) for m in self.model.modules()):
            g = torch.Generator().manual_seed(epoch_seed(self.config.seed, epoch))
            idx = torch.randperm(len(self.train_set), generator=g)[: self.config.batch_size].tolist()  # type: ignore[arg-type]
            collate = self.collate_fn or torch.utils.data.default_collate
            batch = collate([self.train_set[i] for i in idx])
            a, b = self.adapter.inputs(batch, self.device)
            self.model.train()
            with torch.no_grad(), self.autocast():
                self.model(a, b)
        ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
            if self.device.type == "cuda" else None
        # some parameters get no gradient in some models (a control's fixed gamma): tolerate them
        self.ddp = DistributedDataParallel(self.model, device_ids=ids, find_unused_parameters=True)

    def eval_loader(self, dataset: Dataset) -> DataLoader:
        return DataLoader(
            dataset, batch_size=self.config.eval_batch_size or self.config.batch_size, shuffle=False,
            num_workers=self.config.num_workers, collate_fn=self.collate_fn,
            pin_memory=self.device.type == "cuda",
        )

    def _loss(self, output: Any, target: Any) -> tuple[Tensor, dict[str, Any]]:
        res = self.model.loss(output, target)  # type: ignore[operator]
        if isinstance(res, tuple):
            loss, parts = res
        else:
            loss, parts = res, {}
        return loss.float(), dict(parts or {})

    def _last_good(self) -> str:
        if self.out_dir is None:
            return "no checkpoint is written (out_dir=None)"
        p = ckpt.latest_checkpoint(self.out_dir)
        if p is None:
            return "no checkpoint yet (the failure came during the first epoch)"
        return f"the last good checkpoint is kept: {display_path(p)}"

    def _fail(self, what: str, epoch: int, step_in_epoch: int) -> TrainingError:
        return TrainingError(
            f"{what} at epoch {epoch + 1}, batch {step_in_epoch + 1} (global step {self.global_step}); "
            f"training stopped and {self._last_good()}. Try a lower --lr or a smaller flow_weight."
        )

    # -------------------------------------------------------------- train / eval
    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training set; returns mean loss parts as ``train_*`` keys."""
        from tqdm.auto import tqdm

        self.model.train()
        loader = self.train_loader(epoch)
        sums: dict[str, float] = defaultdict(float)
        seen = 0
        bar = tqdm(loader, total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{self.config.epochs}",
                   disable=not self.progress, leave=False, dynamic_ncols=True)
        params = [p for p in self.model.parameters() if p.requires_grad]
        clip = self.config.grad_clip if self.config.grad_clip is not None else float("inf")
        if self.dist.active and self.ddp is None:
            self._wrap_ddp(epoch)
        net = self.ddp if self.ddp is not None else self.model
        for i, batch in enumerate(bar):
            if i >= self.steps_per_epoch:
                break
            a, b = self.adapter.inputs(batch, self.device)
            target = self.adapter.target(batch, self.device)
            with self.autocast():
                output = net(a, b)
            loss, parts = self._loss(output, target)
            if not ddp_util.all_true(_is_finite(loss)):  # every rank stops, or none
                raise self._fail(f"non-finite training loss ({loss.item()})", epoch, i)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(params, clip)
            if not _is_finite(gnorm):
                raise self._fail(f"non-finite gradient norm ({float(gnorm)})", epoch, i)
            self.optimizer.step()
            self.scheduler.step()
            self.global_step += 1
            bs = self.adapter.batch_size(batch)
            seen += bs
            sums["loss"] += float(loss.detach()) * bs
            for k, v in parts.items():
                if k in _DUPLICATE_PARTS:
                    continue
                sums[k] += float(v.detach() if isinstance(v, Tensor) else v) * bs
            if self.progress:
                bar.set_postfix(loss=f"{sums['loss'] / seen:.4f}", refresh=False)
        bar.close()
        return ddp_util.mean_over_ranks({f"train_{k}": v / max(1, seen) for k, v in sums.items()})

    @torch.no_grad()
    def evaluate(self, dataset: Dataset | None = None, prefix: str = "val_") -> dict[str, float]:
        """Loss and task metrics on ``dataset`` (default: the validation set), keys ``prefix + name``."""
        dataset = self.val_set if dataset is None else dataset
        if dataset is None:
            return {}
        model = self.model
        if self.config.eval_window:
            from ..models.sliding_window import SlidingWindow

            model = SlidingWindow(model, self.config.eval_window)
        return evaluate_model(model, dataset, self.adapter, self.device, self.eval_loader(dataset),
                              autocast=self.autocast, prefix=prefix, progress=self.progress)

    # ------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "rng": ckpt.capture_rng_state(),
            "generators": [g.get_state() for g in self.generators],
            "history": self.history.records,
            "best": self.best,
            "last_val": self.last_val,
            "config": self.config.to_dict(),
            "spec": self.spec,
        }

    def load_state_dict(self, state: Mapping[str, Any], path: str = "checkpoint") -> None:
        """Restore everything :meth:`state_dict` saved (model, optimizer, scheduler, counters, RNGs)."""
        old_spec = state.get("spec") or {}
        for k in self.identity_keys:
            if k in self.spec and k in old_spec and self.spec[k] != old_spec[k]:
                raise MangoLiteError(
                    f"{path}: cannot resume: it was written for {k}={old_spec[k]!r}, this run has "
                    f"{k}={self.spec[k]!r} (use another --out or drop --resume)"
                )
        diff = config_differences(old_spec.get("model_config"), self.spec.get("model_config"))
        if isinstance(old_spec.get("preset"), dict) and isinstance(self.spec.get("preset"), dict):
            from ..presets import training_fields

            was, now = training_fields(old_spec["preset"]), training_fields(self.spec["preset"])
            # the data, sizes and protocol must agree; more epochs may extend a run
            diff = diff + [f"preset {k}: {was.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(was) | set(now))
                           if k != "epochs" and was.get(k) != now.get(k)]
        if diff:
            raise MangoLiteError(
                f"{path}: cannot resume: the checkpoint's model was built with a different configuration "
                f"({'; '.join(diff)}); use another --out, or overwrite the run"
            )
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise MangoLiteError(f"{path}: model weights do not fit this model ({exc})") from exc
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.history = History(state.get("history") or [])
        self.best = state.get("best")
        self.last_val = dict(state.get("last_val") or {})
        gens = state.get("generators") or []
        if len(gens) != len(self.generators):
            raise MangoLiteError(f"{path}: holds {len(gens)} generator states, this run has {len(self.generators)}")
        for g, s in zip(self.generators, gens):
            g.set_state(s)
        ckpt.restore_rng_state(state["rng"])

    def save(self) -> Path | None:
        """Write ``checkpoints/epoch_NNN.pt`` (and ``best.pt`` when this epoch is the best), prune old
        epoch files, then write the history. Nothing is written with ``out_dir=None``."""
        if self.out_dir is None or not self.dist.is_main:
            return None
        data = ckpt.checkpoint_bytes(self.state_dict())
        path = ckpt.write_bytes_atomic(ckpt.epoch_checkpoint_path(self.out_dir, self.epoch), data)
        if self.config.save_best and self.best is not None and self.best.get("epoch") == self.epoch:
            ckpt.write_bytes_atomic(self.out_dir / ckpt.BEST_NAME, data)
        ckpt.prune_epoch_checkpoints(self.out_dir, self.config.keep_checkpoints)
        self.history.save(self.out_dir)
        return path

    def resume(self, path: str | os.PathLike | None = None) -> bool:
        """Load ``path`` or the latest epoch checkpoint of ``out_dir``; False if there is none."""
        if path is None:
            if self.out_dir is None:
                return False
            path = ckpt.latest_checkpoint(self.out_dir)
            if path is None:
                return False
        state = ckpt.load_checkpoint(path, map_location=self.device)
        done = int(state.get("epoch", 0))
        if done > self.config.epochs:  # its history would be returned as a run of fewer epochs
            raise MangoLiteError(
                f"{display_path(path)}: cannot resume: the checkpoint's run has a different configuration "
                f"({done} epochs done, {self.config.epochs} asked for); use another --out, or overwrite the run")
        self.load_state_dict(state, str(path))
        self.log(f"resumed from {display_path(path)} (epoch {self.epoch}, step {self.global_step})")
        return True

    def _update_best(self, record: dict[str, Any]) -> None:
        key = self.adapter.select_metric or self.config.select_metric
        mode = self.adapter.select_mode if self.adapter.select_metric else self.config.select_mode
        if key is None or key not in record:
            key, mode = "val_loss", "min"
        if key not in record or not _is_finite(record[key]):
            return
        v = float(record[key])
        if self.best is None or self.best.get("metric") != key or \
                (v > self.best["value"] if mode == "max" else v < self.best["value"]):
            self.best = {"metric": key, "value": v, "epoch": self.epoch, "mode": mode}

    # ----------------------------------------------------------------------- fit
    def fit(self, resume: bool = False, overwrite: bool = False) -> FitResult:
        """Train for ``config.epochs`` epochs (continuing a saved run with ``resume=True``).

        Starting fresh in a folder that already holds epoch checkpoints raises MangoLiteError unless
        ``overwrite=True`` (which deletes them), so a stale later epoch can never be resumed by mistake.
        Raises TrainingError on a non-finite loss or gradient (the last good checkpoint stays)."""
        t0 = time.perf_counter()
        resumed = False
        if resume:
            resumed = self.resume()
            if not resumed:
                self.log(f"--resume: no checkpoint in {display_path(self.out_dir)}; starting from scratch")
        if not resumed:
            if self.out_dir is not None and ckpt.list_epoch_checkpoints(self.out_dir):
                if not overwrite:
                    raise MangoLiteError(
                        f"{self.out_dir} already holds checkpoints of an earlier run; pass --resume to "
                        f"continue it, --overwrite to start again, or choose another --out"
                    )
                ddp_util.barrier()  # every rank has seen the old files before rank 0 removes them
                if self.dist.is_main:
                    for _, p in ckpt.list_epoch_checkpoints(self.out_dir):
                        p.unlink()
                    (self.out_dir / ckpt.BEST_NAME).unlink(missing_ok=True)
            seed_everything(self.config.seed)
            # augmentation generators start from the run's seed, whatever earlier runs did with them
            for i, g in enumerate(self.generators):
                g.manual_seed(epoch_seed(self.config.seed, -(i + 1)))
        start = self.epoch
        for epoch in range(start, self.config.epochs):
            te = time.perf_counter()
            record: dict[str, Any] = {"epoch": epoch + 1}
            record.update(self.train_epoch(epoch))
            record["train_time_s"] = time.perf_counter() - te  # the optimisation alone, for step costs
            record["global_step"] = self.global_step
            record["lr"] = self.optimizer.param_groups[0]["lr"]
            if len(self.optimizer.param_groups) > 1:
                record["lr_pretrained"] = self.optimizer.param_groups[1]["lr"]
            last = epoch + 1 == self.config.epochs
            if self.val_set is not None and ((epoch + 1) % max(1, self.config.eval_every) == 0 or last):
                self.last_val = self.evaluate()
                record.update(self.last_val)
            record["time_s"] = time.perf_counter() - te
            self.epoch = epoch + 1
            self.history.append(record)
            self._update_best(record)
            self.save()
            self.log(_summary(record, self.config.epochs))
        wall = time.perf_counter() - t0
        ddp_util.barrier()
        if self.out_dir is not None and len(self.history) and self.dist.is_main:
            self.history.save(self.out_dir)
            for callback in self.on_fit_end:  # the engine reports; what it draws is the caller's choice
                callback(self)
        return FitResult(history=self.history, final=dict(self.last_val), best=self.best,
                         out_dir=self.out_dir, epochs_run=self.epoch - start, wall_time_s=wall,
                         device=str(self.device))


class _RankSlices(torch.utils.data.Sampler):
    """Indices of one rank: the epoch's permutation (``torch.randperm(n, generator)``, the order a
    shuffled single-process loader draws) cut into global batches of ``batch`` (the last incomplete one
    dropped), of which this rank takes slice ``rank`` of ``world`` equal slices."""

    def __init__(self, n: int, batch: int, world: int, rank: int, generator: torch.Generator) -> None:
        self.n, self.batch, self.world, self.rank, self.generator = n, batch, world, rank, generator

    def __len__(self) -> int:
        return (self.n // self.batch) * (self.batch // self.world)

    def __iter__(self):
        perm = torch.randperm(self.n, generator=self.generator).tolist()
        per = self.batch // self.world
        for k in range(self.n // self.batch):
            start = k * self.batch + self.rank * per
            yield from perm[start:start + per]


def _reseed_worker(generators: Sequence[torch.Generator], worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: reseed the worker's copies of the augmentation generators from
    the worker seed (base seed drawn from the epoch's loader generator + worker id), so workers draw
    different but reproducible augmentations. The generators are pickled in the same call as the
    dataset (fork or spawn), so they are the very objects the worker's transforms use."""
    seed = torch.initial_seed()
    for i, g in enumerate(generators):
        g.manual_seed((seed + i * 1_000_003) % (2**63 - 1))


def _summary(record: Mapping[str, Any], epochs: int | None = None) -> str:
    parts = [f"epoch {record['epoch']}" + (f"/{epochs}" if epochs else "")]
    for k, v in record.items():
        if k in ("epoch", "global_step"):
            continue
        if isinstance(v, float):
            parts.append(f"{k}={v:.4g}")
    return "  ".join(parts)


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    adapter: BatchAdapter,
    device: torch.device,
    loader: Iterable[Any] | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None,
    prefix: str = "val_",
    progress: bool = False,
    batch_size: int = 16,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> dict[str, float]:
    """Mean loss (and loss parts) plus the adapter's metrics over ``dataset``, model in eval mode.

    Returns ``{prefix + "loss": float, prefix + part: float, prefix + metric: float, ...}``. Raises
    TrainingError when the loss is not finite (a diverged model should not produce a results table)."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    if loader is None:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)
    ctx = autocast or contextlib.nullcontext
    sums: dict[str, float] = defaultdict(float)
    seen = 0
    state = adapter.new_metrics()
    try:
        for batch in tqdm(loader, desc="eval", disable=not progress, leave=False):
            a, b = adapter.inputs(batch, device)
            target = adapter.target(batch, device)
            with ctx():
                output = model(a, b)
            res = model.loss(output, target)  # type: ignore[operator]
            loss, parts = res if isinstance(res, tuple) else (res, {})
            bs = adapter.batch_size(batch)
            seen += bs
            sums["loss"] += float(loss.detach().float()) * bs
            for k, v in (parts or {}).items():
                if k in _DUPLICATE_PARTS:
                    continue
                sums[k] += float(v.detach().float() if isinstance(v, Tensor) else v) * bs
            state = adapter.update(state, output, target, batch)
    finally:
        model.train(was_training)
    out = {f"{prefix}{k}": v / max(1, seen) for k, v in sums.items()}
    if not math.isfinite(out.get(f"{prefix}loss", 0.0)):
        raise TrainingError(f"non-finite {prefix}loss during evaluation ({out[f'{prefix}loss']})")
    out.update({f"{prefix}{k}": float(v) for k, v in adapter.compute(state).items()})
    return out
