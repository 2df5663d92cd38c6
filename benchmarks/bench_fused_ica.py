"""ICA's fused forward against its materialised reference and against fused causal attention, in training.

For each token count T (per modality), D = 64, one head, float32, one ICA layer (MMCA, upper triangle):

* ``materialised``: ICA forward + log-det + backward with S (B, h, T, T) formed (the reference path);
* ``fused``: the same through fused attention kernels (``use_fused_attention``: S @ X2 and S's diagonal,
  S never formed; same values and gradients, tests/test_fused_attention.py);
* ``sdpa``: a plain causal cross-attention with the same projections through PyTorch's fused
  ``scaled_dot_product_attention`` (no +I, no log-det): what a user's attention layer would cost.

Each step is forward + backward of ``sum(y) + sum(logdet)``. The sides of every ratio are interleaved
(A B A B ...) after a warm-up; ratios are medians of the per-round ratios with their min - max. Memory: the
tensors autograd saves from the forward for the backward (a saved-tensors hook), per case. Writes
``benchmarks/results/bench_fused_ica_<device>.json``.

    python benchmarks/bench_fused_ica.py            # T = 256, 1024 (a few minutes on 2 cores)
    python benchmarks/bench_fused_ica.py --quick    # T = 64, 128, for a smoke run
    python benchmarks/bench_fused_ica.py --device cuda --out results/gpu/bench_fused_ica.json  # 256, 1024, 4096
"""

from __future__ import annotations

import argparse
import copy
import os
from pathlib import Path

import torch

from mango_lite.timing import interleaved

HERE = Path(__file__).resolve().parent
CPU = torch.device("cpu")


def _layer(tokens: int, dim: int, fused: bool, device: torch.device):
    from mango_lite import ICA
    from mango_lite.flows import use_fused_attention

    torch.manual_seed(0)
    m = ICA(dim=dim, tokens=tokens, partition="mmca").to(device)
    use_fused_attention(m, fused)
    return m


def _step(m, x, repeat: int = 1):
    for _ in range(repeat):
        y, ld = m(x)
        (y.sum() + ld.sum()).backward()


def _forward(m, x, repeat: int = 1):
    for _ in range(repeat):
        m(x)


def _sdpa_forward(m, x, repeat: int = 1):
    from mango_lite.flows import reference

    for _ in range(repeat):
        reference.fused_causal_attention(m, x)


def _sdpa_step(m, x, repeat: int = 1):
    from mango_lite.flows import reference

    for _ in range(repeat):
        reference.fused_causal_attention(m, x).sum().backward()


def _sync(device: torch.device):
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None


def case_time(tokens: int, dim: int, batch: int, pairs: int, device: torch.device = CPU, repeat: int = 1) -> dict:
    """Medians of ``pairs`` interleaved rounds, each timing ``repeat`` steps (more than one on a GPU, where one
    small step is shorter than the timer's noise); times are per step."""
    ref, fused = _layer(tokens, dim, False, device), _layer(tokens, dim, True, device)
    x = torch.randn(batch, 2 * tokens, dim, device=device, requires_grad=True)
    sync = _sync(device)
    a = interleaved(lambda: _step(fused, x, repeat), lambda: _step(ref, x, repeat), pairs, sync=sync)
    b = interleaved(lambda: _step(fused, x, repeat), lambda: _sdpa_step(fused, x, repeat), pairs, sync=sync)
    with torch.no_grad():  # the forward alone (sampling, evaluation): output and log-det against the attention
        c = interleaved(lambda: _forward(fused, x, repeat), lambda: _sdpa_forward(fused, x, repeat), pairs, sync=sync)
    return {"tokens": tokens, "dim": dim, "batch": batch, "pairs": pairs, "repeat": repeat,
            "fused_s": a["a_s"] / repeat, "materialised_s": a["b_s"] / repeat, "sdpa_s": b["b_s"] / repeat,
            "fused_over_materialised": [a["ratio"], a["ratio_min"], a["ratio_max"]],
            "fused_over_sdpa": [b["ratio"], b["ratio_min"], b["ratio_max"]],
            "fused_forward_s": c["a_s"] / repeat, "sdpa_forward_s": c["b_s"] / repeat,
            "forward_fused_over_sdpa": [c["ratio"], c["ratio_min"], c["ratio_max"]]}


def saved_for_backward_mib(kind: str, tokens: int, dim: int, batch: int,
                           device: torch.device = CPU) -> float:
    """MiB of the tensors autograd keeps from the forward for the backward (distinct storages, counted by a
    saved-tensors hook): the training memory a layer holds, which grows as T^2 when S is materialised."""
    from mango_lite.engine.cost import saved_for_backward_bytes
    from mango_lite.flows import reference

    m = _layer(tokens, dim, kind == "fused", device)
    x = torch.randn(batch, 2 * tokens, dim, device=device, requires_grad=True)
    forward = (lambda: reference.fused_causal_attention(m, x)) if kind == "sdpa" else (lambda: m(x))
    return saved_for_backward_bytes(forward) / 2**20


