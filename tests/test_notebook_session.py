"""The task notebooks' common setup (mango_lite.notebook)."""

from __future__ import annotations

import pytest
import torch

from mango_lite.errors import MangoLiteError
from mango_lite.notebook import lab_epochs, repository_root, start_notebook
from mango_lite.presets import get_preset


def test_start_notebook_sets_preset_threads_seed_and_a_temporary_folder(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MANGO_LITE_PRESET", "quick")
    monkeypatch.setenv("MANGO_LITE_THREADS", "1")
    before = torch.get_num_threads()
    try:
        session = start_notebook("99_test", theme=False)
        assert session.preset.name == "quick" and session.threads == 1 == torch.get_num_threads()
        assert session.temporary and session.work.is_dir() and not session.work.is_relative_to(tmp_path)
        out = capsys.readouterr().out
        assert out.count("\n") == 1 and "preset=quick" in out and "threads=1" in out and str(tmp_path) not in out
        assert session.tag("NYUDv2") == f"NYUDv2, preset quick, {session.device_label}"
        line = session.finish()
        assert not session.work.exists()  # the temporary folder is gone
        assert line.startswith("notebook ran in ") and "(preset quick, " in line
    finally:
        torch.set_num_threads(before)


def test_start_notebook_seeds_every_time(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    a = start_notebook("99_a", theme=False, verbose=False, seed=3)
    x = torch.rand(4)
    a.finish()
    b = start_notebook("99_b", theme=False, verbose=False, seed=3)
    assert torch.equal(x, torch.rand(4))
    b.finish()


def test_kept_runs_live_under_runs_and_are_shown_without_machine_paths(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # as Jupyter starts a notebook
    monkeypatch.setenv("MANGO_LITE_PRESET", "quick")
    monkeypatch.delenv("MANGO_LITE_RUNS", raising=False)
    assert repository_root() == tmp_path
    session = start_notebook("05_segmentation", keep_runs=True, theme=False)
    assert session.work == tmp_path / "runs" / "05_segmentation" / "quick" and session.work.is_dir()
    assert "runs -> runs/05_segmentation/quick" in capsys.readouterr().out
    assert session.shown(session.work / "mango") == "runs/05_segmentation/quick/mango"
    assert session.shown("/elsewhere/data/nyudv2-n96") == "nyudv2-n96"  # outside the repository: the name only
    session.finish()
    assert session.work.is_dir()  # kept runs stay
    monkeypatch.setenv("MANGO_LITE_RUNS", str(tmp_path / "elsewhere"))
    other = start_notebook("05_segmentation", keep_runs=True, theme=False, verbose=False)
    assert other.work == tmp_path / "elsewhere" / "05_segmentation" / "quick"


def test_committed_run_reads_preset_device_and_time_from_the_notebook(tmp_path) -> None:
    import json

    from mango_lite.notebook import committed_run
    from mango_lite.reporting.views import notebook_runtimes

    def cell(text, start, end):
        return {"cell_type": "code", "execution_count": 1, "source": "", "metadata": {"execution": {
            "iopub.execute_input": start, "shell.execute_reply": end}},
            "outputs": [{"output_type": "stream", "name": "stdout", "text": text}]}

    nb = {"cells": [cell("preset=cpu  device=cpu (2 cores)  threads=1\n", "2026-12-01T02:00:00.000Z",
                         "2026-12-01T02:00:03.000Z"),
                    {"cell_type": "markdown", "source": "x", "metadata": {}},
                    cell("done\n", "2026-12-01T02:04:00.000Z", "2026-12-01T02:05:30.500Z")],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "05_task.ipynb").write_text(json.dumps(nb))
    bare = {**nb, "cells": [{**nb["cells"][2], "metadata": {}}]}
    (tmp_path / "01_maths.ipynb").write_text(json.dumps(bare))
    run = committed_run(tmp_path / "05_task.ipynb")
    assert run == {"preset": "cpu", "device": "cpu (2 cores)", "seconds": 330.5, "cells": 2}
    assert committed_run(tmp_path / "01_maths.ipynb") == {"preset": None, "device": None, "seconds": None, "cells": 1}
    table = notebook_runtimes(tmp_path)
    assert "| `05_task` | cpu | cpu (2 cores) | 5.5 min |" in table and "| `01_maths` | - | - | - |" in table
    assert table.rstrip().endswith("1 of 1 timed notebooks ran in at most 6 minutes.")
    assert table.index("01_maths") < table.index("05_task")


def test_lab_epochs_halves_the_schedule_unless_told(monkeypatch) -> None:
    monkeypatch.delenv("MANGO_LITE_EPOCHS", raising=False)
    assert lab_epochs(get_preset("cpu")) == 6  # half of 12
    assert lab_epochs(get_preset("quick")) == 2  # never below the minimum, never above the preset's 2
    assert lab_epochs(get_preset("quick").with_overrides(epochs=1)) == 1
    monkeypatch.setenv("MANGO_LITE_EPOCHS", "12")
    assert lab_epochs(get_preset("quick")) == 12  # told: the variable wins
    for bad in ("0", "-3", "six", "2.5"):
        monkeypatch.setenv("MANGO_LITE_EPOCHS", bad)
        with pytest.raises(MangoLiteError, match=f"MANGO_LITE_EPOCHS must be a positive integer.*{bad!r}"):
            lab_epochs(get_preset("cpu"))
