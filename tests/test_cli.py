"""Command line: argument errors (exit 2 + message), tiny end-to-end train/evaluate, reproduce, ablation."""

from __future__ import annotations

import importlib
import json
import os

import pytest
import torch

from mango_lite.cli import main
from mango_lite.engine import checkpoint as ckpt
from mango_lite.errors import MangoLiteError
from mango_lite.presets import get_preset
from mango_lite.training.reproduce import parse_variant, plan_runs
from mango_lite.training.tasks import model_names, resolve_model, resolve_pair

# Smallest sizes the models accept: 16 px images (stride 4 -> 4x4 features, 1 scale -> 2x2 tokens), a few samples.
TINY = get_preset("quick").with_overrides(name="quick", image_size=16, n_train=12, n_val=8, epochs=1, batch_size=4,
                                          width=8, blocks=1, scales=1)


@pytest.fixture
def tiny_preset(monkeypatch: pytest.MonkeyPatch):
    """Make ``--preset quick`` resolve to the ultra-tiny preset everywhere (CLI and library)."""
    import mango_lite.presets as presets

    monkeypatch.setitem(presets._PRESETS, "quick", TINY)
    torch.set_num_threads(1)
    return TINY


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    try:
        rc = main(list(argv))
    except SystemExit as exc:  # argparse errors
        rc = int(exc.code)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ------------------------------------------------------------------------------ argument errors
@pytest.mark.parametrize("argv, needle", [
    (["train", "--task", "nope", "--model", "mango", "--out", "x"], "invalid choice: 'nope'"),
    (["train", "--task", "segmentation", "--out", "x"], "--model"),
    (["train", "--task", "segmentation", "--model", "foo", "--out", "x"],
     "unknown model 'foo' for task 'segmentation'; expected one of ('mango', 'concat', 'tokenfusion', 'crossattn', "
     "'rgb', 'depth', 'mango-noattn', 'mango-nonll', 'mango-paper', 'mango-nll-encoders', 'concat-context', "),
    (["train", "--task", "translation", "--model", "mango", "--pair", "a_to_b", "--out", "x"], "unknown translation "
                                                                                               "pair 'a_to_b'"),
    (["train", "--task", "translation", "--model", "rgb", "--out", "x"], "unknown model 'rgb' for task 'translation'"),
    (["train", "--task", "genre", "--model", "mango", "--pair", "rgb_edge_to_depth", "--out", "x"], "--pair applies"),
    (["train", "--task", "segmentation", "--model", "mango", "--preset", "huge", "--out", "x"], "invalid choice: 'huge'"),
    (["evaluate", "--checkpoint", "/nonexistent/c.pt"], "checkpoint file not found"),
    (["train", "--task", "genre", "--model", "mango", "--device", "warp-drive", "--out", "x"], "device:"),
    (["reproduce", "--preset", "quick", "--tasks", "dance"], "invalid choice: 'dance'"),
    (["ablate", "--task", "genre", "--variants", "mmca+xyz", "--out", "x"], "unknown partition(s) ['xyz']"),
])
def test_argument_errors_exit_2(capsys, tmp_path, monkeypatch, argv, needle) -> None:
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 2
    assert needle in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "x").exists()  # nothing generated for a bad name


def test_an_unknown_model_lists_every_study_variant(capsys, tmp_path, monkeypatch) -> None:
    from mango_lite.training.tasks import STUDY_MODELS

    monkeypatch.chdir(tmp_path)
    rc, _, err = run_cli(capsys, "train", "--task", "segmentation", "--model", "foo", "--out", "x")
    assert rc == 2 and STUDY_MODELS and all(f"'{name}'" in err for name in STUDY_MODELS), err


def test_bad_data_folder_fails_verification(capsys, tmp_path) -> None:
    bad = tmp_path / "nyu"
    bad.mkdir()
    (bad / "train.txt").write_text("rgb/1.png\tmasks/1.png\tdepth/1.png\n")
    rc, _, err = run_cli(capsys, "train", "--task", "segmentation", "--model", "mango", "--data", str(bad),
                         "--out", str(tmp_path / "run"), "--preset", "quick")
    assert rc == 2 and err.startswith("error: ") and str(bad) in err