def peak_step_mib(kind: str, tokens: int, dim: int, batch: int, device: torch.device) -> float | None:
    """Peak device memory of one training step above what was allocated before it (CUDA only)."""
    if device.type != "cuda":
        return None
    m = _layer(tokens, dim, kind == "fused", device)
    x = torch.randn(batch, 2 * tokens, dim, device=device, requires_grad=True)
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    (_sdpa_step if kind == "sdpa" else _step)(m, x)
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def agreement(tokens: int, dim: int, batch: int, device: torch.device) -> dict:
    """Largest relative difference between the fused and the materialised path on this device in float32 (output,
    log-det and every parameter's gradient, parameters perturbed, both triangles): the fused kernels this
    device picks compute the same layer. The float64 proof is tests/test_fused_attention.py (CPU)."""
    from mango_lite import ICA
    from mango_lite.flows import use_fused_attention
    from mango_lite.flows.perturb import perturb_parameters

    worst: dict[str, float] = {"output": 0.0, "logdet": 0.0, "gradient": 0.0}
    for triangle in ("upper", "lower"):
        torch.manual_seed(1)
        ref = ICA(dim=dim, tokens=tokens, partition="mmca", triangle=triangle).to(device)
        perturb_parameters(ref, 0.3, torch.Generator().manual_seed(2))
        fused = copy.deepcopy(ref)
        use_fused_attention(fused, True)
        x = torch.randn(batch, 2 * tokens, dim, device=device)
        outs = []
        for m in (ref, fused):
            m.zero_grad()
            y, ld = m(x)
            (y.square().mean() + ld.mean()).backward()
            outs.append((y.detach(), ld.detach(), {n: p.grad.detach().clone() for n, p in m.named_parameters()
                                                   if p.grad is not None}))
        (y0, l0, g0), (y1, l1, g1) = outs

        def rel(a: torch.Tensor, b: torch.Tensor) -> float:
            return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))

        worst["output"] = max(worst["output"], rel(y1, y0))
        worst["logdet"] = max(worst["logdet"], rel(l1, l0))
        worst["gradient"] = max([worst["gradient"], *(rel(g1[n], g0[n]) for n in g0)])
    return {"tokens": tokens, "dim": dim, "batch": batch, "dtype": "float32", "max_rel_diff": worst}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pairs", type=int, default=7)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (on CUDA each timed unit is --repeat steps)")
    ap.add_argument("--tokens", type=int, nargs="+", default=None, help="token counts per modality")
    ap.add_argument("--repeat", type=int, default=None, help="steps per timed unit (default 1 on the CPU, 10 on CUDA)")
    ap.add_argument("--out", default=None, help="JSON file (default benchmarks/results/bench_fused_ica_<device>.json)")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    sizes = args.tokens or ((64, 128) if args.quick else (256, 1024) if device.type == "cpu" else (256, 1024, 4096))
    repeat = args.repeat or (10 if device.type == "cuda" else 1)
    dim, batch = 64, 4
    rows = []
    check = agreement(64 if args.quick else 256, dim, batch, device)
    print(f"fused vs materialised on {device}, float32, max relative difference: "
          + "  ".join(f"{k} {v:.1e}" for k, v in check["max_rel_diff"].items()))
    for t in sizes:
        r = case_time(t, dim, batch, args.pairs, device, repeat)
        r["saved_for_backward_mib"] = {k: saved_for_backward_mib(k, t, dim, batch, device)
                                       for k in ("materialised", "fused", "sdpa")}
        r["peak_step_mib"] = {k: peak_step_mib(k, t, dim, batch, device) for k in ("materialised", "fused", "sdpa")}
        rows.append(r)
        f, s, w = r["fused_over_materialised"], r["fused_over_sdpa"], r["forward_fused_over_sdpa"]
        print(f"T={t:5d}: fused {r['fused_s'] * 1e3:8.2f} ms  materialised {r['materialised_s'] * 1e3:8.2f} ms  "
              f"sdpa {r['sdpa_s'] * 1e3:8.2f} ms | fused/materialised {f[0]:.2f} [{f[1]:.2f}-{f[2]:.2f}]  "
              f"fused/sdpa {s[0]:.2f} [{s[1]:.2f}-{s[2]:.2f}] | forward alone, fused/sdpa {w[0]:.2f} "
              f"[{w[1]:.2f}-{w[2]:.2f}] | saved for backward, MiB: "
              + "  ".join(f"{k} {v:.1f}" for k, v in r["saved_for_backward_mib"].items()))
    from mango_lite.utils import atomic_write_json, device_name

    out = {"device": device_name(device), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "quick": args.quick, "agreement": check, "rows": rows}
    path = Path(args.out) if args.out else (HERE / "results" / f"bench_fused_ica_{device.type}.json"
                                            if not args.quick else None)
    if path is not None:
        atomic_write_json(path, out)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
