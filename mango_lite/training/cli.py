"""``train``, ``evaluate``, ``reproduce`` and ``ablate`` subcommands of ``python -m mango_lite``.

Progress and per-epoch lines go to stderr; the final metrics are printed to stdout as JSON.
Bad arguments exit with code 2 and one ``error: ...`` line (argparse for syntax, MangoLiteError for
names and data that do not fit).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..environment import preset_name
from ..presets import IMAGE_ENCODERS, PRESET_NAMES, Preset, get_preset
from .tasks import PAIRS, SEGMENTATION_DATASETS, TASK_NAMES


def add_checkpoint_flow_argument(p: argparse.ArgumentParser) -> None:
    """``--checkpoint-flow`` (:class:`~mango_lite.training.RunOptions`'s ``checkpoint_flow``)."""
    p.add_argument("--checkpoint-flow", action="store_true",
                   help="MANGO: recompute the flow's activations in the backward instead of keeping them (less "
                        "memory, a slower step, the same numbers)")


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str))


def _progress(args: argparse.Namespace) -> bool | None:
    return False if getattr(args, "quiet", False) else None


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default once: not when its help already says it, nor when there is none."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, argparse.SUPPRESS) or not text:
            return text
        return super()._get_help_string(action)


def add_encoder_arguments(p: argparse.ArgumentParser) -> None:
    """Encoder choice: from scratch, or pretrained weights the user has on disk (never downloaded)."""
    g = p.add_argument_group("encoders (pretrained weights are read from local paths, never downloaded)")
    g.add_argument("--encoder", choices=IMAGE_ENCODERS, default=None,
                   help="image encoders: conv (trained from scratch), segformer (MiT, a local transformers "
                        "folder), timm (a timm model with a local weights file); default: the preset's "
                        "(segformer at --preset paper, conv otherwise)")
    g.add_argument("--encoder-weights", default=None,
                   help="segformer: folder with config.json and the weights (e.g. a copy of nvidia/mit-b2); "
                        "timm: a state_dict file")
    g.add_argument("--encoder-name", default=None, help="timm model name, e.g. mit_b2 or resnet50")
    g.add_argument("--text-model", default=None,
                   help="genre plots: a local Hugging Face model folder with its tokenizer (e.g. a copy of "
                        "sentence-transformers/all-MiniLM-L6-v2), mean-pooled and frozen")
    g.add_argument("--text-finetune", action="store_true", help="train the --text-model too (default: frozen)")


def preset_with_encoders(name: str, args: argparse.Namespace) -> Preset:
    """The preset ``name`` with the encoder options given on the command line."""
    if args.text_finetune and not args.text_model:
        from ..errors import MangoLiteError

        raise MangoLiteError("--text-finetune needs --text-model, the local text model to fine-tune")
    return get_preset(name).with_encoders(
        encoder=args.encoder, encoder_weights=args.encoder_weights, encoder_name=args.encoder_name,
        text_model=args.text_model, text_finetune=True if args.text_finetune else None,
    )


