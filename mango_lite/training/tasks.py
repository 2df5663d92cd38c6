"""Task registry: model names, datasets and loaders per task and preset, batch keys, metrics, runs.

==============  ===========================  ======================  ===============================
task            data (stand-in or real)      batch keys A / B / y    metrics (validation, test)
==============  ===========================  ======================  ===============================
segmentation    NYUDv2 (or SUN RGB-D)        rgb / depth / label     pixel_acc, mean_acc, miou (%)
translation     Taskonomy, one of 5 pairs    domain a / b / target   mae, mse, rmse ([-1, 1] scale,
                                                                     TokenFusion's), x10 table values;
                                                                     RGB targets also fid/kid (proxy)
genre           MM-IMDb (raw or GMU hdf5)    image / plot (or        micro_f1, macro_f1, weighted_f1,
                                             features) / labels      samples_f1 (%), threshold 0.5
==============  ===========================  ======================  ===============================

Model names (``--model``): the fusions ``mango``, ``concat``, ``tokenfusion``, ``crossattn`` and the
unimodal baselines named after their modality: ``rgb`` / ``depth`` (segmentation), the pair's input
domains, e.g. ``reshading`` / ``edge_texture`` (translation), ``image`` / ``text`` (genre); they map to
the fusion ``"a"`` / ``"b"`` of :func:`mango_lite.models.build_model`. MANGO's controls are the same
model with one mechanism switched off (:data:`CONTROL_MODELS`): ``mango-noattn`` (every ICA's gamma fixed
at 0: no attention), ``mango-nonll`` (likelihood weight 0: no NLL term), ``mango-paper`` (the paper's
fixed A = S + I, gamma = 1 and not learned) and ``mango-nll-encoders`` (the paper's joint objective: the
likelihood's gradient reaches the encoders too, where MANGO's default lets it train the flow only).

Data: with ``data_root`` the folder is verified (:func:`mango_lite.datasets.verify_dataset`) and used;
otherwise the stand-in is generated (``mango_lite.datasets.synth``) at the preset's size into a cache
folder and reused while its ``meta.json`` matches. Results record which of the two was used.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from ..datasets.pairs import DEFAULT_PAIR, PAIRS, TranslationPair, resolve_pair  # noqa: F401  (the training names of the pairs)
from ..datasets.synth.misregistration import MISREGISTERED_DATASETS
from ..engine.checkpoint import load_checkpoint
from ..engine.trainer import BatchAdapter, FitResult, TrainConfig, Trainer, evaluate_model
from ..errors import MangoLiteError
from ..models.config import ModelConfig
from ..presets import Preset
from ..tasks import CLASS_MAP, IMAGE, LABELS, TASKS, get_task, task_names
from ..utils import atomic_write_json, checked_device, device_name, display_path, seed_everything
from .runspec import RunOptions, RunSpec, resolve_preset

TASK_NAMES = task_names()
FUSION_MODELS = ("mango", "concat", "tokenfusion", "crossattn")
#: MANGO with one mechanism switched off: name -> ModelConfig overrides. Same parameters as ``mango``
#: (the no-attention control keeps its query/key weights, which then get no gradient).
CONTROL_MODELS: dict[str, dict[str, Any]] = {
    "mango-noattn": {"flow_gamma": 0.0, "flow_learn_gamma": False},
    "mango-nonll": {"flow_weight": 0.0},
    "mango-paper": {"flow_gamma": None},
    # the paper's joint objective: the likelihood's gradient reaches the encoders too (MANGO's default keeps
    # it out of them, so they cannot lower the NLL by collapsing the features)
    "mango-nll-encoders": {"flow_nll_to_encoders": True},
}
#: variants of a fusion made for a study (the registration study, results/registration): name -> (fusion,
#: ModelConfig overrides). Valid ``--model`` names; never part of the main job. ``context_hidden="budget"``
#: sizes the context branches so the whole model has about MANGO's trainable parameters (same kwargs).
STUDY_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "concat-context": ("concat", {"context_dilations": (1, 2, 3), "context_hidden": "budget"}),
    # MANGO with a gamma per X2 row computed from X1 (flows/ica.py, gamma_mode="token"; a deviation from the paper)
    "mango-gamma-token": ("mango", {"flow_gamma_mode": "token"}),
    # ... and a learnable offset on the attention's diagonal logits (flows/ica.py, self_logit), which the alignment
    # toy showed the per-row gamma needs: without it B's rows keep ~0.4 of their attention on themselves
    "mango-gamma-token-diag": ("mango", {"flow_gamma_mode": "token", "flow_self_logit": True}),
    # the no-attention control with as many parameters receiving a gradient as MANGO at the cpu preset (1.51 M
    # each, training.parameters): its couplings 408 wide instead of 4 x width = 128 take the place of the ~0.93 M
    # query and key weights that gamma = 0 leaves untrained (results/mechanisms/segmentation-nyudv2-capacity)
    "mango-noattn-h408": ("mango", {"flow_gamma": 0.0, "flow_learn_gamma": False, "flow_hidden": 408}),
    # MANGO whose likelihood weighs as much as the task loss (weight 1 instead of a task's chosen 0.01-0.1; still
    # kept out of the encoders): does the signal that makes ICA find partners on the alignment toy do so in a
    # task model? (results/registration-translation/PROTOCOL.md, Deviations)
    "mango-nll1": ("mango", {"flow_weight": 1.0}),
}
SEGMENTATION_DATASETS = TASKS["segmentation"].datasets
TASK_DATASETS = {name: task.datasets for name, task in TASKS.items()}
DATA_SEED = 0  # stand-in data do not depend on the training seed: every model sees the same data
GENERATED = "generated stand-in"
REAL = "real"


# -------------------------------------------------------------------------------- model names
def check_task(task: str) -> str:
    """The registry's name of ``task`` (:func:`mango_lite.tasks.get_task`); MangoLiteError when unknown."""
    return get_task(task).name


