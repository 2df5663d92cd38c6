"""How a committed notebook was run, read from the notebook itself: its preset, device and runtime (for the
runtime line of each notebook's header and README's table of notebooks)."""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["committed_run", "run_record", "runtime_sentence", "RUNTIME_MARKER"]


def committed_run(path: str | os.PathLike) -> dict[str, Any]:
    """How a committed notebook (``.ipynb``) was run, read from the notebook itself: ``preset`` and
    ``device`` from its first output line that names them (``None`` when it names none), ``seconds`` from
    the first cell's start to the last cell's reply in the execution metadata Jupyter records (``None``
    when it recorded none), and ``cells`` executed."""
    return run_record(json.loads(Path(path).read_text(encoding="utf-8")))


def run_record(nb: dict[str, Any]) -> dict[str, Any]:
    """:func:`committed_run` of a notebook already read (a JSON dict or an nbformat node)."""
    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    text = "\n".join("".join(o.get("text", "")) for c in code for o in c.get("outputs", [])
                     if o.get("output_type") == "stream")
    preset = re.search(r"preset[=: ]+(\w+)", text)
    device = re.search(r"device[=: ]+(\S+(?: \(\d+ cores\))?)", text)
    stamps = [c.get("metadata", {}).get("execution", {}) for c in code]
    stamps = [t for t in stamps if "iopub.execute_input" in t and "shell.execute_reply" in t]

    def when(s: str) -> datetime:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))

    seconds = None
    if stamps:
        seconds = (when(stamps[-1]["shell.execute_reply"]) - when(stamps[0]["iopub.execute_input"])).total_seconds()
    return {"preset": preset.group(1) if preset else None, "device": device.group(1) if device else None,
            "seconds": seconds, "cells": sum(1 for c in code if c.get("execution_count"))}


#: the place in a notebook source's header where the build writes the measured runtime
RUNTIME_MARKER = "{{runtime}}"


def runtime_sentence(record: dict[str, Any] | None) -> str:
    """How long the committed outputs took to make, from :func:`run_record`: "1.1 min at `cpu` on cpu
    (2 cores), as these outputs were made" (the preset and device as the notebook printed them)."""
    if not record or record.get("seconds") is None:
        return "not measured yet (no execution record)"
    s = float(record["seconds"])
    took = f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"
    where = (f" at `{record['preset']}`" if record.get("preset") else "") + (
        f" on {record['device']}" if record.get("device") else "")
    return f"{took}{where}, as these outputs were made"