def _add_study_arguments(p: argparse.ArgumentParser) -> None:
    """The options every pre-registered study's command shares (registration, select-weights)."""
    p.add_argument("--jobs", type=int, default=None, help="runs at once (default: one per core)")
    p.add_argument("--max-runs", type=int, default=None, help="train at most N runs now (the rest on a later call)")
    p.add_argument("--data-cache", default=None, help="where the stand-ins are generated (default data/generated)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    p.add_argument("--summarize-only", action="store_true", help="train nothing; summarise the finished runs")


def add_training_parsers(sub: Any) -> None:
    """Register the training subcommands on the dispatcher's ``subparsers`` object."""
    for add in (_add_train_parser, _add_evaluate_parser, _add_reproduce_parser, _add_ablate_parser,
                _add_registration_parser, _add_select_weights_parser, _add_select_defaults_parser,
                _add_mechanisms_parser, _add_seeds_parser, _add_params_parser, _add_gpu_window_parser):
        add(sub, HelpFormatter)


def _add_train_parser(sub: Any, fmt: Any) -> None:
    p = sub.add_parser("train", help="train one model on one task", formatter_class=fmt,
                       description="Train one model (MANGO, a fusion baseline or a unimodal model) on one task. "
                                   "Without --data the generated stand-in is used.")
    p.add_argument("--task", required=True, choices=TASK_NAMES, help="which task to train on")
    p.add_argument("--model", required=True,
                   help="mango, concat, tokenfusion, crossattn, a unimodal model: rgb/depth (segmentation), "
                        "an input domain of the pair (translation), image/text (genre), or a MANGO control: "
                        "mango-noattn (no attention), mango-nonll (no likelihood term), mango-paper (A = S + I), "
                        "mango-nll-encoders (the likelihood's gradient reaches the encoders too)")
    p.add_argument("--preset", choices=PRESET_NAMES, default=None,
                   help="run size (default: $MANGO_LITE_PRESET, quick under CI, gpu with CUDA, else cpu)")
    p.add_argument("--data", default=None, help="real (or generated) dataset folder; verified before training")
    p.add_argument("--dataset", choices=SEGMENTATION_DATASETS, default=None, help="segmentation dataset")
    p.add_argument("--pair", default=None, help=f"translation pair, one of {tuple(PAIRS)}")
    p.add_argument("--out", required=True, help="run folder (checkpoints, history, curves, metrics.json)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--overwrite", action="store_true", help="start over even if --out holds checkpoints")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")
    p.add_argument("--seed", type=int, default=0, help="training seed (initialisation, data order, augmentation)")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--batch-size", type=int, default=None, help="override the preset's batch size")
    p.add_argument("--lr", type=float, default=None, help="override the preset's learning rate")
    p.add_argument("--data-cache", default=None, help="where stand-ins are generated (default OUT/data)")
    p.add_argument("--sensor-baseline", type=float, default=None,
                   help="stand-ins of segmentation (NYUDv2) and translation: metres between the cameras of the two "
                        "inputs, misregistering the second by its disparity f*b/z (default 0: pixel-aligned)")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA (full float32)")
    add_checkpoint_flow_argument(p)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_encoder_arguments(p)
    p.set_defaults(func=cmd_train)


def _add_evaluate_parser(sub: Any, fmt: Any) -> None:
    p = sub.add_parser("evaluate", help="evaluate a checkpoint", formatter_class=fmt,
                       description="Rebuild the model stored in a checkpoint and evaluate it.")
    p.add_argument("--checkpoint", required=True, help="checkpoint file or run folder (best.pt / latest epoch)")
    p.add_argument("--task", choices=TASK_NAMES, default=None, help="check that the checkpoint is of this task")
    p.add_argument("--data", default=None, help="dataset folder (default: the data the model was trained on)")
    p.add_argument("--split", choices=("train", "selection", "val", "test"), default=None,
                   help="default: the reported split (the stand-ins' val, MM-IMDb's test); selection: the held-out one")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")
    p.add_argument("--batch-size", type=int, default=None, help="evaluation batch size (default: the preset's)")
    p.add_argument("--out", default=None, help="also write the result as JSON to this file")
    p.set_defaults(func=cmd_evaluate)


def _add_reproduce_parser(sub: Any, fmt: Any) -> None:
    p = sub.add_parser("reproduce", help="train MANGO and the baselines on all tasks; write results.md",
                       formatter_class=fmt,
                       description="Generate stand-in data (unless --data-root has the real datasets), train MANGO "
                                   "and the baselines on segmentation, translation and genre classification, and "
                                   "write results.json, results.md (beside the paper's Tables 1-3) and figures.")
    p.add_argument("--preset", choices=PRESET_NAMES, default=None,
                   help="run size (default: $MANGO_LITE_PRESET, quick under CI, gpu with CUDA, else cpu); "
                        "--preset quick takes a few minutes on 2 cores, cpu about an hour")
    p.add_argument("--out", default=None, help="output folder (default results/<preset>)")
    p.add_argument("--data-root", default=None,
                   help="folder with real datasets in nyudv2/ sunrgbd/ taskonomy/ mmimdb/ (each missing one is "
                        "reported and replaced by a generated stand-in; default: stand-ins only)")
    p.add_argument("--allow-stand-ins", action="store_true",
                   help="accept a --data-root that holds none of the datasets (train on stand-ins)")
    p.add_argument("--data-cache", default=None, help="where stand-ins are generated (default OUT/data)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")
    p.add_argument("--seed", type=int, default=0, help="training seed of every run")
    p.add_argument("--tasks", nargs="+", choices=TASK_NAMES, default=None, help="restrict to these tasks (default: all)")
    p.add_argument("--models", nargs="+", default=None,
                   help="restrict to these model names ('unimodal' = both unimodal models, 'controls' = MANGO's "
                        "controls mango-noattn, mango-nonll, mango-paper, mango-nll-encoders, which run only when named)")
    p.add_argument("--pairs", nargs="+", default=None, help="translation pairs (default: by preset)")
    p.add_argument("--resume", action="store_true", help="keep finished runs, continue unfinished ones")
    p.add_argument("--overwrite", action="store_true", help="start over in an --out that holds finished runs")
    p.add_argument("--jobs", type=int, default=None,
                   help="runs trained at once in worker processes, one torch thread each (default: every core "
                        "as memory allows on a CPU machine, 1 with a GPU; $MANGO_LITE_JOBS overrides)")
    p.add_argument("--cluster", choices=("slurm", "local"), default=None,
                   help="submit the runs as a job array through submitit instead (slurm; local = submitit's "
                        "local executor, to try it on this machine) and collect the results here")
    p.add_argument("--slurm-partition", default=None, help="Slurm partition of the jobs")
    p.add_argument("--job-minutes", type=int, default=240, help="time limit of each cluster job")
    p.add_argument("--gpus-per-job", type=int, default=0, help="GPUs per cluster job")
    p.add_argument("--cpus-per-job", type=int, default=2, help="CPU cores per cluster job")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on CUDA (full float32)")
    add_checkpoint_flow_argument(p)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_encoder_arguments(p)
    p.set_defaults(func=cmd_reproduce)


def _add_ablate_parser(sub: Any, fmt: Any) -> None:
    p = sub.add_parser("ablate", help="MANGO ablation: partitions / number of blocks", formatter_class=fmt,
                       description="Train MANGO with subsets of its ICA partitions or other block counts on one task "
                                   "and write ablation.json and ablation.md.")
    p.add_argument("--task", required=True, choices=TASK_NAMES, help="task to ablate on")
    p.add_argument("--variants", nargs="+", default=["mmca", "imca", "lica", "all"],
                   help="partition subsets ('imca+lica'), 'all', 'blocks=N', or 'mmca,blocks=2'")
    p.add_argument("--preset", choices=PRESET_NAMES, default=None, help="run size (default: as for train)")
    p.add_argument("--out", required=True, help="folder for ablation.json, ablation.md and the runs")
    p.add_argument("--data", default=None, help="real dataset folder (default: generated stand-in)")
    p.add_argument("--dataset", choices=SEGMENTATION_DATASETS, default=None, help="segmentation dataset")
    p.add_argument("--pair", default=None, help=f"translation pair, one of {tuple(PAIRS)}")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best available)")
    p.add_argument("--seed", type=int, default=0, help="training seed of every variant")
    p.add_argument("--epochs", type=int, default=None, help="override the preset's epochs")
    p.add_argument("--jobs", type=int, default=None,
                   help="variants trained at once in worker processes, one torch thread each (default: every core "
                        "as memory allows on a CPU machine, 1 with a GPU; $MANGO_LITE_JOBS overrides)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_ablate)


def _add_registration_parser(sub: Any, fmt: Any) -> None:
    from .registration import STUDY_TASKS

    p = sub.add_parser("registration", help="the registration studies: attention's gain as one modality is misregistered",
                       formatter_class=fmt,
                       description="Trains MANGO, its no-attention control and the fusion baselines on stand-ins whose "
                                   "second modality is seen from a displaced camera, several seeds, as the study's "
                                   "PROTOCOL.md fixes: segmentation (depth displaced; median disparity 0, 2, 4, 8 px at "
                                   "64 px; results/registration) or translation (Shade+Texture -> RGB, texture displaced; "
                                   "0 and 8 px; results/registration-translation). Resumable (finished runs are kept). "
                                   "Then writes summary.json, summary.md and dose_response.png.")
    # a study by its full key ("translation/shade_texture_to_rgb") or by its task's name alone
    p.add_argument("--task", default="segmentation", choices=sorted(set(STUDY_TASKS) | {t.task for t in STUDY_TASKS.values()}),
                   help="which study: segmentation (NYUDv2, the depth misregistered; results/registration) or "
                        "translation/shade_texture_to_rgb (Taskonomy, the texture misregistered; "
                        "results/registration-translation)")
    p.add_argument("--out", default=None, help="study folder (plan.json, runs/, summary.*; default: the task's, "
                                               "results/registration or results/registration-translation)")
    p.add_argument("--preset", choices=PRESET_NAMES, default=None, help="run size (default: as for train)")
    p.add_argument("--models", nargs="+", default=None, help="restrict to these models (default: the protocol's)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the protocol's)")
    p.add_argument("--attention", action="store_true",
                   help="also measure where MANGO's trained attention looks at each level (attention.json; needs the "
                        "runs' checkpoints, so run it where the study was trained)")
    _add_study_arguments(p)
    p.set_defaults(func=cmd_registration)


def _add_select_weights_parser(sub: Any, fmt: Any) -> None:
    p = sub.add_parser("select-weights", help="choose each task's NLL weight on the selection split",
                       formatter_class=fmt,
                       description="Trains MANGO at each candidate NLL weight on every task group with several seeds, "
                                   "a selection split held out of the training data, and chooses each task's weight "
                                   "from the selection split alone, as results/selection/PROTOCOL.md fixes; resumable. "
                                   "Then writes summary.json and summary.md (the test split's numbers beside the "
                                   "choice, deciding nothing).")
    p.add_argument("--out", default="results/selection", help="study folder (plan.json, runs/, summary.*)")
    p.add_argument("--preset", choices=PRESET_NAMES, default=None, help="run size (default: as for train)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the protocol's)")
    _add_study_arguments(p)
    p.set_defaults(func=cmd_select_weights)


def _add_select_defaults_parser(sub: Any, fmt: Any) -> None:
    p = sub.add_parser("select-defaults", help="re-check the ladder's MANGO defaults on the selection split",
                       formatter_class=fmt,
                       description="Stage 2 of results/selection/PROTOCOL.md: MANGO (segmentation) with each of the "
                                   "ladder's defaults switched off alone, several seeds, against stage 1's runs at the "
                                   "weight in use; a default is kept unless switching it off gives the better mean on "
                                   "the selection split (several switched off: their combination is trained too). "
                                   "Writes summary-defaults.json and summary-defaults.md; resumable.")
    p.add_argument("--out", default="results/selection", help="study folder (stage 1's runs are the reference)")
    p.add_argument("--preset", choices=PRESET_NAMES, default=None, help="run size (default: as for train)")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="seeds (default: the protocol's)")
    _add_study_arguments(p)
    p.set_defaults(func=cmd_select_defaults)