def unimodal_names(task: str, pair: str | TranslationPair | None = None) -> tuple[str, str]:
    """Names of the unimodal baselines reading modality A / B."""
    spec = get_task(task)
    return spec.unimodal_names(resolve_pair(pair).inputs if spec.has_pairs else None)


def model_names(task: str, pair: str | TranslationPair | None = None) -> tuple[str, ...]:
    """The models a task is compared on: the fusions, then the two unimodal baselines. MANGO's controls
    (:data:`CONTROL_MODELS`) are valid ``--model`` names too, but only run when asked for."""
    return FUSION_MODELS + unimodal_names(task, pair)


def resolve_model(task: str, name: str, pair: str | TranslationPair | None = None) -> str:
    """The fusion (``mango``/``concat``/``tokenfusion``/``crossattn``/``a``/``b``) for model ``name``."""
    key = str(name).strip().lower()
    if key in FUSION_MODELS:
        return key
    if key in CONTROL_MODELS:
        return "mango"
    if key in STUDY_MODELS:
        return STUDY_MODELS[key][0]
    ua, ub = unimodal_names(task, pair)
    if key == ua:
        return "a"
    if key == ub:
        return "b"
    raise MangoLiteError(f"unknown model {name!r} for task {task!r}; expected one of "
                         f"{model_names(task, pair) + tuple(CONTROL_MODELS) + tuple(STUDY_MODELS)}")


def default_dataset(task: str) -> str:
    return get_task(task).default_dataset


def check_dataset(task: str, dataset: str | None) -> str:
    task = check_task(task)
    if dataset is None:
        return default_dataset(task)
    d = dataset.strip().lower()
    if d not in TASK_DATASETS[task]:
        raise MangoLiteError(f"dataset {dataset!r} does not fit task {task!r}; expected one of {TASK_DATASETS[task]}")
    return d




# ------------------------------------------------------------------------------------ data
@dataclass
class DataInfo:
    """Where a dataset came from: ``source`` is "generated stand-in" or "real"."""

    name: str
    root: str
    source: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_cache_dir() -> Path:
    """``data/generated`` (relative to the working directory; git-ignored). The command line's
    ``--data-cache`` defaults to ``MANGO_LITE_DATA_CACHE`` when that is set (read at the edge)."""
    return Path("data/generated")


def generated_spec(dataset: str, preset: Preset) -> tuple[int, int]:
    """``(n, size)`` for the stand-in writer: ``n = n_train + n_val`` samples in total (the writer splits
    them in the real dataset's proportions) at the preset's image size. Posters are generated twice
    as tall so that the MMBT crop (shorter side * 256/224) is a down-sampling."""
    n = int(preset.n_train) + int(preset.n_val)
    if n <= 0:
        raise MangoLiteError(
            f"preset {preset.name!r} generates no stand-in data (n_train + n_val = 0): it is meant for the "
            f"real datasets; pass --data / --data-root"
        )
    size = int(preset.image_size)
    if dataset == "mmimdb":
        return max(n, 10), max(16, 2 * size)
    return max(n, 2), max(8, size)


def _read_meta(root: Path) -> dict[str, Any]:
    p = root / "meta.json"
    if not p.is_file():
        return {}
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


#: the stand-ins whose second modality can be seen from a displaced camera (``Preset.sensor_baseline_m``)


