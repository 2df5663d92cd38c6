"""Environment variables are read at the edges only (mango_lite/environment.py, used by the command line and
the notebooks), each is documented in README, and the library's defaults ignore them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mango_lite import environment
from mango_lite.errors import MangoLiteError
from mango_lite.presets import get_preset

ROOT = Path(__file__).resolve().parents[1]
READ = re.compile(r"os\.environ\.get\(|os\.getenv\(|os\.environ\[|environ\.get\(")
#: standard variables read where their meaning lives (torchrun's process role; matplotlib's display)
ALLOWED = {"mango_lite/environment.py": None, "mango_lite/engine/distributed.py": {"WORLD_SIZE", "LOCAL_RANK"},
           "mango_lite/viz/plots.py": {"DISPLAY"}}


def test_the_library_reads_no_environment_variable():
    found = []
    for path in sorted((ROOT / "mango_lite").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not READ.search(line) or rel == "mango_lite/environment.py":
                continue
            names = set(re.findall(r"""["']([A-Z_]+)["']""", line))
            if rel not in ALLOWED or not names <= ALLOWED[rel]:
                found.append(f"{rel}:{n}: {line.strip()}")
    assert not found, "read mango_lite.environment at the edge instead:\n" + "\n".join(found)


def test_readme_documents_every_variable():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Environment variables"):]
    section = section[: section.index("\n## ", 4)]
    missing = [name for name in environment.VARIABLES if f"`{name}`" not in section]
    assert not missing, f"README's 'Environment variables' section does not name {missing}"


def test_the_library_default_ignores_the_environment_and_the_edges_follow_it(monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("MANGO_LITE_PRESET", "paper")
    assert get_preset().name in ("cpu", "gpu")  # train_task(preset=None) no longer shrinks on a CI box
    assert environment.get_preset().name == "paper" and environment.get_preset("quick").name == "quick"
    monkeypatch.delenv("MANGO_LITE_PRESET")
    assert environment.preset_name() == "quick"  # CI, nothing named
    monkeypatch.setenv("CI", "false")
    assert environment.preset_name() in ("cpu", "gpu")
    monkeypatch.setenv("MANGO_LITE_PRESET", "huge")
    with pytest.raises(MangoLiteError, match="MANGO_LITE_PRESET must be one of"):
        environment.preset_name()


@pytest.mark.parametrize("name, read", [("MANGO_LITE_JOBS", environment.jobs), ("MANGO_LITE_THREADS", environment.threads),
                                        ("MANGO_LITE_EPOCHS", environment.epochs)])
def test_counts_must_be_positive_integers(monkeypatch, name, read):
    monkeypatch.delenv(name, raising=False)
    assert read() is None
    monkeypatch.setenv(name, "4")
    assert read() == 4
    for bad in ("0", "-1", "two"):
        monkeypatch.setenv(name, bad)
        with pytest.raises(MangoLiteError, match=f"{name} must be a positive integer, got {bad!r}"):
            read()


def test_paths_and_lists(monkeypatch, tmp_path):
    monkeypatch.delenv("MANGO_LITE_DATA_CACHE", raising=False)
    assert environment.data_cache() is None
    monkeypatch.setenv("MANGO_LITE_DATA_CACHE", str(tmp_path))
    assert environment.data_cache() == tmp_path
    monkeypatch.setenv("MANGO_LITE_RUNS", str(tmp_path / "r"))
    assert environment.runs_dir(Path("default")) == tmp_path / "r"
    monkeypatch.setenv("MANGO_LITE_PAIRS", " a_to_b, ,c_to_d ")
    assert environment.pairs() == ["a_to_b", "c_to_d"]