def _add_mechanisms_parser(sub: Any, fmt: Any) -> None:
    p = sub.add_parser("mechanisms", help="does each MANGO mechanism do work? ladder of changes / controls over seeds",
                       formatter_class=fmt,
                       description="'ladder': MANGO with the changes of the mechanisms study applied one at a time "
                                   "(each row keeps the previous ones). 'controls': mango against mango-noattn (no "
                                   "attention), mango-nonll (no likelihood term), mango-nll-encoders (the paper's "
                                   "joint objective: the likelihood also trains the encoders) and concat over "
                                   "several seeds. "
                                   "Writes mechanisms.json and mechanisms.md: the task metric, the flow's validation "
                                   "bits/dim beside the identity baseline, gamma and the training step time.")
    p.add_argument("--task", choices=TASK_NAMES, default=None, help="task of a ladder or controls study")
    p.add_argument("--study", choices=("ladder", "controls", "density"), default="controls",
                   help="which variants to train ('density': notebook 04's density model with and without "
                        "attention, no task)")
    p.add_argument("--models", nargs="+", default=["mango", "mango-noattn", "mango-nonll", "mango-nll-encoders", "concat"],
                   help="models of the controls study")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    p.add_argument("--jobs", type=int, default=None,
                   help="density study: fits at once, one worker process each (default: one per core)")
    p.add_argument("--preset", choices=PRESET_NAMES, default=None, help="run size (default: as for train)")
    p.add_argument("--dataset", choices=SEGMENTATION_DATASETS, default=None, help="segmentation dataset")
    p.add_argument("--pair", default=None, help=f"translation pair, one of {tuple(PAIRS)}")
    p.add_argument("--data", default=None, help="real dataset folder (default: generated stand-in)")
    p.add_argument("--data-cache", default=None, help="where stand-ins are generated (default OUT/data)")
    p.add_argument("--out", required=True, help="folder for mechanisms.json, mechanisms.md and the runs")
    p.add_argument("--merge", nargs="+", default=None, metavar="FOLDER",
                   help="instead of training, merge finished studies (same task, data and preset) into --out")
    p.add_argument("--title", default=None, help="title of a merged study's tables")
    p.add_argument("--controls", nargs="+", default=["mango-noattn", "mango-nonll", "mango-nll-encoders"],
                   help="with --goals: the rows MANGO is compared with (each must be in every study)")
    p.add_argument("--effective-params", action="store_true",
                   help="instead of training, add each row's parameters that receive a gradient to --out's finished "
                        "study (one backward pass per row) and rewrite its mechanisms.md")
    p.add_argument("--capacity", action="store_true",
                   help="instead of training, read --out's finished study: mango against mango-noattn and against "
                        "mango-noattn-h408 (no attention, as many parameters receiving a gradient) -> --out/capacity.json "
                        "and .md")
    p.add_argument("--pooled", action="store_true",
                   help="with --capacity: the study pools seeds of readings already seen; shown without a verdict")
    p.add_argument("--replicate", default=None, metavar="FIRST",
                   help="instead of training, read --out's finished study as a replication on new seeds of the study "
                        "in FIRST: mango against mango-noattn in each, the verdict from the replication alone "
                        "-> --out/replication.json and .md")
    p.add_argument("--goals", nargs="+", default=None, metavar="FOLDER",
                   help="instead of training, tally the goals over finished control studies (one per task group) "
                        "into --out/goals.json and goals.md")
    p.set_defaults(func=cmd_mechanisms)