def prepare_data(dataset: str, preset: str | Preset | None = None, data_root: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None, seed: int = DATA_SEED,
                 domains: Sequence[str] | None = None, verify_limit: int | None = 16,
                 log: Callable[[str], None] | None = None) -> DataInfo:
    """Locate (``data_root``: verify) or generate the folder of ``dataset``.

    Generated folders are ``CACHE/{dataset}-n{n}-s{size}-seed{seed}`` (``-b{baseline}`` appended when the
    preset's ``sensor_baseline_m`` misregisters the second modality) and are reused when their
    ``meta.json`` (written last by the writers, so its presence means the folder is complete) matches.
    Raises DataError when ``data_root`` fails verification."""
    from ..datasets import verify_dataset
    from ..datasets.synth import get_writer

    preset = resolve_preset(preset)
    if data_root is not None:
        root = Path(data_root)
        if dataset == "taskonomy":
            verify_dataset(dataset, root, limit=verify_limit, domains=domains)
        else:
            verify_dataset(dataset, root, limit=verify_limit)
        meta = _read_meta(root)
        source = GENERATED if meta.get("synthetic") else REAL
        return DataInfo(dataset, str(root), source, meta)
    n, size = generated_spec(dataset, preset)
    baseline = float(preset.sensor_baseline_m)
    if baseline and dataset not in MISREGISTERED_DATASETS:
        raise MangoLiteError(f"sensor_baseline_m={baseline}: only the {MISREGISTERED_DATASETS} stand-ins can be "
                             f"rendered misregistered, not {dataset!r}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    # registered data keep the folder name they always had; a baseline gets its own folder
    root = root / (f"{dataset}-n{n}-s{size}-seed{seed}" + (f"-b{baseline:g}" if baseline else ""))
    meta = _read_meta(root)
    if not (meta.get("synthetic") and int(meta.get("n", -1)) == n and int(meta.get("seed", -1)) == seed
            and float(meta.get("baseline_m", 0.0)) == baseline):
        t0 = time.perf_counter()
        get_writer(dataset)(root, n, size, seed, **({"baseline": baseline} if baseline else {}))
        meta = _read_meta(root)
        if log:
            log(f"generated {dataset} stand-in: {n} samples at {size} px in {time.perf_counter() - t0:.1f}s -> "
                f"{display_path(root)}")
    return DataInfo(dataset, str(root), GENERATED, meta)


@dataclass
class TaskData:
    """Datasets of one task plus what the model and the engine need to know about them."""

    task: str
    info: DataInfo
    train: Dataset
    val: Dataset
    test: Dataset
    test_split: str
    a_key: str
    b_key: str
    target_key: str
    in_channels: tuple[int, int]
    num_outputs: int
    generators: list[torch.Generator]
    pair: TranslationPair | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. text_encoder="vector"
    class_names: tuple[str, ...] = ()


def build_task_data(task: str, preset: str | Preset | None = None, data_root: str | os.PathLike | None = None,
                    pair: str | TranslationPair | None = None, dataset: str | None = None,
                    cache_dir: str | os.PathLike | None = None, info: DataInfo | None = None,
                    aug_seed: int = 0, log: Callable[[str], None] | None = None) -> TaskData:
    """Datasets (train with augmentation from a seeded generator, val/test without) for ``task``.

    ``info``: an already prepared :class:`DataInfo` (to share one folder between several runs)."""
    task = check_task(task)
    preset = resolve_preset(preset)
    dataset = check_dataset(task, dataset)
    size = int(preset.image_size)
    gen = torch.Generator().manual_seed(int(aug_seed))
    return _DATA[get_task(task).output](task, preset, dataset, data_root, pair, cache_dir, info, size, gen, log)


def _image_data(task: str, preset: Preset, dataset: str, data_root: Any, pair: Any, cache_dir: Any,
                info: DataInfo | None, size: int, gen: torch.Generator, log: Any) -> TaskData:
    """A translation pair's data: two input domains and a target domain of Taskonomy."""
    from ..datasets import Taskonomy
    from ..datasets.taskonomy import domain_channels
    from ..datasets.transforms import translation_transforms

    tp = resolve_pair(pair)
    domains = (*tp.inputs, tp.target)
    info = info or prepare_data(dataset, preset, data_root, cache_dir, domains=domains, log=log)
    train = Taskonomy(info.root, "train", domains, transform=translation_transforms(size, True, generator=gen))
    val = Taskonomy(info.root, "val", domains, transform=translation_transforms(size, False))
    train, select = _selection_split(preset, train,
                                     Taskonomy(info.root, "train", domains, transform=translation_transforms(size, False)))
    return TaskData(task, info, train, select or val, val, "val", tp.inputs[0], tp.inputs[1], tp.target,
                    (domain_channels(tp.inputs[0]), domain_channels(tp.inputs[1])), domain_channels(tp.target),
                    [gen], pair=tp, class_names=(tp.target,))


def _class_map_data(task: str, preset: Preset, dataset: str, data_root: Any, pair: Any, cache_dir: Any,
                    info: DataInfo | None, size: int, gen: torch.Generator, log: Any) -> TaskData:
    """RGB-D frames with a class per pixel (NYUDv2 or SUN RGB-D)."""
    from ..datasets import SUNRGBD, NYUDv2
    from ..datasets.transforms import segmentation_transforms

    info = info or prepare_data(dataset, preset, data_root, cache_dir, log=log)
    cls = NYUDv2 if dataset == "nyudv2" else SUNRGBD
    train = cls(info.root, "train", transform=segmentation_transforms(size, True, generator=gen))
    # whole-image validation (the engine's sliding windows) sees the frames as stored; else a centre crop
    whole = (preset.tasks or {}).get(task, {}).get("eval_window")
    plain = None if whole else segmentation_transforms(size, False)
    val = cls(info.root, "val", transform=plain)
    train, select = _selection_split(preset, train, cls(info.root, "train", transform=plain))
    return TaskData(task, info, train, select or val, val, "val", "rgb", "depth", "label", (3, 1), cls.num_classes,
                    [gen], class_names=tuple(cls.classes))


def _labels_data(task: str, preset: Preset, dataset: str, data_root: Any, pair: Any, cache_dir: Any,
                 info: DataInfo | None, size: int, gen: torch.Generator, log: Any) -> TaskData:
    """Posters and plots with independent genre labels (MM-IMDb)."""
    from ..datasets import MMIMDB
    from ..datasets.transforms import poster_transforms

    info = info or prepare_data(dataset, preset, data_root, cache_dir, log=log)
    # genre: raw posters + plots when present, else the GMU hdf5 (300-d plot vectors)
    root = Path(info.root)
    source = "raw" if (root / "split.json").is_file() and (root / "dataset").is_dir() else "hdf5"
    hw = (size, size)
    train = MMIMDB(root, "train", source=source, transform=poster_transforms(hw, True, generator=gen))
    val = MMIMDB(root, "dev", source=source, transform=poster_transforms(hw, False))
    test = MMIMDB(root, "test", source=source, transform=poster_transforms(hw, False))
    b_key = "plot" if source == "raw" else "features"
    kw = {"text_encoder": "hash"} if source == "raw" else {"text_encoder": "vector", "text_dim": 300}
    asked = dict((preset.tasks or {}).get(task, {}).get("model", {})).get("text_encoder")
    if source != "raw" and asked in ("pretrained", "sentence"):
        raise MangoLiteError(
            f"a pretrained text encoder ({asked!r}, e.g. --text-model) reads the plots as text, but {info.root} holds "
            "MM-IMDb's GMU hdf5 release (300-d plot vectors only); use the raw release (split.json + dataset/)"
        )
    info.meta = {**info.meta, "mmimdb_source": source}
    return TaskData(task, info, train, val, test, "test", "image", b_key, "labels", (3, 3), MMIMDB.num_classes,
                    [gen], model_kwargs=kw, class_names=tuple(MMIMDB.classes))


#: how each output kind's data are read
_DATA = {IMAGE: _image_data, CLASS_MAP: _class_map_data, LABELS: _labels_data}


def selection_indices(n: int, seed: int = DATA_SEED) -> tuple[list[int], list[int]]:
    """``(train, selection)`` indices of a training split of ``n`` samples: a seeded
    :data:`~mango_lite.presets.SELECTION_FRACTION` (at least one sample) is held out for selection."""
    from ..presets import SELECTION_FRACTION

    if n < 2:
        raise MangoLiteError(f"a selection split needs a training split of at least 2 samples, got {n}")
    k = min(n - 1, max(1, round(SELECTION_FRACTION * n)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) + 7919)).tolist()
    return sorted(order[k:]), sorted(order[:k])