def test_name_registry() -> None:
    assert resolve_model("segmentation", "RGB") == "a" and resolve_model("segmentation", "depth") == "b"
    assert resolve_model("genre", "text") == "b" and resolve_model("genre", "tokenfusion") == "tokenfusion"
    assert model_names("translation", "rgb_edge_to_depth")[-2:] == ("rgb", "edge_texture")
    assert resolve_model("genre", "mango-noattn") == "mango"  # controls are valid names, not in the default list
    assert resolve_model("translation", "edge_texture", "rgb_edge_to_depth") == "b"
    p = resolve_pair("Shade+Texture→RGB")
    assert p.inputs == ("reshading", "edge_texture") and p.target == "rgb" and p.rgb_target
    assert resolve_pair("rgb+normal->reshading").name == "rgb_normal_to_shade"
    with pytest.raises(MangoLiteError, match="expected one of"):
        resolve_model("genre", "depth")


def test_plan_and_variants() -> None:
    quick = plan_runs("quick")
    keys = [g.key for g in quick]
    assert keys == ["segmentation/nyudv2", "translation/shade_texture_to_rgb", "translation/rgb_edge_to_depth",
                    "genre/mmimdb"]
    assert quick[0].models == ("mango", "concat", "tokenfusion", "crossattn", "rgb", "depth")
    cpu = [g.key for g in plan_runs("cpu")]
    assert "segmentation/sunrgbd" in cpu and sum(k.startswith("translation/") for k in cpu) == 5
    sel = plan_runs("quick", tasks=["genre"], models=["mango", "unimodal"])
    assert sel[0].models == ("mango", "image", "text")
    assert parse_variant("all") == ("all", {})
    assert parse_variant("imca+lica,blocks=2") == ("imca+lica,blocks=2", {"partitions": ["imca", "lica"], "blocks": 2})
    assert parse_variant({"name": "b3", "blocks": 3}) == ("b3", {"blocks": 3})


# ----------------------------------------------------------------------------------- end to end
def test_train_resume_evaluate_end_to_end(capsys, tmp_path, tiny_preset) -> None:
    out = tmp_path / "run"
    rc, stdout, err = run_cli(capsys, "train", "--task", "segmentation", "--model", "mango", "--preset", "quick",
                              "--out", str(out), "--quiet", "--device", "cpu")
    assert rc == 0, err
    res = json.loads(stdout)
    assert res["data"] == "generated stand-in" and res["dataset"] == "nyudv2"
    assert {"pixel_acc", "mean_acc", "miou", "loss"} <= set(res["metrics"])
    assert 0.0 <= res["metrics"]["miou"] <= 100.0
    assert (out / "checkpoints" / "epoch_001.pt").is_file() and (out / "best.pt").is_file()
    hist = json.loads((out / "history.json").read_text())
    assert len(hist) == 1 and "val_miou" in hist[0]
    assert (out / "history.csv").is_file() and (out / "curves.png").is_file()
    assert json.loads((out / "metrics.json").read_text())["spec"]["model_config"]["fusion"] == "mango"
    assert not list(out.rglob("*.tmp"))
    # running again into the same folder without --resume is refused
    rc, _, err = run_cli(capsys, "train", "--task", "segmentation", "--model", "mango", "--preset", "quick",
                         "--out", str(out), "--quiet", "--device", "cpu")
    assert rc == 2 and "--resume" in err
    # --resume with more epochs continues at epoch 2
    rc, stdout, err = run_cli(capsys, "train", "--task", "segmentation", "--model", "mango", "--preset", "quick",
                              "--out", str(out), "--quiet", "--device", "cpu", "--resume", "--epochs", "2")
    assert rc == 0, err
    assert [r["epoch"] for r in json.loads((out / "history.json").read_text())] == [1, 2]
    # evaluate rebuilds the model from the checkpoint and reproduces the final validation metrics
    rc, stdout, err = run_cli(capsys, "evaluate", "--checkpoint", str(out / "checkpoints" / "epoch_002.pt"),
                              "--device", "cpu", "--out", str(tmp_path / "eval.json"))
    assert rc == 0, err
    ev = json.loads(stdout)
    last = json.loads((out / "history.json").read_text())[-1]
    assert ev["epoch"] == 2 and ev["split"] == "val"
    assert ev["metrics"]["miou"] == pytest.approx(last["val_miou"], abs=1e-9)
    assert json.loads((tmp_path / "eval.json").read_text())["metrics"] == ev["metrics"]
    rc, _, err = run_cli(capsys, "evaluate", "--checkpoint", str(out), "--task", "genre")
    assert rc == 2 and "not 'genre'" in err