def _add_seeds_parser(sub: Any, fmt: Any) -> None:
    p = sub.add_parser("seeds", help="combine reproductions run with different --seed: mean ± std per model",
                       formatter_class=fmt)
    p.add_argument("results", nargs="+", help="results.json files (or their folders), one per seed")
    p.add_argument("--out", default=None, help="write seeds.json and seeds.md into this folder")
    p.set_defaults(func=cmd_seeds)


def _add_params_parser(sub: Any, fmt: Any) -> None:
    p = sub.add_parser("params", help="parameter counts of MANGO and the fusion baselines at a preset",
                       formatter_class=fmt,
                       description="Build MANGO and the fused baselines as train builds them at --preset and print "
                                   "their trainable parameters (encoders, fusion, head) beside the paper's Table 8 "
                                   "claim. Encoders that need weights you did not give are counted from scratch.")
    p.add_argument("--preset", choices=PRESET_NAMES, default="paper", help="run size whose models are counted")
    p.add_argument("--tasks", nargs="+", choices=TASK_NAMES, default=None, help="restrict to these tasks (default: all)")
    p.add_argument("--out", default=None, help="also write params.json and params.md into this folder")
    add_encoder_arguments(p)
    p.set_defaults(func=cmd_params)


def _add_gpu_window_parser(sub: Any, fmt: Any) -> None:
    p = sub.add_parser("gpu-window", help="everything a short GPU window should measure, within a time budget",
                       formatter_class=fmt,
                       description="Flow checks on the GPU (float32 and bf16), ICA against fused attention at "
                                   "256-4096 tokens, then a time-boxed reproduction of MANGO, its controls and the "
                                   "fused baselines; writes OUT/gpu_window.json and .md after every step. Needs only "
                                   "torch (install with pip install --no-deps -e .).")
    p.add_argument("--out", default="results/gpu", help="folder for gpu_window.json/.md and the reproduction")
    p.add_argument("--minutes", type=float, default=9.0, help="time budget of the whole window")
    p.add_argument("--preset", choices=PRESET_NAMES, default="gpu", help="preset of the time-boxed reproduction")
    p.add_argument("--device", default=None, help="device (default: cuda)")
    p.add_argument("--dry-run", action="store_true",
                   help="rehearse on a machine without a GPU: the same steps on the CPU at tiny sizes")
    p.add_argument("--no-reproduction", dest="reproduction", action="store_false",
                   help="leave out the time-boxed reproduction (the window's minutes go to other work)")
    p.set_defaults(func=cmd_gpu_window)