def _selection_split(preset: Preset, train: Dataset, train_plain: Dataset) -> tuple[Dataset, Dataset | None]:
    """With ``preset.selection_split``: the training split minus a held-out selection split (the same samples
    without augmentation, from ``train_plain``); else ``(train, None)``."""
    if not preset.selection_split:
        return train, None
    keep, held = selection_indices(len(train))
    return Subset(train, keep), Subset(train_plain, held)


# --------------------------------------------------------------------------------- adapters
class SegmentationAdapter(BatchAdapter):
    """Dataset-level confusion matrix over the split (TokenFusion ``getScores``), percent."""

    select_metric = TASKS["segmentation"].select_metric
    select_mode = "max"

    def __init__(self, num_classes: int, ignore_index: int = 255, a_key: str = "rgb", b_key: str = "depth",
                 target_key: str = "label") -> None:
        super().__init__(a_key, b_key, target_key)
        self.num_classes, self.ignore_index = int(num_classes), int(ignore_index)

    def new_metrics(self) -> Any:
        from ..metrics.segmentation import ConfusionMatrix

        return ConfusionMatrix(self.num_classes, ignore_index=self.ignore_index)

    def update(self, state: Any, output: Any, target: Any, batch: Mapping[str, Any]) -> Any:
        pred = output.pred.argmax(1)  # (B, C, H, W) logits -> (B, H, W) class ids
        state.update(pred.cpu(), target.cpu())
        return state

    def compute(self, state: Any) -> dict[str, float]:
        s = state.scores()
        return {"pixel_acc": float(s["pixel_acc"]), "mean_acc": float(s["mean_acc"]), "miou": float(s["miou"])}


