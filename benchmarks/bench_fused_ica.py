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
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from mango_lite.timing import interleaved

HERE = Path(__file__).resolve().parent


def _layer(tokens: int, dim: int, fused: bool):
    from mango_lite import ICA
    from mango_lite.flows import use_fused_attention

    torch.manual_seed(0)
    m = ICA(dim=dim, tokens=tokens, partition="mmca")
    use_fused_attention(m, fused)
    return m


def _step(m, x):
    y, ld = m(x)
    (y.sum() + ld.sum()).backward()


def _sdpa_step(m, x):
    from mango_lite.flows import reference

    reference.fused_causal_attention(m, x).sum().backward()


def case_time(tokens: int, dim: int, batch: int, pairs: int) -> dict:
    ref, fused = _layer(tokens, dim, False), _layer(tokens, dim, True)
    x = torch.randn(batch, 2 * tokens, dim, requires_grad=True)
    a = interleaved(lambda: _step(fused, x), lambda: _step(ref, x), pairs)
    b = interleaved(lambda: _step(fused, x), lambda: _sdpa_step(fused, x), pairs)
    return {"tokens": tokens, "dim": dim, "batch": batch, "pairs": pairs,
            "fused_s": a["a_s"], "materialised_s": a["b_s"], "sdpa_s": b["b_s"],
            "fused_over_materialised": [a["ratio"], a["ratio_min"], a["ratio_max"]],
            "fused_over_sdpa": [b["ratio"], b["ratio_min"], b["ratio_max"]]}


def saved_for_backward_mib(kind: str, tokens: int, dim: int, batch: int) -> float:
    """MiB of the tensors autograd keeps from the forward for the backward (distinct storages, counted by a
    saved-tensors hook): the training memory a layer holds, which grows as T^2 when S is materialised."""
    m = _layer(tokens, dim, kind == "fused")
    x = torch.randn(batch, 2 * tokens, dim, requires_grad=True)
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if kind == "sdpa":
            from mango_lite.flows import reference

            reference.fused_causal_attention(m, x)
        else:
            m(x)
    return sum(seen.values()) / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pairs", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    sizes = (64, 128) if args.quick else (256, 1024)
    dim, batch = 64, 4
    rows = []
    for t in sizes:
        r = case_time(t, dim, batch, args.pairs)
        r["saved_for_backward_mib"] = {k: saved_for_backward_mib(k, t, dim, batch) for k in ("materialised", "fused", "sdpa")}
        rows.append(r)
        f, s = r["fused_over_materialised"], r["fused_over_sdpa"]
        print(f"T={t:5d}: fused {r['fused_s'] * 1e3:8.1f} ms  materialised {r['materialised_s'] * 1e3:8.1f} ms  "
              f"sdpa {r['sdpa_s'] * 1e3:8.1f} ms | fused/materialised {f[0]:.2f} [{f[1]:.2f}-{f[2]:.2f}]  "
              f"fused/sdpa {s[0]:.2f} [{s[1]:.2f}-{s[2]:.2f}] | saved for backward, MiB: "
              + "  ".join(f"{k} {v:.1f}" for k, v in r["saved_for_backward_mib"].items()))
    from mango_lite.utils import atomic_write_json, device_name

    device = device_name(torch.device("cpu"))
    out = {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(), "quick": args.quick,
           "rows": rows}
    if not args.quick:
        atomic_write_json(HERE / "results" / "bench_fused_ica_cpu.json", out)
        print("wrote benchmarks/results/bench_fused_ica_cpu.json")


if __name__ == "__main__":
    main()
