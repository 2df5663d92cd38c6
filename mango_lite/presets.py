"""Run-size presets: one switch, ``MANGO_LITE_PRESET``, shrinks or grows every experiment.

``quick``  CI and smoke runs: tiny data, small images, 1-2 blocks, a few epochs (about a minute a notebook
           on 2 CPU cores). On by default when the ``CI`` environment variable is set.
``cpu``    default without a GPU: minutes per experiment, enough to see real learning.
``gpu``    default when CUDA is available: larger images and the paper's 12 blocks where it fits.
``paper``  the real datasets at the paper's configuration; needs a GPU, the data and pretrained weights:
           SegFormer (MiT) image encoders from a local folder, their stride-8 features squeezed once into the
           flow's 16 x 16 tokens per modality (dim 256, 512 tokens: the official code's defaults), 12 MANGO
           blocks in all, AdamW with poly decay after a linear warm-up, the new layers at 10x the encoders'
           learning rate, and whole-image (sliding-window) validation for segmentation, as TokenFusion and
           GeminiFusion train and score.

Notebooks and the CLI call :func:`get_preset` and read sizes from the returned :class:`Preset`; nothing
else decides how big a run is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .tasks import get_task, task_names

PRESET_NAMES = ("quick", "cpu", "gpu", "paper")

#: the share of the training split that ``Preset.selection_split`` holds out for selection
SELECTION_FRACTION = 0.15

#: ``ModelConfig(encoder=...)`` choices for the image modalities (:mod:`mango_lite.models.pretrained`)
IMAGE_ENCODERS = ("conv", "timm", "segformer")

#: The NLL weight lambda per task (loss = task loss + lambda * flow bits/dim). What the weight does
#: depends on the task loss's scale: cross-entropy ends near 0.9, the L1 of translation near 0.03-0.14 and
#: the genre BCE near 0.14. Chosen between 0.01 and 0.1 on a selection split held out of the training data
#: (never the reported split), three seeds per weight, by the protocol committed before those runs:
#: results/selection/PROTOCOL.md; the choice and its numbers: results/selection/summary.md
#: (``python -m mango_lite select-weights``). The paper's unweighted sum (1) let the encoders collapse the
#: features onto what the flow predicts best in our earlier runs (results/mechanisms/segmentation-ladder).
TASK_FLOW_WEIGHTS: dict[str, float] = {"segmentation": 0.1, "translation": 0.01, "genre": 0.1}


@dataclass(frozen=True)
class Preset:
    """Sizes for one run. Task-specific knobs live in ``tasks[task]`` (plain dicts, JSON-friendly)."""

    name: str
    image_size: int  # side of the square images fed to the task models
    n_train: int  # generated training samples per dataset (ignored for real data)
    n_val: int  # generated validation samples per dataset
    epochs: int
    batch_size: int
    blocks: int  # MANGO blocks per scale in the task models (paper: 12)
    scales: int  # scales of the multiscale flow
    width: int  # channel width of the encoders / flow tokens
    lr: float
    # lambda in  loss = task loss + lambda * flow NLL (bits/dim), for segmentation; translation and genre
    # use TASK_FLOW_WEIGHTS (see there and :meth:`flow_weight_for`)
    flow_weight: float
    # density-model notebook (04): image side, blocks per scale, optimisation steps
    density_size: int = 16
    density_blocks: int = 1
    density_steps: int = 100
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # generated stand-ins only: metres between the camera of the first modality and the camera that sees the
    # second (NYUDv2's depth, Taskonomy's edge texture; datasets/synth/misregistration.py). 0 = registered
    # (pixel-aligned) modalities; b > 0 shifts every point of the second by its disparity f b / z pixels
    sensor_baseline_m: float = 0.0
    # segmentation and translation: hold a seeded SELECTION_FRACTION of the training split out (no augmentation)
    # for best-checkpoint selection and every choice made on scores, and report on the dataset's own held-out
    # split, which then informs no choice (genre selects on MM-IMDb's dev either way). False: select and
    # report on that one split, the older protocol; kept by ``quick`` alone, whose 64 training samples
    # leave no selection split worth the name (CI smoke runs; nothing is chosen or reported from them)
    selection_split: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def flow_weight_for(self, task: str) -> float:
        """The NLL weight lambda the task models of ``task`` get at this preset: ``tasks[task]["model"]
        ["flow_weight"]`` when given, else :data:`TASK_FLOW_WEIGHTS`, else ``flow_weight``."""
        given = dict((self.tasks or {}).get(task, {}).get("model", {}))
        if "flow_weight" in given:
            return float(given["flow_weight"])
        return float(TASK_FLOW_WEIGHTS.get(task, self.flow_weight))

    def with_overrides(self, **kw: Any) -> Preset:
        return replace(self, **kw)

    def with_encoders(self, **options: Any) -> Preset:
        """This preset with encoder fields of :class:`~mango_lite.models.ModelConfig` (``encoder``,
        ``encoder_weights``, ``encoder_name``, ``text_model``, ``text_finetune``; None values are ignored) set
        for every task. A ``text_model`` applies to the genre task's plots (``text_encoder="pretrained"``)."""
        unknown = set(options) - set(ENCODER_OPTIONS)
        if unknown:
            raise ValueError(f"with_encoders: unknown options {sorted(unknown)}; expected some of {ENCODER_OPTIONS}")
        given = {k: v for k, v in options.items() if v is not None}
        if given.get("text_finetune") and "text_model" not in given:
            raise ValueError("with_encoders: text_finetune needs text_model, the pretrained text model to fine-tune")
        if not given:
            return self
        tasks = {t: dict(v) for t, v in (self.tasks or {}).items()}
        for task in task_names():
            entry = tasks.setdefault(task, {})
            model = dict(entry.get("model", {}))
            model.update({k: v for k, v in given.items() if k not in ("text_model", "text_finetune")})
            if get_task(task).text_b and "text_model" in given:
                model.update(text_encoder="pretrained", text_model=str(given["text_model"]),
                             text_finetune=bool(given.get("text_finetune", False)))
            if "encoder_weights" in model:
                model["encoder_weights"] = str(model["encoder_weights"])
            entry["model"] = model
        return replace(self, tasks=tasks)