def cmd_train(args: argparse.Namespace) -> int:
    # validate names before any data is generated
    from ..tasks import get_task
    from .runspec import RunOptions, RunSpec
    from .tasks import resolve_model, resolve_pair, train_task

    has_pairs = get_task(args.task).has_pairs
    pair = resolve_pair(args.pair) if has_pairs else None
    if args.pair is not None and not has_pairs:
        from ..errors import MangoLiteError

        raise MangoLiteError(f"--pair applies to a task with pairs only (translation; got --task {args.task})")
    resolve_model(args.task, args.model, pair)
    preset = preset_with_encoders(args.preset or preset_name(), args)
    if args.sensor_baseline is not None:
        if not args.sensor_baseline >= 0 or args.data is not None:
            from ..errors import MangoLiteError

            raise MangoLiteError(f"--sensor-baseline: expected metres >= 0 for a generated stand-in (no --data), got "
                                 f"{args.sensor_baseline}" + (f" with --data {args.data}" if args.data else ""))
        preset = preset.with_overrides(sensor_baseline_m=float(args.sensor_baseline))
    cache = args.data_cache if args.data_cache is not None else Path(args.out) / "data"
    spec = RunSpec(args.task, args.model, preset, seed=args.seed, pair=pair, dataset=args.dataset, data_root=args.data,
                   epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, amp=not args.no_amp)
    from ..viz.plots import write_run_curves

    options = RunOptions(device=args.device, resume=args.resume, overwrite=args.overwrite, cache_dir=cache,
                         num_workers=args.workers, progress=_progress(args), checkpoint_flow=args.checkpoint_flow,
                         after_fit=(write_run_curves,))
    res = train_task(spec, args.out, options=options)
    from ..engine.distributed import state

    if not state().is_main:  # torchrun: rank 0 reports
        return 0
    _print_json({"task": res.task, "model": res.model, "dataset": res.dataset, "pair": res.pair,
                 "data": res.data["source"], "split": res.test_split, "metrics": res.metrics, "params": res.params,
                 "wall_time_s": round(res.wall_time_s, 2), "out": res.out_dir, "device": res.device})
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..errors import MangoLiteError
    from ..utils import atomic_write_json
    from .tasks import evaluate_checkpoint

    res = evaluate_checkpoint(args.checkpoint, data_root=args.data, split=args.split, device=args.device,
                              batch_size=args.batch_size)
    if args.task is not None and res["task"] != args.task:
        raise MangoLiteError(f"{res['checkpoint']}: is a {res['task']!r} checkpoint, not {args.task!r}")
    if args.out:
        atomic_write_json(args.out, res)
    _print_json(res)
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import reproduce

    preset = preset_with_encoders(args.preset or preset_name(), args)
    cluster = None
    if args.cluster:
        cluster = {"executor": args.cluster, "timeout_min": args.job_minutes}
        if args.cluster == "slurm":
            cluster.update(cpus_per_task=args.cpus_per_job, gpus_per_node=args.gpus_per_job)
            if args.slurm_partition:
                cluster["slurm_partition"] = args.slurm_partition
    res = reproduce(preset, args.out, data_root=args.data_root, cache_dir=args.data_cache, device=args.device,
                    seed=args.seed, tasks=args.tasks, models=args.models, pairs=args.pairs, resume=args.resume,
                    overwrite=args.overwrite, allow_stand_ins=args.allow_stand_ins, jobs=args.jobs, cluster=cluster,
                    amp=not args.no_amp, num_workers=args.workers, progress=_progress(args),
                    checkpoint_flow=args.checkpoint_flow)
    out = Path(args.out) if args.out else Path("results") / preset.name
    failed = [f"{k}:{m}" for k, e in res["results"].items() for m, v in e["models"].items() if "error" in v]
    print(f"wrote {out / 'results.json'} and {out / 'results.md'} in {res['wall_time_s']:.0f}s"
          + (f"; diverged runs: {failed}" if failed else ""))
    return 1 if failed else 0