@pytest.mark.slow
def test_reproduce_tiny_writes_results(capsys, tmp_path, tiny_preset) -> None:
    out = tmp_path / "rep"
    rc, stdout, err = run_cli(capsys, "reproduce", "--preset", "quick", "--out", str(out), "--quiet", "--device", "cpu",
                              "--models", "mango", "text", "--pairs", "rgb_edge_to_depth",
                              "shade_texture_to_rgb")
    assert rc == 0, err
    res = json.loads((out / "results.json").read_text())
    assert res["preset"] == "quick" and res["device"].startswith("cpu") and res["wall_time_s"] > 0
    assert set(res["results"]) == {"segmentation/nyudv2", "translation/rgb_edge_to_depth",
                                   "translation/shade_texture_to_rgb", "genre/mmimdb"}
    seg = res["results"]["segmentation/nyudv2"]
    assert seg["data"] == "generated stand-in" and set(seg["models"]) == {"mango"}
    assert 0 <= seg["models"]["mango"]["miou"] <= 100
    rgb = res["results"]["translation/shade_texture_to_rgb"]["models"]["mango"]
    assert {"fid_proxy", "kid_x100_proxy", "mae_x10", "rmse_x10"} <= set(rgb)
    assert "fid_proxy" not in res["results"]["translation/rgb_edge_to_depth"]["models"]["mango"]
    assert {"micro_f1", "macro_f1"} <= set(res["results"]["genre/mmimdb"]["models"]["text"])
    md = (out / "results.md").read_text()
    for needle in ("Table 1", "Table 2", "Table 3", "paper (as printed)", "81.5", "39.61 / 0.77", "71.7",
                   "generated stand-in NYUDv2", "(proxy)", "mango_lite (quick)"):
        assert needle in md, needle
    for f in res["figures"]:
        assert (out / f).is_file()
    assert not list(out.rglob("*.tmp"))
    # --resume keeps the finished runs (nothing retrained: the histories are untouched)
    before = (out / "runs/segmentation/nyudv2/mango/history.json").stat().st_mtime_ns
    rc, _, err = run_cli(capsys, "reproduce", "--preset", "quick", "--out", str(out), "--quiet", "--device", "cpu",
                         "--tasks", "segmentation", "--models", "mango", "--resume")
    assert rc == 0, err
    assert (out / "runs/segmentation/nyudv2/mango/history.json").stat().st_mtime_ns == before
    # ... unless the finished run's model was built with another configuration (an older mango_lite):
    # then it is retrained, never reported under the current model
    mpath = out / "runs/segmentation/nyudv2/mango/metrics.json"
    stored = json.loads(mpath.read_text())
    stored["spec"]["model_config"]["flow_hidden"] = 999
    mpath.write_text(json.dumps(stored))
    rc, _, err = run_cli(capsys, "reproduce", "--preset", "quick", "--out", str(out), "--quiet", "--device", "cpu",
                         "--tasks", "segmentation", "--models", "mango", "--resume")
    assert rc == 0, err
    assert (out / "runs/segmentation/nyudv2/mango/history.json").stat().st_mtime_ns != before
    assert json.loads(mpath.read_text())["spec"]["model_config"]["flow_hidden"] != 999


def test_ablation_tiny(tmp_path, tiny_preset) -> None:
    from mango_lite.training import run_ablation

    rep = run_ablation("genre", ["mmca", "blocks=2"], "quick", tmp_path / "abl", device="cpu", progress=False)
    assert set(rep["variants"]) == {"mmca", "blocks=2"}
    assert rep["variants"]["blocks=2"]["params"] > rep["variants"]["mmca"]["params"]
    assert all("micro_f1" in v["metrics"] for v in rep["variants"].values())
    assert json.loads((tmp_path / "abl" / "ablation.json").read_text())["metric"] == "macro_f1"  # the headline
    assert (tmp_path / "abl" / "ablation.md").is_file()
    cfg = ckpt.load_checkpoint(tmp_path / "abl" / "runs" / "mmca")["spec"]["model_config"]
    assert cfg["partitions"] == ("mmca",) or cfg["partitions"] == ["mmca"]