class TranslationAdapter(BatchAdapter):
    """MAE / MSE / RMSE on the [-1, 1] scale of the Taskonomy loader (TokenFusion evaluates on the same
    mean-0.5/std-0.5 normalised tensors), their x10 values (the paper prints "x10^-1" units), and for
    RGB targets FID / KID x100 with a PROXY feature extractor (random-init CNN; not comparable to the
    paper's Inception numbers)."""

    select_metric = TASKS["translation"].select_metric
    select_mode = "min"

    def __init__(self, a_key: str, b_key: str, target_key: str, rgb_target: bool, fid: bool = True,
                 proxy_dim: int = 64, kid_subsets: int = 50) -> None:
        super().__init__(a_key, b_key, target_key)
        self.rgb_target, self.fid = bool(rgb_target), bool(fid)
        self.proxy_dim, self.kid_subsets = int(proxy_dim), int(kid_subsets)
        self._extractor: Any = None

    def new_metrics(self) -> dict[str, Any]:
        return {"abs": 0.0, "sq": 0.0, "n": 0, "pred": [], "real": []}

    @staticmethod
    def to_uint8(x: Tensor) -> Tensor:
        """[-1, 1] float (B, C, H, W) -> uint8 in 0..255 (TokenFusion scores saved PNGs)."""
        return ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).cpu()

    def update(self, state: dict[str, Any], output: Any, target: Any, batch: Mapping[str, Any]) -> dict[str, Any]:
        d = output.pred.detach().double() - target.detach().double()
        state["abs"] += float(d.abs().sum())
        state["sq"] += float((d * d).sum())
        state["n"] += d.numel()
        if self.rgb_target and self.fid:
            state["pred"].append(self.to_uint8(output.pred))
            state["real"].append(self.to_uint8(target))
        return state

    def extractor(self) -> Any:
        if self._extractor is None:
            from ..metrics.image import RandomConvFeatures

            self._extractor = RandomConvFeatures(dim=self.proxy_dim, seed=0, size=64)
        return self._extractor

    def compute(self, state: dict[str, Any]) -> dict[str, float]:
        n = max(1, state["n"])
        mae, mse = state["abs"] / n, state["sq"] / n
        out = {"mae": mae, "mse": mse, "rmse": math.sqrt(mse), "mae_x10": 10 * mae, "rmse_x10": 10 * math.sqrt(mse)}
        if self.rgb_target and self.fid and state["pred"]:
            from ..metrics.image import fid_kid

            pred, real = torch.cat(state["pred"]), torch.cat(state["real"])
            if len(pred) >= 2:
                # with fewer than proxy_dim samples the covariance is rank-deficient; FID stays defined
                # KID subsets hold min(1000, n) images: with n <= 1000 every subset is the whole set,
                # so one subset gives the same mean
                subsets = self.kid_subsets if len(pred) > 1000 else 1
                r = fid_kid(pred, real, self.extractor(), kid_subsets=subsets, seed=0)
                out["fid_proxy"] = float(r["fid"])
                out["kid_x100_proxy"] = float(r["kid_mean_x100"])
        return out


class GenreAdapter(BatchAdapter):
    """Multi-label F1 (sigmoid > 0.5) over the whole split, percent: micro, macro, weighted, samples."""

    select_metric = TASKS["genre"].select_metric
    select_mode = "max"

    def new_metrics(self) -> dict[str, list[Tensor]]:
        return {"prob": [], "true": []}

    def update(self, state: dict[str, list[Tensor]], output: Any, target: Any, batch: Mapping[str, Any]) -> Any:
        state["prob"].append(torch.sigmoid(output.pred.detach().float()).cpu())
        state["true"].append(target.detach().cpu())
        return state

    def compute(self, state: dict[str, list[Tensor]]) -> dict[str, float]:
        from ..metrics.classification import multilabel_f1

        f1 = multilabel_f1(torch.cat(state["true"]).numpy(), torch.cat(state["prob"]).numpy(), threshold=0.5)
        return {f"{k}_f1": float(v) for k, v in f1.items()}


def make_adapter(data: TaskData, fid: bool = True) -> BatchAdapter:
    """The adapter of ``data.task``'s output kind with ``data``'s batch keys (loss, metrics, checkpoint choice)."""
    return _ADAPTERS[get_task(data.task).output](data, fid)


#: the batch adapter of each output kind
_ADAPTERS: dict[str, Callable[[TaskData, bool], BatchAdapter]] = {
    CLASS_MAP: lambda data, fid: SegmentationAdapter(data.num_outputs, 255, data.a_key, data.b_key, data.target_key),
    IMAGE: lambda data, fid: TranslationAdapter(data.a_key, data.b_key, data.target_key,
                                                data.pair is not None and data.pair.rgb_target, fid=fid),
    LABELS: lambda data, fid: GenreAdapter(data.a_key, data.b_key, data.target_key),
}
#: a model's raw prediction as figures read it, per output kind: classes, images, label probabilities
_READOUT: dict[str, Callable[[Tensor], Tensor]] = {CLASS_MAP: lambda p: p.argmax(1), IMAGE: lambda p: p,
                                                   LABELS: torch.sigmoid}