#: Preset fields added later, with the value every run stored before them trained under
PRESET_FIELDS_ADDED: dict[str, Any] = {"sensor_baseline_m": 0.0, "selection_split": False, "tasks": {}}


def training_fields(preset: dict[str, Any]) -> dict[str, Any]:
    """The fields of a stored preset (``Preset.to_dict()``, possibly from an older version) that change what
    a task run trains and reports (name, sizes, schedule, data, protocol), as JSON; the density notebook's
    fields are left out. Two runs may be resumed or compared as one setting only when these agree."""
    import json

    full = {**PRESET_FIELDS_ADDED, **json.loads(json.dumps(dict(preset)))}
    return {k: v for k, v in full.items() if not k.startswith("density_")}

#: TokenFusion / GeminiFusion's optimisation (PolyWarmupAdamW: linear warm-up over 1500 iterations, then
#: (1 - t) ** 1; weight decay 0.01; the pretrained backbone at lr, the new layers at 10 x lr)
_PAPER_OPTIMISATION: dict[str, Any] = {"scheduler": "poly", "poly_power": 1.0, "warmup_steps": 1500,
                                       "weight_decay": 0.01, "new_layer_lr_mult": 10.0}
#: SegFormer MiT encoders; their stride-8 stage, squeezed once by the flow, gives 16 x 16 tokens at 256 px
_PAPER_IMAGE_ENCODER: dict[str, Any] = {"encoder": "segformer", "encoder_stride": 8}

_PRESETS: dict[str, Preset] = {
    "quick": Preset(
        name="quick", image_size=32, n_train=64, n_val=32, epochs=2, batch_size=16, blocks=1, scales=2,
        width=16, lr=2e-3, flow_weight=0.1, density_size=8, density_blocks=1, density_steps=40,
        selection_split=False,
    ),
    "cpu": Preset(
        name="cpu", image_size=64, n_train=600, n_val=150, epochs=12, batch_size=16, blocks=2, scales=2,
        width=32, lr=1e-3, flow_weight=0.1, density_size=16, density_blocks=2, density_steps=600,
    ),
    "gpu": Preset(
        name="gpu", image_size=128, n_train=2000, n_val=500, epochs=40, batch_size=32, blocks=4, scales=3,
        width=64, lr=5e-4, flow_weight=0.1, density_size=32, density_blocks=4, density_steps=3000,
    ),
    "paper": Preset(
        name="paper", image_size=256, n_train=0, n_val=0, epochs=100, batch_size=8, blocks=12, scales=1,
        width=64, lr=6e-5, flow_weight=0.1, density_size=64, density_blocks=12, density_steps=20000,
        tasks={
            "segmentation": {**_PAPER_OPTIMISATION, "eval_window": 256, "eval_batch_size": 1,
                             "model": dict(_PAPER_IMAGE_ENCODER)},
            "translation": {**_PAPER_OPTIMISATION, "model": dict(_PAPER_IMAGE_ENCODER)},
            "genre": {**_PAPER_OPTIMISATION, "model": dict(_PAPER_IMAGE_ENCODER)},
        },
    ),
}

#: the ModelConfig fields that choose the encoders (see :meth:`Preset.with_encoders`)
ENCODER_OPTIONS = ("encoder", "encoder_weights", "encoder_name", "text_model", "text_finetune")


def default_preset_name() -> str:
    """The library's default preset: ``gpu`` with CUDA, otherwise ``cpu``. It reads no environment variable
    (the command line and the notebooks add ``MANGO_LITE_PRESET`` and CI: :mod:`mango_lite.environment`)."""
    try:
        import torch

        if torch.cuda.is_available():
            return "gpu"
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return "cpu"


def get_preset(name: str | None = None) -> Preset:
    """Return the named preset, or the library's default one (:func:`default_preset_name`: by device only)."""
    key = (name or default_preset_name()).lower()
    if key not in _PRESETS:
        raise ValueError(f"preset must be one of {PRESET_NAMES}, got {name!r}")
    return _PRESETS[key]