def test_ablation_in_two_workers_gives_the_numbers_of_one_process(tmp_path, tiny_preset) -> None:
    """Variants trained at once in worker processes: the same metrics, in the variants' order."""
    from mango_lite.training import run_ablation

    kw = dict(device="cpu", progress=False)
    one = run_ablation("genre", ["blocks=2", "mmca"], "quick", tmp_path / "one", jobs=1, **kw)
    two = run_ablation("genre", ["blocks=2", "mmca"], "quick", tmp_path / "two", jobs=2, **kw)
    assert list(two["variants"]) == ["blocks=2", "mmca"]
    for v in ("blocks=2", "mmca"):
        assert one["variants"][v]["metrics"]["micro_f1"] == pytest.approx(two["variants"][v]["metrics"]["micro_f1"],
                                                                          abs=1e-9), v
        assert one["variants"][v]["params"] == two["variants"][v]["params"]
    assert list(json.loads((tmp_path / "two" / "ablation.json").read_text())["variants"]) == ["blocks=2", "mmca"]
    assert (tmp_path / "two" / "runs" / "mmca" / "train.log").is_file()


def test_seed_summary_combines_reproductions() -> None:
    from mango_lite.errors import MangoLiteError
    from mango_lite.training.reproduce import seed_summary, seed_summary_markdown

    def res(seed, mango, concat, extra=True):
        models = {"mango": {"miou": mango}, "concat": {"miou": concat}}
        if extra:
            models["rgb"] = {"miou": 1.0}
        return {"preset": "cpu", "seed": seed, "results": {
            "segmentation/nyudv2": {"task": "segmentation", "models": models},
            "genre/mmimdb": {"task": "genre", "models": {"mango": {"macro_f1": 10.0 + seed}}}}}

    s = seed_summary([res(0, 20.0, 21.0), res(1, 22.0, 21.0, extra=False), res(2, 24.0, 21.0, extra=False)])
    g = s["groups"]["segmentation/nyudv2"]
    assert set(g["models"]) == {"mango", "concat"}  # rgb is missing from seeds 1 and 2
    assert g["models"]["mango"]["mean"] == pytest.approx(22.0) and g["models"]["mango"]["std"] == pytest.approx(2.0)
    assert g["models"]["concat"]["std"] == 0.0
    assert [r[0] for r in g["rank_by_seed"]] == ["concat", "mango", "mango"]
    md = seed_summary_markdown(s)
    assert "| mango | 22.00 ± 2.00 | 20.00 / 22.00 / 24.00 | 2 of 3 | 1 of 3 | 2 of 3 |" in md
    assert "| concat | 21.00 ± 0.00 | 21.00 / 21.00 / 21.00 | 1 of 3 | 2 of 3 | - |" in md
    assert s["groups"]["genre/mmimdb"]["models"]["mango"]["values"] == [10.0, 11.0, 12.0]
    with pytest.raises(MangoLiteError, match="seeds must differ"):
        seed_summary([res(0, 1, 1), res(0, 1, 1)])
    with pytest.raises(MangoLiteError, match="different presets"):
        seed_summary([res(0, 1, 1), {**res(1, 1, 1), "preset": "quick"}])


def test_seeds_command(capsys, tmp_path) -> None:
    for seed, v in ((0, 20.0), (1, 22.0)):
        d = tmp_path / f"s{seed}"
        d.mkdir()
        (d / "results.json").write_text(json.dumps({"preset": "cpu", "seed": seed, "results": {
            "segmentation/nyudv2": {"task": "segmentation", "models": {"mango": {"miou": v}}}}}))
    rc, stdout, err = run_cli(capsys, "seeds", str(tmp_path / "s0"), str(tmp_path / "s1" / "results.json"),
                              "--out", str(tmp_path / "sum"))
    assert rc == 0, err
    assert "| mango | 21.00 ± 1.41 | 20.00 / 22.00 | 2 of 2 |" in stdout
    assert json.loads((tmp_path / "sum" / "seeds.json").read_text())["seeds"] == [0, 1]
    rc, _, err = run_cli(capsys, "seeds", str(tmp_path / "nothing"))
    assert rc == 2 and "results.json" in err


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sp in action.choices.items():
                yield name, sp
                yield from ((f"{name} {n}", p) for n, p in _subparsers(sp))


def test_every_option_and_subcommand_has_help_and_shows_its_default_once() -> None:
    import argparse

    from mango_lite.cli import build_parser

    parser = build_parser()
    seen = 0
    for name, sp in _subparsers(parser):
        seen += 1
        assert sp.description or sp.format_usage(), name
        for action in sp._actions:
            if action.dest == "help" or isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{name}: {'/'.join(action.option_strings) or action.dest} has no help"
        text = sp.format_help()
        for line in text.split("\n  -"):
            assert line.count("(default") <= 1, f"{name}: default shown twice in {line!r}"
    assert seen >= 10