# ----------------------------------------------------------------------------------- models
def model_kwargs(task: str, data: TaskData, preset: Preset, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The :class:`~mango_lite.models.ModelConfig` fields (as keywords) for ``task`` at ``preset``:
    preset sizes, then data-dependent ones, then ``preset.tasks[task]["model"]``, then ``overrides``."""
    kw: dict[str, Any] = dict(
        in_channels=tuple(data.in_channels), num_outputs=int(data.num_outputs), image_size=int(preset.image_size),
        width=int(preset.width), blocks=int(preset.blocks), scales=int(preset.scales),
        flow_weight=preset.flow_weight_for(task),
    )
    kw.update(data.model_kwargs)
    kw.update(dict((preset.tasks or {}).get(task, {}).get("model", {})))
    kw.update(dict(overrides or {}))
    return kw


def control_overrides(model: str) -> dict[str, Any]:
    """The ModelConfig overrides that make MANGO's control or the study variant ``model`` (empty for every
    other model)."""
    key = str(model).strip().lower()
    if key in STUDY_MODELS:
        return dict(STUDY_MODELS[key][1])
    return dict(CONTROL_MODELS.get(key, {}))


def run_model_kwargs(task: str, model: str, data: TaskData, preset: Preset,
                     model_overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ModelConfig fields (as keywords) :func:`train_task` builds ``model`` with: :func:`model_kwargs` with the
    model's control overrides, then ``model_overrides``, and a ``"budget"`` context width resolved."""
    fusion = resolve_model(task, model, data.pair)
    overrides = {**control_overrides(model), **dict(model_overrides or {})}
    return resolve_budget(task, fusion, model_kwargs(task, data, preset, overrides))


def run_model_config(task: str, model: str, data: TaskData, preset: Preset,
                     model_overrides: Mapping[str, Any] | None = None) -> ModelConfig:
    """The :class:`~mango_lite.models.ModelConfig` :func:`train_task` would build ``model`` with (without building
    it): what a resumed study compares a finished run's stored configuration with."""
    return task_model_config(task, resolve_model(task, model, data.pair),
                             run_model_kwargs(task, model, data, preset, model_overrides))