def cmd_params(args: argparse.Namespace) -> int:
    from ..utils import atomic_write_json, atomic_write_text
    from .cost import parameter_counts, parameter_markdown

    counts = parameter_counts(preset_with_encoders(args.preset, args), args.tasks)
    text = parameter_markdown(counts)
    if args.out:
        out = Path(args.out)
        atomic_write_json(out / "params.json", counts)
        atomic_write_text(out / "params.md", text)
    print(text, end="")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from .reproduce import run_ablation

    res = run_ablation(args.task, args.variants, args.preset or preset_name(), args.out,
                       data_root=args.data, pair=args.pair, dataset=args.dataset, device=args.device,
                       seed=args.seed, epochs=args.epochs, jobs=args.jobs, progress=_progress(args), verbose=True)
    _print_json({n: v.get("metrics", {}).get(res["metric"], v.get("error")) for n, v in res["variants"].items()})
    return 0


def cmd_registration(args: argparse.Namespace) -> int:
    import sys

    from . import registration as reg

    study = reg.study_task(args.task)
    preset = args.preset or preset_name()
    models = tuple(args.models) if args.models else study.models
    seeds = tuple(args.seeds) if args.seeds else reg.SEEDS
    out = Path(args.out) if args.out else reg.default_folder(study)
    if not args.summarize_only:
        res = reg.run_study(out, preset, models, seeds, jobs=args.jobs, device=args.device, cache_dir=args.data_cache,
                            max_runs=args.max_runs, log=lambda m: print(m, file=sys.stderr), study=study)
        if res["failed"]:
            print(f"registration: {len(res['failed'])} runs failed: {sorted(res['failed'])}", file=sys.stderr)
    elif not (out / "plan.json").is_file():
        from ..errors import MangoLiteError

        raise MangoLiteError(f"registration --summarize-only: {out / 'plan.json'} not found; run the study first")
    if args.attention:
        reg.attention_offsets(out, cache_dir=args.data_cache, device=args.device)
    summary = reg.summarize(out, reg.effective_parameters(preset, models, cache_dir=args.data_cache, study=study),
                            reg.aligned_reference(out.parent, study))
    if summary["runs_finished"]:
        from ..viz.registration import plot_dose_response

        plot_dose_response(summary, out / "dose_response.png")
    print((out / "summary.md").read_text(encoding="utf-8"))
    return 0