def test_program_name_follows_how_it_was_started() -> None:
    from mango_lite.cli import program_name

    assert program_name("/venv/bin/mango-lite") == "mango-lite"
    assert program_name("/x/mango_lite/__main__.py") == "python -m mango_lite"


def test_reproduce_plan_partial_results_refusal_and_resume(tmp_path, tiny_preset) -> None:
    """The plan comes first; an interrupted reproduction leaves results.md marked partial; rerunning
    into the folder is refused without --resume/--overwrite; --resume finishes it."""
    rp = importlib.import_module("mango_lite.training.reproduce")  # the package exports a function of that name
    executor = importlib.import_module("mango_lite.training.executor")  # where every launcher's runs start

    out, logs = tmp_path / "rep", []
    orig = executor.train_task
    calls = []

    def interrupt_second(*args, **kw):
        calls.append(args[1])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return orig(*args, **kw)

    kw = dict(tasks=["genre"], models=["text", "image"], device="cpu", progress=False, log=logs.append, jobs=1)
    executor.train_task = interrupt_second
    try:
        with pytest.raises(KeyboardInterrupt):
            rp.reproduce("quick", out, **kw)
    finally:
        executor.train_task = orig
    assert logs[0].startswith("reproduce: preset quick, device cpu") and "2 runs in 1 groups" in logs[0]
    assert any("estimated time:" in line for line in logs[:4])
    res = json.loads((out / "results.json").read_text())
    assert list(res["results"]["genre/mmimdb"]["models"]) == ["image"] and res["runs_planned"] == 2
    md = (out / "results.md").read_text()
    assert "Partial results**: 1 of 2 planned runs" in md
    with pytest.raises(MangoLiteError, match="--resume .*--overwrite"):
        rp.reproduce("quick", out, **kw)
    res = rp.reproduce("quick", out, resume=True, **kw)
    assert list(res["results"]["genre/mmimdb"]["models"]) == ["image", "text"] and res["finished"]
    assert "Partial" not in (out / "results.md").read_text()
    res = rp.reproduce("quick", out, overwrite=True, **{**kw, "models": ["text"]})
    assert list(res["results"]["genre/mmimdb"]["models"]) == ["text"]


def test_reproduce_data_root_reports_each_dataset_and_refuses_an_empty_one(tmp_path, tiny_preset) -> None:
    rp = importlib.import_module("mango_lite.training.reproduce")  # the package exports a function of that name

    empty = tmp_path / "datasets"
    empty.mkdir()
    kw = dict(tasks=["genre"], models=["text"], device="cpu", progress=False)
    with pytest.raises(MangoLiteError, match="holds none of mmimdb/.*--allow-stand-ins"):
        rp.reproduce("quick", tmp_path / "a", data_root=empty, **kw)
    logs: list[str] = []
    res = rp.reproduce("quick", tmp_path / "b", data_root=empty, allow_stand_ins=True, log=logs.append, **kw)
    assert any("mmimdb: no " in line and "a generated stand-in will be used" in line for line in logs)
    assert res["results"]["genre/mmimdb"]["data"] == "generated stand-in"


def test_reproduce_in_two_workers_gives_the_numbers_of_one_process(tmp_path, tiny_preset) -> None:
    """Runs in spawned workers (one thread each) are seeded by the run alone: the same metrics as one
    after another in this process, and each worker's log lands in its run folder."""
    rp = importlib.import_module("mango_lite.training.reproduce")
    kw = dict(tasks=["genre"], models=["mango", "text"], device="cpu", progress=False, verbose=False)
    torch.set_num_threads(1)
    one = rp.reproduce(TINY, tmp_path / "one", jobs=1, **kw)
    two = rp.reproduce(TINY, tmp_path / "two", jobs=2, **kw)
    a, b = one["results"]["genre/mmimdb"]["models"], two["results"]["genre/mmimdb"]["models"]
    assert list(b) == ["mango", "text"]
    for m in ("mango", "text"):
        assert a[m]["macro_f1"] == pytest.approx(b[m]["macro_f1"], abs=1e-9), m
        assert a[m]["loss"] == pytest.approx(b[m]["loss"], rel=1e-6), m
    assert "epoch 1/1" in (tmp_path / "two/runs/genre/mmimdb/mango/train.log").read_text()
    assert two["finished"] and (tmp_path / "two/results.md").is_file()


