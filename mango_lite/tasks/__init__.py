"""The tasks MANGO is trained on, each described once (:mod:`mango_lite.tasks.registry`)."""

from .registry import TASKS, Metric, Task, get_task, task_names

__all__ = ["TASKS", "Metric", "Task", "get_task", "task_names"]
