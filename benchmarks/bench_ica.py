"""ICA benchmarks, printed as ratios against references measured in the same run.

(a) exact inverse (recompute attention + triangular solve) vs the published inverse (recompute
    attention + pinv), at 256 / 1024 / 2048 tokens per modality, D = 64, float32;
    also inverse time / forward time (the floor is ~1x: attention recomputed plus one solve).
(b) ICA forward + log-det vs plain masked cross-attention with the same projections.
(c) 12-block MangoFlow (D = 64, 256 tokens per modality) float32 round-trip error after ActNorm init.
Peak memory: each case runs in its own subprocess and reports its peak resident set size.

    python benchmarks/bench_ica.py            # full table (a few minutes on 2 cores)
    python benchmarks/bench_ica.py --quick    # smaller sizes, for a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch


def _timeit(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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
        t_fwd = _timeit(lambda: m(x), repeats)
        t_inv = _timeit(lambda: m.inverse(z), repeats)
        t_pub = _timeit(lambda: reference.published_inverse(m, z), max(1, repeats // 2))
        err_ours = (m.inverse(z)[0] - x).abs().max().item()
        err_pub = (reference.published_inverse(m, z) - x).abs().max().item()
    return {
        "case": "a", "tokens": tokens, "dim": dim, "batch": batch, "forward_s": t_fwd, "inverse_s": t_inv,
        "published_inverse_s": t_pub, "speedup_vs_published": t_pub / t_inv, "inverse_over_forward": t_inv / t_fwd,
        "max_err_ours": err_ours, "max_err_published": err_pub, "peak_rss_mib": _peak_mib(),
    }


def case_forward(tokens: int, dim: int, batch: int, repeats: int) -> dict:
    from mango_lite import ICA
    from mango_lite.flows import reference

    torch.manual_seed(0)
    m = ICA(dim=dim, tokens=tokens, partition="mmca").eval()
    x = torch.randn(batch, 2 * tokens, dim)
    with torch.no_grad():
        t_ica = _timeit(lambda: m(x), repeats)
        t_att = _timeit(lambda: reference.causal_attention(m, x), repeats)
    return {"case": "b", "tokens": tokens, "dim": dim, "batch": batch, "ica_forward_logdet_s": t_ica,
            "causal_attention_s": t_att, "ratio": t_ica / t_att, "peak_rss_mib": _peak_mib()}


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
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("MANGO_LITE_THREADS", "2")))
    if a.one is not None:
        kind, *rest = a.one
        nums = [int(v) for v in rest]
        row = {"a": case_inverse, "b": case_forward, "c": case_flow}[kind](*nums)
        print(json.dumps(row))
        return

    tok_a = [64, 256] if a.quick else [256, 1024, 2048]
    rows = []
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, D=64")
    print("\n(a) inverse: triangular solve vs published pinv (attention recomputed in both)")
    print(f"{'T/mod':>6} {'fwd ms':>9} {'inv ms':>9} {'pinv ms':>10} {'speed-up':>9} {'inv/fwd':>8} {'err ours':>9} {'err pinv':>9} {'peak MiB':>9}")
    for t in tok_a:
        r = _run_sub(["a", str(t), "64", "2", "5" if t <= 1024 else "3"])
        rows.append(r)
        print(f"{t:>6} {1e3*r['forward_s']:>9.2f} {1e3*r['inverse_s']:>9.2f} {1e3*r['published_inverse_s']:>10.1f} "
              f"{r['speedup_vs_published']:>8.1f}x {r['inverse_over_forward']:>7.2f}x {r['max_err_ours']:>9.1e} "
              f"{r['max_err_published']:>9.1e} {r['peak_rss_mib']:>9.0f}")
    print("\n(b) ICA forward + log-det vs plain masked cross-attention (same projections)")
    print(f"{'T/mod':>6} {'ICA ms':>9} {'attn ms':>9} {'ratio':>7} {'peak MiB':>9}")
    for t in tok_a:
        r = _run_sub(["b", str(t), "64", "2", "10"])
        rows.append(r)
        print(f"{t:>6} {1e3*r['ica_forward_logdet_s']:>9.2f} {1e3*r['causal_attention_s']:>9.2f} {r['ratio']:>6.2f}x {r['peak_rss_mib']:>9.0f}")
    blocks = 2 if a.quick else 12
    print(f"\n(c) {blocks}-block MangoFlow, D=64, 256 tokens per modality, float32, after ActNorm init")
    r = _run_sub(["c", "256", "64", str(blocks), "4"])
    rows.append(r)
    print(f"round-trip max |x - f^-1(f(x))| = {r['roundtrip_max_abs_err']:.2e} (relative {r['roundtrip_rel_err']:.1e}); "
          f"|logdet + logdet_inv| = {r['logdet_cancel_err']:.1e}; std(z) = {r['z_std']:.2f}; "
          f"forward {r['forward_s']:.2f} s, inverse {r['inverse_s']:.2f} s; peak {r['peak_rss_mib']:.0f} MiB")
    goals = []
    a1024 = [r for r in rows if r["case"] == "a" and r["tokens"] == 1024]
    if a1024:
        g = a1024[0]
        goals.append(f"(a) speed-up at 1024 tokens >= 30x: {g['speedup_vs_published']:.1f}x {'PASS' if g['speedup_vs_published'] >= 30 else 'MISS'}; "
                     f"error <= 1e-4: {g['max_err_ours']:.1e} {'PASS' if g['max_err_ours'] <= 1e-4 else 'MISS'}; "
                     f"inverse <= 2x forward: {g['inverse_over_forward']:.2f}x {'PASS' if g['inverse_over_forward'] <= 2 else 'MISS'}")
    worst_b = max(r["ratio"] for r in rows if r["case"] == "b")
    goals.append(f"(b) ICA / attention <= 1.5x (worst size): {worst_b:.2f}x {'PASS' if worst_b <= 1.5 else 'MISS'}")
    goals.append(f"(c) round trip <= 1e-4: {r['roundtrip_max_abs_err']:.1e} {'PASS' if r['roundtrip_max_abs_err'] <= 1e-4 else 'MISS'}")
    print("\nGoals:\n  " + "\n  ".join(goals))
    if a.json:
        from mango_lite.utils import atomic_write_json

        atomic_write_json(a.json, rows)


if __name__ == "__main__":
    main()