def cmd_select_weights(args: argparse.Namespace) -> int:
    return _selection_command(args, "select-weights", "plan.json", "summary.md")


def cmd_select_defaults(args: argparse.Namespace) -> int:
    return _selection_command(args, "select-defaults", "plan-defaults.json", "summary-defaults.md")


def _selection_command(args: argparse.Namespace, name: str, plan_file: str, summary_file: str) -> int:
    """select-weights (stage 1) and select-defaults (stage 2) of the selection protocol."""
    import sys

    from . import selection

    out = Path(args.out)
    run, summarize = ((selection.run_study, selection.summarize) if name == "select-weights"
                      else (selection.run_defaults_study, selection.summarize_defaults))
    if not args.summarize_only:
        res = run(out, args.preset or preset_name(), seeds=tuple(args.seeds) if args.seeds else selection.SEEDS,
                  jobs=args.jobs, device=args.device, cache_dir=args.data_cache, max_runs=args.max_runs,
                  log=lambda m: print(m, file=sys.stderr))
        if res["failed"]:
            print(f"{name}: {len(res['failed'])} runs failed: {sorted(res['failed'])}", file=sys.stderr)
    elif not (out / plan_file).is_file():
        from ..errors import MangoLiteError

        raise MangoLiteError(f"{name} --summarize-only: {out / plan_file} not found; run the study first")
    summarize(out)
    print((out / summary_file).read_text(encoding="utf-8"))
    return 0


