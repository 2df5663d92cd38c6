"""One object per task: what every layer needs to know about a task, stated once.

The training loop, the experiments, the reports and the plots ask a :class:`Task` instead of branching on
the task's name: which datasets it reads, which two modalities its unimodal baselines see, the one
headline metric that ranks models (and its direction), the metric that picks the best checkpoint, and how
its rows are labelled in tables. Adding a task means adding an entry to :data:`TASKS`.

This module imports nothing else of mango_lite but its errors, so every layer (models, training,
experiments, reports, plots) may import it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import MangoLiteError

__all__ = ["Metric", "Task", "TASKS", "get_task", "task_names", "CLASS_MAP", "IMAGE", "LABELS", "OUTPUTS"]

#: What a task's model predicts. Each layer keeps one table from this kind to its part (the head and loss in
#: models, the metrics adapter and data in training, the figures in viz), so a new task whose output is of a
#: known kind is one entry in :data:`TASKS` and nothing else.
CLASS_MAP = "class_map"  # a class per pixel: logits (B, classes, H, W), cross-entropy, mIoU
IMAGE = "image"  # an image in [-1, 1]: (B, C, H, W), L1, MAE
LABELS = "labels"  # independent labels per sample: logits (B, labels), binary cross-entropy, F1
OUTPUTS = (CLASS_MAP, IMAGE, LABELS)


@dataclass(frozen=True)
class Metric:
    """A metric of a run's ``metrics`` (test split) and, prefixed with ``val_``, of its history."""

    key: str  # e.g. "miou"
    label: str  # as a table column prints it, e.g. "mIoU (%)"
    higher_is_better: bool

    @property
    def mode(self) -> str:
        """``"max"`` or ``"min"``: the direction of a better value."""
        return "max" if self.higher_is_better else "min"

    @property
    def history_key(self) -> str:
        """Its key in a run's ``history.json`` (the validation or selection split)."""
        return f"val_{self.key}"


@dataclass(frozen=True)
class Task:
    """What the package needs to know about one task."""

    name: str  # CLI / API name, e.g. "segmentation"
    label: str  # in sentences after a dataset's name: "NYUDv2 segmentation", "MM-IMDb genres"
    datasets: tuple[str, ...]  # the first is the default
    headline: Metric  # the one number that ranks models of this task everywhere
    # what the best checkpoint is chosen by (a history key). Kept as every run so far was trained: a resumed
    # run compares its new scores with the best one it stored under this key
    select_metric: str
    # the names of the two unimodal baselines (modality A, B); None: the translation pair's input domains
    unimodal: tuple[str, str] | None
    output: str = CLASS_MAP  # what its model predicts (:data:`OUTPUTS`)
    has_pairs: bool = False  # translation: runs are grouped by (input, input) -> target pairs
    text_b: bool = False  # modality B is text (a tokenizer and a text encoder, or pretrained text features)

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise MangoLiteError(f"task {self.name!r}: output must be one of {OUTPUTS}, got {self.output!r}")

    @property
    def default_dataset(self) -> str:
        return self.datasets[0]

    @property
    def spatial(self) -> bool:
        """Whether its prediction is a map of the input's size (so a model needs the output size)."""
        return self.output != LABELS

    def unimodal_names(self, pair_inputs: tuple[str, str] | None = None) -> tuple[str, str]:
        """The unimodal baselines' names; a task with pairs takes them from the pair's input domains."""
        if self.unimodal is not None:
            return self.unimodal
        if pair_inputs is None:
            raise MangoLiteError(f"task {self.name!r}: the unimodal baselines are named by the pair's inputs; none given")
        return (str(pair_inputs[0]), str(pair_inputs[1]))


TASKS: dict[str, Task] = {
    "segmentation": Task(
        name="segmentation", label="segmentation", datasets=("nyudv2", "sunrgbd"),
        headline=Metric("miou", "mIoU (%)", True), select_metric="val_miou", unimodal=("rgb", "depth"),
        output=CLASS_MAP),
    "translation": Task(
        name="translation", label="translation", datasets=("taskonomy",),
        # x10: the paper prints MAE in 10^-1 units; the ranking is MAE's
        headline=Metric("mae_x10", "MAE ×10", False), select_metric="val_mae", unimodal=None, has_pairs=True,
        output=IMAGE),
    "genre": Task(
        # macro-F1 weighs every genre alike (23 genres, a few of them frequent), so a model that learns only
        # the frequent genres does not rank first; the paper's Table 3 prints it beside micro-F1
        name="genre", label="genres", datasets=("mmimdb",),
        headline=Metric("macro_f1", "macro-F1 (%)", True), select_metric="val_micro_f1", unimodal=("image", "text"),
        output=LABELS, text_b=True),
}


def task_names() -> tuple[str, ...]:
    return tuple(TASKS)


def get_task(name: str | Task) -> Task:
    """The :class:`Task` named ``name`` (case and surrounding spaces ignored); MangoLiteError listing the
    tasks when there is none."""
    if isinstance(name, Task):
        return name
    key = str(name).strip().lower()
    if key not in TASKS:
        raise MangoLiteError(f"unknown task {name!r}; expected one of {task_names()}")
    return TASKS[key]