def test_default_jobs_uses_the_cores_on_cpu_and_one_gpu_run(monkeypatch) -> None:
    from mango_lite.cli import apply_environment, build_parser
    from mango_lite.training.executor import default_jobs

    monkeypatch.setenv("MANGO_LITE_JOBS", "3")  # read by the command line, not by the library
    assert 1 <= default_jobs("cpu") <= (os.cpu_count() or 1)
    assert default_jobs("cuda") == 1
    assert apply_environment(build_parser().parse_args(["reproduce"])).jobs == 3
    assert apply_environment(build_parser().parse_args(["reproduce", "--jobs", "1"])).jobs == 1
    monkeypatch.delenv("MANGO_LITE_JOBS")
    assert apply_environment(build_parser().parse_args(["reproduce"])).jobs is None


def test_reproduce_through_submitit_local_jobs_matches_one_process(tmp_path, tiny_preset) -> None:
    """The cluster path (a submitit job array; its local executor here) gives the numbers of a run in
    this process and records every job's result."""
    pytest.importorskip("submitit")
    rp = importlib.import_module("mango_lite.training.reproduce")
    kw = dict(tasks=["genre"], models=["text", "image"], device="cpu", progress=False, verbose=False)
    torch.set_num_threads(1)
    one = rp.reproduce(TINY, tmp_path / "one", jobs=1, **kw)
    sub = rp.reproduce(TINY, tmp_path / "sub", cluster={"executor": "local", "timeout_min": 10}, **kw)
    a, b = one["results"]["genre/mmimdb"]["models"], sub["results"]["genre/mmimdb"]["models"]
    assert list(b) == ["image", "text"]
    for m in ("text", "image"):
        assert a[m]["macro_f1"] == pytest.approx(b[m]["macro_f1"], abs=1e-9), m
    assert list((tmp_path / "sub" / "submitit").iterdir())  # the jobs' pickles and logs
    with pytest.raises(MangoLiteError, match="'slurm' or 'local'"):
        rp.reproduce(TINY, tmp_path / "bad", cluster={"executor": "pbs"}, overwrite=True, **kw)


def test_plan_states_the_time_one_after_another_and_with_workers(tmp_path):
    import importlib

    import torch

    from mango_lite.presets import get_preset

    rp = importlib.import_module("mango_lite.training.reproduce")  # the module (the package exports the function)
    groups = rp.plan_runs("quick", tasks=["genre"])
    lines = rp._plan_lines(get_preset("quick"), torch.device("cpu"), 0, tmp_path, groups, (600.0, "cpu (2 cores)"), 2)
    assert "estimated time: 10 min one run after another, about 5 min in 2 worker processes" in lines[-1]
    one = rp._plan_lines(get_preset("quick"), torch.device("cpu"), 0, tmp_path, groups, (600.0, "cpu (2 cores)"), 1)
    assert "worker processes" not in one[-1]


def test_checkpoint_flow_reaches_the_run_options_of_train_and_reproduce(capsys, tmp_path, monkeypatch) -> None:
    """``--checkpoint-flow`` on ``train`` and ``reproduce``: the runs' RunOptions carry it (off without the flag)."""
    reproduce_module = importlib.import_module("mango_lite.training.reproduce")  # the package exports a function so named
    tasks_module = importlib.import_module("mango_lite.training.tasks")

    seen: list[tuple[str, bool]] = []

    class Stop(Exception):
        pass

    def fake_train(spec, out, options=None, **kwargs):
        seen.append(("train", options.checkpoint_flow))
        raise Stop

    def fake_reproduce(*args, checkpoint_flow=False, **kwargs):
        seen.append(("reproduce", checkpoint_flow))
        raise Stop

    monkeypatch.setattr(tasks_module, "train_task", fake_train)
    monkeypatch.setattr(reproduce_module, "reproduce", fake_reproduce)
    for flag in ([], ["--checkpoint-flow"]):
        with pytest.raises(Stop):
            main(["train", "--task", "segmentation", "--model", "mango", "--out", str(tmp_path / "t"), *flag])
        with pytest.raises(Stop):
            main(["reproduce", "--out", str(tmp_path / "r"), *flag])
    assert seen == [("train", False), ("reproduce", False), ("train", True), ("reproduce", True)]