def cmd_mechanisms(args: argparse.Namespace) -> int:
    from ..utils import atomic_write_json, atomic_write_text
    from .mechanisms import control_variants, ladder_variants, merge_studies, run_study, study_markdown

    out = Path(args.out)
    if args.study == "density" and not (args.goals or args.merge):
        from .density import density_markdown, run_density_study
        from .workers import default_jobs

        res = run_density_study(args.preset or preset_name(), tuple(args.seeds), out,
                                log=lambda m: print(m, file=__import__("sys").stderr),
                                jobs=args.jobs or default_jobs("cpu"))
        print(density_markdown(res))
        return 0
    if args.capacity or args.replicate:  # a reading of finished studies: OUT/<stem>.json and .md
        from . import mechanisms as mech

        if args.capacity:
            stem, summary = "capacity", mech.capacity_summary(mech.load_study(out), pooled=args.pooled)
            md = mech.capacity_markdown(summary)
        else:
            stem, summary = "replication", mech.replication_summary(mech.load_study(args.replicate), mech.load_study(out))
            md = mech.replication_markdown(summary)
        atomic_write_json(out / f"{stem}.json", summary)
        atomic_write_text(out / f"{stem}.md", md)
        print(md)
        return 0
    if args.effective_params:
        from .mechanisms import add_effective_params

        report = add_effective_params(out, cache_dir=args.data_cache)
        print(study_markdown(report))
        return 0
    if args.task is None and not args.goals:
        from ..errors import MangoLiteError

        raise MangoLiteError("mechanisms: --task is required for the ladder and controls studies")
    if args.goals:
        from .mechanisms import goals_markdown, goals_summary, load_study

        summary = goals_summary([load_study(f) for f in args.goals], controls=tuple(args.controls))
        md = goals_markdown(summary)
        atomic_write_json(out / "goals.json", summary)
        atomic_write_text(out / "goals.md", md)
        print(md)
        return 0
    if args.merge:
        report = merge_studies(args.merge, title=args.title)
        atomic_write_json(out / "mechanisms.json", report)
        atomic_write_text(out / "mechanisms.md", study_markdown(report))
    else:
        variants = ladder_variants() if args.study == "ladder" else control_variants(None, args.models)
        cache = args.data_cache if args.data_cache is not None else out / "data"
        report = run_study(args.task, variants, args.seeds, args.preset or preset_name(), out,
                           dataset=args.dataset, pair=args.pair, data_root=args.data, cache_dir=cache,
                           title="MANGO ladder of changes" if args.study == "ladder" else "MANGO and its controls",
                           log=lambda m: print(m, file=__import__("sys").stderr))
    print(study_markdown(report))
    return 0


def cmd_seeds(args: argparse.Namespace) -> int:
    from ..errors import MangoLiteError
    from ..utils import atomic_write_json, atomic_write_text
    from .reproduce import seed_summary, seed_summary_markdown

    paths = []
    for r in args.results:
        path = Path(r) / "results.json" if Path(r).is_dir() else Path(r)
        if not path.is_file():
            raise MangoLiteError(f"seeds: expected a results.json (or a folder holding one), got {r}")
        paths.append(path)
    summary = seed_summary(paths)
    md = seed_summary_markdown(summary)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "seeds.json", {**summary, "sources": [str(p) for p in paths]})
        atomic_write_text(out / "seeds.md", md + "\n")
    print(md)
    return 0


def cmd_gpu_window(args: argparse.Namespace) -> int:
    from .accelerator import gpu_window

    report = gpu_window(args.out, minutes=args.minutes, preset=args.preset, dry_run=args.dry_run, device=args.device,
                        reproduction=args.reproduction)
    bad = [r["module"] for r in report.get("flow_checks", []) if not r["f32_ok"]]
    return 1 if bad or report.get("errors") else 0
