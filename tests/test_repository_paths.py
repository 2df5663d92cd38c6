"""No absolute path of any machine in what the repository ships: code, docstrings, README, results
files and committed notebook outputs (a home folder or work tree means something only on one machine);
and modules named by what they hold."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import MACHINE_PATH

ROOT = Path(__file__).resolve().parents[1]
TEXT = {".py", ".md", ".json", ".ipynb", ".toml", ".yml", ".yaml", ".txt", ".cfg", ".csv", ".sh", ""}


def _tracked() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / p for p in out.decode().split("\0") if p]


def test_no_machine_paths_in_tracked_files():
    hits = []
    for path in _tracked():
        if path.suffix not in TEXT or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for m in MACHINE_PATH.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            hits.append(f"{path.relative_to(ROOT)}:{line}: {m.group(0)}")
    assert not hits, "machine paths in the repository:\n" + "\n".join(hits[:20])


def test_the_pattern_catches_home_and_work_folders_but_not_urls_or_relative_paths():
    # the examples are assembled so that this file holds no machine path itself
    home, work = "/".join(["", "home", "ann", "data"]), "/".join(["", "work", "exp", "data"])
    assert MACHINE_PATH.search(f'"root": "{home}/nyudv2"')
    assert MACHINE_PATH.search(f"saved to {work}")
    assert not MACHINE_PATH.search("https://example.org" + home)
    assert not MACHINE_PATH.search(f"results{work} and .{home} and ~{home}")


def test_modules_are_named_by_what_they_hold():
    vague = [str(p.relative_to(ROOT)) for p in _tracked()
             if p.suffix == ".py" and re.search(r"_(extra|misc|utils2|helpers)$", p.stem)]
    assert not vague, f"modules named by nothing they hold: {vague}"


def test_plain_pytest_collects_modules_that_import_the_test_helpers(tmp_path):
    """`pytest` (the script, started outside the repository) as well as `python -m pytest` must import
    `tests.conftest` helpers: pyproject puts the repository root on sys.path for it."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = shutil.which("pytest", path=str(Path(sys.executable).parent)) or shutil.which("pytest")
    if script is None:
        import pytest

        pytest.skip("no pytest script on PATH")
    done = subprocess.run([script, "--collect-only", "-q", "-p", "no:cacheprovider",
                           str(root / "tests" / "test_numerical_guards.py")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "collected" in done.stdout.splitlines()[-1]


def test_the_version_is_written_once():
    """pyproject reads the version from mango_lite.__version__: the installed metadata agrees with it."""
    import importlib.metadata
    from pathlib import Path

    import pytest

    import mango_lite

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "version" not in meta["project"] and "version" in meta["project"]["dynamic"]
    assert importlib.metadata.version("mango_lite") == mango_lite.__version__