def resolve_budget(task: str, fusion: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` with ``context_hidden="budget"`` replaced by the branch width that gives the model about
    as many trainable parameters as MANGO built from the same keywords."""
    if kwargs.get("context_hidden") != "budget":
        return dict(kwargs)
    from ..models.context_fusion import context_hidden_for_budget

    base = {k: v for k, v in kwargs.items() if k not in ("context_dilations", "context_hidden")}
    target = count_params(build_task_model(task, "mango", base))
    hidden = context_hidden_for_budget(lambda h: build_task_model(task, fusion, {**kwargs, "context_hidden": h}),
                                       target)
    return {**kwargs, "context_hidden": hidden}


def task_model_config(task: str, fusion: str, kwargs: Mapping[str, Any]) -> ModelConfig:
    """The :class:`~mango_lite.models.ModelConfig` of ``fusion`` on ``task`` with the keyword ``kwargs``
    (:func:`model_kwargs`), its ValueErrors turned into MangoLiteError."""
    try:
        return ModelConfig.from_options(task, fusion, kwargs)
    except (TypeError, ValueError) as exc:
        raise MangoLiteError(f"cannot build the {task} model {fusion!r}: {exc}") from exc


def build_task_model(task: str, fusion: str, kwargs: Mapping[str, Any]) -> torch.nn.Module:
    """``build_model`` of :func:`task_model_config`, its errors turned into MangoLiteError."""
    return _build(task_model_config(task, fusion, kwargs))


def _build(config: ModelConfig) -> torch.nn.Module:
    from ..models import build_model

    try:
        return build_model(config)
    except ValueError as exc:
        raise MangoLiteError(f"cannot build the {config.task} model {config.fusion!r}: {exc}") from exc


def count_params(model: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


# -------------------------------------------------------------------------------------- runs
def _stderr_log(msg: str) -> None:
    import sys

    from tqdm.auto import tqdm

    tqdm.write(msg, file=sys.stderr)


@dataclass
class RunResult:
    """Outcome of :func:`train_task`: test metrics (no prefix) and where everything went."""

    task: str
    model: str
    fusion: str
    dataset: str
    pair: str | None
    out_dir: str
    metrics: dict[str, float]
    test_split: str
    data: dict[str, Any]
    params: int
    wall_time_s: float
    epochs_run: int
    device: str
    history: list[dict[str, Any]]
    best: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _task_config(preset: Preset, task: str, **over: Any) -> dict[str, Any]:
    """Engine settings: preset values, then ``preset.tasks[task]`` entries that name TrainConfig
    fields (e.g. ``{"epochs": 3}``), then non-None ``over``."""
    cfg: dict[str, Any] = dict(epochs=int(preset.epochs), batch_size=int(preset.batch_size), lr=float(preset.lr))
    names = set(TrainConfig.__dataclass_fields__)
    cfg.update({k: v for k, v in dict((preset.tasks or {}).get(task, {})).items() if k in names})
    cfg.update({k: v for k, v in over.items() if v is not None})
    return cfg


def _spec_data(spec: RunSpec, options: RunOptions, dist: Any, log: Callable[[str], None] | None) -> TaskData:
    """The spec's data, generated or verified by rank 0 first when several processes train one run."""
    from ..engine import distributed

    if dist.active and not dist.is_main:
        distributed.barrier()  # rank 0 generates or verifies the data first
    data = build_task_data(spec.task, spec.preset, spec.data_root, spec.pair, spec.dataset, options.cache_dir,
                           log=log if dist.is_main else None)
    if dist.active and dist.is_main:
        distributed.barrier()
    return data


def _run_description(spec: RunSpec, fusion: str, data: TaskData, net: torch.nn.Module, kwargs: Mapping[str, Any],
                     processes: int) -> dict[str, Any]:
    """What a run folder's checkpoints and metrics.json record about the run (the ``spec`` entry)."""
    return {
        "task": spec.task, "model": spec.model, "fusion": fusion, "dataset": data.info.name,
        "pair": data.pair.name if data.pair else None, "preset": spec.preset.to_dict(), "seed": spec.seed,
        "data": data.info.to_dict(), "data_root": spec.data_root,
        "model_config": net.config.to_dict(), "model_kwargs": dict(kwargs),
        "title": f"{spec.task} / {spec.model}" + (f" / {data.pair.label}" if data.pair else f" / {data.info.name}"),
        "processes": processes,
    }


def train_task(
    spec: RunSpec,
    out: str | os.PathLike = "runs/train",
    *,
    options: RunOptions | None = None,
    data: TaskData | None = None,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Train the run ``spec`` describes (:class:`~mango_lite.training.runspec.RunSpec`: task, model, preset,
    seed, data, schedule changes) and evaluate it on the test split; writes into ``out``: checkpoints,
    ``history.json``/``.csv`` and ``metrics.json`` (spec + test metrics), plus what ``options.after_fit``
    writes (the command line and ``reproduce`` add ``curves.png``)::

        train_task(RunSpec("segmentation", "mango", "quick"), "runs/seg-mango")

    ``options``: how it runs (:class:`~mango_lite.training.runspec.RunOptions`: device, resume/overwrite, what
    stays on disk, progress, DataLoader workers, the stand-ins' cache folder). ``data``: prebuilt
    :class:`TaskData` for this spec (shared between runs; its augmentation generator is reseeded per run).
    ``log``: where the run's lines go (default: stderr when ``options.verbose``).
    Raises MangoLiteError on bad names / data, TrainingError when training diverges."""
    if not isinstance(spec, RunSpec):
        raise MangoLiteError(f"train_task: expected a RunSpec (mango_lite.training.RunSpec(task, model, preset, "
                             f"...)), got {type(spec).__name__}")
    options = RunOptions() if options is None else options
    t0 = time.perf_counter()
    task, model, preset, seed = spec.task, spec.model, spec.preset, spec.seed
    if log is None and options.verbose:
        log = _stderr_log
    from ..engine import distributed

    dist = distributed.init_from_env()  # started by torchrun: one process per GPU (or CPU slot)
    device = options.device
    if dist.active and torch.cuda.is_available() and device in (None, "cuda"):
        device = f"cuda:{dist.local_rank}"
    checked_device(device)  # fail on a bad device before any data is generated
    if data is None:
        data = _spec_data(spec, options, dist, log)
    fusion = resolve_model(task, model, data.pair)
    kwargs = run_model_kwargs(task, model, data, preset, spec.model_overrides or None)
    seed_everything(seed)  # model initialisation depends on the seed only
    net = build_task_model(task, fusion, kwargs)
    if options.checkpoint_flow:
        from ..flows import use_activation_checkpointing

        use_activation_checkpointing(net)  # a no-op for models without a MANGO flow
    cfg = TrainConfig(**_task_config(preset, task, epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr),
                      seed=seed, device=device, progress=options.progress, verbose=options.verbose,
                      save_best=options.save_best, keep_checkpoints=options.keep_checkpoints,
                      max_steps_per_epoch=spec.max_steps_per_epoch, amp=spec.amp, num_workers=options.num_workers)
    adapter = make_adapter(data, fid=spec.fid)
    record = _run_description(spec, fusion, data, net, kwargs, dist.world_size)
    trainer = Trainer(net, data.train, data.val, adapter, cfg, out_dir=out, spec=record, generators=data.generators,
                      log=log, on_fit_end=options.after_fit)
    fit: FitResult = trainer.fit(resume=options.resume, overwrite=options.overwrite)
    if data.test is data.val and fit.final:
        metrics = {k[len("val_"):]: v for k, v in fit.final.items()}
    else:
        metrics = {k[len("test_"):]: v for k, v in trainer.evaluate(data.test, prefix="test_").items()}
    wall = time.perf_counter() - t0
    result = RunResult(
        task=task, model=model, fusion=fusion, dataset=data.info.name, pair=record["pair"], out_dir=str(out),
        metrics=metrics, test_split=data.test_split, data=data.info.to_dict(), params=count_params(net),
        wall_time_s=wall, epochs_run=fit.epochs_run, device=device_name(trainer.device),
        history=fit.history.records, best=fit.best,
    )
    if dist.is_main:
        atomic_write_json(Path(out) / "metrics.json", {**{k: v for k, v in result.to_dict().items() if k != "history"},
                                                       "spec": record})
    return result


def load_model(checkpoint: str | os.PathLike, device: str | torch.device | None = "cpu"
               ) -> tuple[torch.nn.Module, dict[str, Any], dict[str, Any]]:
    """Rebuild the model of a checkpoint written by :func:`train_task` (file or run folder).

    Returns ``(model in eval mode on device, spec, checkpoint dict)``; ``spec`` describes the run
    (task, model, fusion, pair, dataset, preset, data, model_config)."""
    state = load_checkpoint(checkpoint, map_location="cpu")
    spec = state.get("spec") or {}
    for k in ("task", "fusion", "model_config", "preset"):
        if k not in spec:
            raise MangoLiteError(f"{state['path']}: the checkpoint has no run description ({k!r} missing); "
                                 f"it was not written by mango_lite.training.train_task")
    try:
        config = ModelConfig.from_dict({**spec["model_config"], "task": spec["task"], "fusion": spec["fusion"]})
    except (TypeError, ValueError) as exc:
        raise MangoLiteError(f"{state['path']}: cannot read the stored model configuration: {exc}") from exc
    net = _build(config)
    try:
        net.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise MangoLiteError(f"{state['path']}: weights do not fit the rebuilt model ({exc})") from exc
    dev = checked_device(None if device is None else str(device))
    return net.to(dev).eval(), spec, state


@torch.no_grad()
def predict_samples(models: Mapping[str, torch.nn.Module], data: TaskData, n: int = 4, split: str = "test"
                    ) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The first ``n`` items of ``split`` (``"train"``, ``"val"`` = the selection split, ``"test"`` = the
    reported one) collated into one batch, and each model's prediction on it:
    class maps (N, H, W) for segmentation, images (N, C, H, W) in [-1, 1] for translation, sigmoid
    probabilities (N, 23) for genre. For qualitative figures."""
    from torch.utils.data import DataLoader

    ds = {"train": data.train, "val": data.val, "test": data.test}[split]
    batch = next(iter(DataLoader(ds, batch_size=min(n, len(ds)), shuffle=False)))  # type: ignore[arg-type]
    preds: dict[str, Tensor] = {}
    for name, m in models.items():
        dev = next(m.parameters()).device
        was = m.training
        m.eval()
        a = batch[data.a_key]
        b = batch[data.b_key]
        out = m(a.to(dev) if isinstance(a, Tensor) else a, b.to(dev) if isinstance(b, Tensor) else b)
        m.train(was)
        p = out.pred.float().cpu()
        preds[name] = _READOUT[get_task(data.task).output](p)
    return batch, preds


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    data_root: str | os.PathLike | None = None,
    split: str | None = None,
    device: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Rebuild the model of a checkpoint (or run folder), evaluate it on ``split`` (default: the task's
    test split) of ``data_root`` (default: the data it was trained on; stand-ins are regenerated if
    gone) and return ``{"metrics": {...}, "split", "data", "checkpoint", "task", "model", ...}``."""
    net, spec, state = load_model(checkpoint, device)
    dev = next(net.parameters()).device
    task = spec["task"]
    preset = Preset(**spec["preset"])
    if data_root is None:
        old = spec.get("data") or {}
        if spec.get("data_root"):
            data_root = spec["data_root"]
        elif old.get("root") and Path(old["root"]).is_dir():  # the same folder (verified again)
            data_root = old["root"]
        elif old.get("root"):  # generated stand-ins since removed: generate them again in the same cache
            cache_dir = cache_dir or Path(old["root"]).parent
    data = build_task_data(task, preset, data_root, spec.get("pair"), spec.get("dataset"), cache_dir, log=log)
    splits = {"train": data.train, "val": data.val, "test": data.test}
    if data.val is not data.test:  # a held-out selection split: the dataset's own split name means the reported one
        splits.update({data.test_split: data.test, "selection": data.val})
    split = split or data.test_split
    if split not in splits:
        raise MangoLiteError(f"unknown split {split!r}; expected one of {tuple(splits)}")
    ds = splits[split]
    if split == "train":  # evaluate without augmentation
        ds = type(data.test)(**_same_dataset_kwargs(data, "train"))
    adapter = make_adapter(data)
    task_cfg = dict((preset.tasks or {}).get(task, {}))
    if task_cfg.get("eval_window"):  # whole images, as the run validated (see TrainConfig.eval_window)
        from ..models.sliding_window import SlidingWindow

        net = SlidingWindow(net, int(task_cfg["eval_window"]))
    bs = batch_size or int(task_cfg.get("eval_batch_size") or preset.batch_size)
    metrics = evaluate_model(net, ds, adapter, dev, batch_size=bs, prefix="")
    return {"task": task, "model": spec.get("model"), "fusion": spec["fusion"], "pair": spec.get("pair"),
            "dataset": data.info.name, "split": split,
            "data": {k: v for k, v in data.info.to_dict().items() if k != "meta"}, "checkpoint": state["path"],
            "epoch": int(state["epoch"]), "metrics": metrics, "device": device_name(dev)}


def _same_dataset_kwargs(data: TaskData, split: str) -> dict[str, Any]:
    """Constructor arguments to reopen ``data.test``'s dataset class on another split (no augmentation; the
    selection split, ``data.val``, may be a subset of the training split)."""
    v = data.test
    kw: dict[str, Any] = {"root": data.info.root, "split": split, "transform": getattr(v, "transform", None)}
    for name in ("domains", "source"):  # what Taskonomy (its domains) and MM-IMDb (raw or hdf5) are opened with
        if hasattr(v, name):
            kw[name] = getattr(v, name)
    return kw
