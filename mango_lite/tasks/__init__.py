"""The tasks MANGO is trained on, each described once (:mod:`mango_lite.tasks.registry`)."""

from .registry import CLASS_MAP, IMAGE, LABELS, OUTPUTS, TASKS, Metric, Task, get_task, task_names

__all__ = ["TASKS", "Metric", "Task", "get_task", "task_names", "CLASS_MAP", "IMAGE", "LABELS", "OUTPUTS"]
