"""ICA benchmarks, printed as ratios against references measured in the same run.

(a) exact inverse (recompute attention + triangular solve) vs the published inverse (recompute
    attention + pinv), at 256 / 1024 / 2048 tokens per modality, D = 64, float32;
    also inverse time / forward time (the floor is ~1x: attention recomputed plus one solve).
(b) ICA forward + log-det vs plain masked cross-attention with the same projections.
(c) 12-block MangoFlow (D = 64, 256 tokens per modality) float32 round-trip error after ActNorm init.
Timing: the two sides of every ratio are interleaved (A B A B ...) for ``--pairs`` rounds after a
warm-up, so a noisy neighbour slows both alike; each ratio is reported as the median of the per-round
ratios with its min - max, and a goal whose spread reaches past it is flagged as undecided.
Peak memory: each case runs in its own subprocess and reports its peak resident set size.

    python benchmarks/bench_ica.py            # full table (a few minutes on 2 cores)
    python benchmarks/bench_ica.py --quick    # smaller sizes, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

from mango_lite.timing import interleaved


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def case_inverse(tokens: int, dim: int, batch: int, repeats: int) -> dict:
    from mango_lite import ICA
    from mango_lite.flows import reference

    torch.manual_seed(0)
    m = ICA(dim=dim, tokens=tokens, partition="mmca").eval()
    x = torch.randn(batch, 2 * tokens, dim)
    with torch.no_grad():
        z, _ = m(x)
        pub = interleaved(lambda: reference.published_inverse(m, z), lambda: m.inverse(z), repeats)
        inv = interleaved(lambda: m.inverse(z), lambda: m(x), repeats)
        err_ours = (m.inverse(z)[0] - x).abs().max().item()
        err_pub = (reference.published_inverse(m, z) - x).abs().max().item()
    return {
        "case": "a", "tokens": tokens, "dim": dim, "batch": batch, "forward_s": inv["b_s"], "inverse_s": inv["a_s"],
        "published_inverse_s": pub["a_s"], "speedup_vs_published": pub["ratio"],
        "speedup_min": pub["ratio_min"], "speedup_max": pub["ratio_max"],
        "inverse_over_forward": inv["ratio"], "inverse_over_forward_min": inv["ratio_min"],
        "inverse_over_forward_max": inv["ratio_max"], "pairs": repeats,
        "max_err_ours": err_ours, "max_err_published": err_pub, "peak_rss_mib": _peak_mib(),
    }


def case_forward(tokens: int, dim: int, batch: int, repeats: int) -> dict:
    from mango_lite import ICA
    from mango_lite.flows import reference

    torch.manual_seed(0)
    m = ICA(dim=dim, tokens=tokens, partition="mmca").eval()
    x = torch.randn(batch, 2 * tokens, dim)
    with torch.no_grad():
        r = interleaved(lambda: m(x), lambda: reference.causal_attention(m, x), repeats)
    return {"case": "b", "tokens": tokens, "dim": dim, "batch": batch, "ica_forward_logdet_s": r["a_s"],
            "causal_attention_s": r["b_s"], "ratio": r["ratio"], "ratio_min": r["ratio_min"],
            "ratio_max": r["ratio_max"], "pairs": repeats, "peak_rss_mib": _peak_mib()}


def case_flow(tokens: int, dim: int, blocks: int, batch: int) -> dict:
    from mango_lite import MangoFlow

    torch.manual_seed(0)
    f = MangoFlow(dim=dim, tokens=tokens, blocks=blocks)
    x = torch.randn(batch, 2 * tokens, dim)
    with torch.no_grad():
        f.train()
        f(x)  # ActNorm data-dependent init
        f.eval()
        t0 = time.perf_counter()
        z, ld = f(x)
        t_fwd = time.perf_counter() - t0
        t0 = time.perf_counter()
        xr, ld_inv = f.inverse(z)
        t_inv = time.perf_counter() - t0
    return {"case": "c", "tokens": tokens, "dim": dim, "blocks": blocks, "batch": batch,
            "roundtrip_max_abs_err": (xr - x).abs().max().item(),
            "roundtrip_rel_err": ((xr - x).norm() / x.norm()).item(),
            "logdet_cancel_err": (ld + ld_inv).abs().max().item(), "z_std": z.std().item(),
            "forward_s": t_fwd, "inverse_s": t_inv, "peak_rss_mib": _peak_mib()}


def _run_sub(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--one", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--one", nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write all rows to this JSON file")
    ap.add_argument("--pairs", type=int, default=7, help="interleaved rounds per ratio, after a warm-up")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("MANGO_LITE_THREADS", "2")))
    if a.one is not None:
        kind, *rest = a.one
        nums = [int(v) for v in rest]
        row = {"a": case_inverse, "b": case_forward, "c": case_flow}[kind](*nums)
        row.update(threads=torch.get_num_threads(), torch=torch.__version__)
        print(json.dumps(row))
        return

    tok_a = [64, 256] if a.quick else [256, 1024, 2048]
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, D=64")
    print("\n(a) inverse: triangular solve vs published pinv (attention recomputed in both)")
    print(f"{'T/mod':>6} {'fwd ms':>9} {'inv ms':>9} {'pinv ms':>10} {'speed-up':>9} {'inv/fwd':>8} {'err ours':>9} "
          f"{'err pinv':>9} {'peak MiB':>9}")
    for t in tok_a:
        r = _run_sub(["a", str(t), "64", "2", str(a.pairs)])
        rows.append(r)
        print(f"{t:>6} {1e3*r['forward_s']:>9.2f} {1e3*r['inverse_s']:>9.2f} {1e3*r['published_inverse_s']:>10.1f} "
              f"{r['speedup_vs_published']:>8.1f}x [{r['speedup_min']:.1f}-{r['speedup_max']:.1f}] "
              f"{r['inverse_over_forward']:>7.2f}x "
              f"[{r['inverse_over_forward_min']:.2f}-{r['inverse_over_forward_max']:.2f}] {r['max_err_ours']:>9.1e} "
              f"{r['max_err_published']:>9.1e} {r['peak_rss_mib']:>9.0f}")
    print("\n(b) ICA forward + log-det vs plain masked cross-attention (same projections)")
    print(f"{'T/mod':>6} {'ICA ms':>9} {'attn ms':>9} {'ratio':>7} {'peak MiB':>9}")
    for t in tok_a:
        r = _run_sub(["b", str(t), "64", "2", str(a.pairs)])
        rows.append(r)
        print(f"{t:>6} {1e3*r['ica_forward_logdet_s']:>9.2f} {1e3*r['causal_attention_s']:>9.2f} {r['ratio']:>6.2f}x "
              f"[{r['ratio_min']:.2f}-{r['ratio_max']:.2f}] {r['peak_rss_mib']:>9.0f}")
    blocks = 2 if a.quick else 12
    print(f"\n(c) {blocks}-block MangoFlow, D=64, 256 tokens per modality, float32, after ActNorm init")
    r = _run_sub(["c", "256", "64", str(blocks), "4"])
    rows.append(r)
    print(f"round-trip max |x - f^-1(f(x))| = {r['roundtrip_max_abs_err']:.2e} (relative {r['roundtrip_rel_err']:.1e}); "
          f"|logdet + logdet_inv| = {r['logdet_cancel_err']:.1e}; std(z) = {r['z_std']:.2f}; "
          f"forward {r['forward_s']:.2f} s, inverse {r['inverse_s']:.2f} s; peak {r['peak_rss_mib']:.0f} MiB")
    goals = []

    def verdict(value: float, lo: float, hi: float, goal: float, higher_better: bool) -> str:
        """PASS / MISS from the median; UNDECIDED when the spread of the rounds reaches across the goal."""
        if (lo < goal < hi) or (goal in (lo, hi)):
            return "UNDECIDED (spread crosses the goal)"
        return "PASS" if (value >= goal if higher_better else value <= goal) else "MISS"

    a1024 = [r for r in rows if r["case"] == "a" and r["tokens"] == 1024]
    if a1024:
        g = a1024[0]
        goals.append(f"(a) speed-up at 1024 tokens >= 30x: {g['speedup_vs_published']:.1f}x "
                     f"[{g['speedup_min']:.1f}-{g['speedup_max']:.1f}] "
                     f"{verdict(g['speedup_vs_published'], g['speedup_min'], g['speedup_max'], 30, True)}; "
                     f"error <= 1e-4: {g['max_err_ours']:.1e} {'PASS' if g['max_err_ours'] <= 1e-4 else 'MISS'}; "
                     f"inverse <= 2x forward: {g['inverse_over_forward']:.2f}x "
                     + verdict(g['inverse_over_forward'], g['inverse_over_forward_min'], g['inverse_over_forward_max'],
                               2, False))
    worst_b = max((r for r in rows if r["case"] == "b"), key=lambda r: r["ratio"])
    goals.append(f"(b) ICA / attention <= 1.5x (worst size): {worst_b['ratio']:.2f}x "
                 f"[{worst_b['ratio_min']:.2f}-{worst_b['ratio_max']:.2f}] "
                 f"{verdict(worst_b['ratio'], worst_b['ratio_min'], worst_b['ratio_max'], 1.5, False)}")
    goals.append(f"(c) round trip <= 1e-4: {r['roundtrip_max_abs_err']:.1e} "
                 f"{'PASS' if r['roundtrip_max_abs_err'] <= 1e-4 else 'MISS'}")
    print("\nGoals:\n  " + "\n  ".join(goals))
    if a.json:
        from mango_lite.utils import atomic_write_json

        atomic_write_json(a.json, rows)


if __name__ == "__main__":
    main()
