"""Benchmark of the latent analysis on the CPU: extraction, PCA, UMAP cold and warm, and
the gap numbers, for 2,000 natural + 2,000 perturbed digits latents.

Usage: python -m benchmarks.bench_latent [--checkpoint checkpoints/digits-atld] [--points 2000]
       python -m benchmarks.bench_latent --compare checkpoints/digits-natural checkpoints/digits-atld ...
       (the second form prints the gap numbers of PGD-20 latents on the 450 digits test images for
       each checkpoint, in logit and feature space: the finding reported in docs/latent.md)

The digits set has 1,797 images (train + test), so the 2,000 are the whole set plus its first 203
images again (their perturbations differ: each gets its own random start). The printed table is
what docs/benchmarks.md shows. Times are wall-clock seconds; the load average is printed beside
them because the development machine is shared.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import torch

from atld.attacks import attack_from_name
from atld.data import load_dataset
from atld.latent import Embedder, extract_latents, gap_numbers
from atld.runs.store import load_checkpoint


def timed(fn):
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - start, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/digits-atld"))
    parser.add_argument("--points", type=int, default=2000, help="natural points (as many perturbed)")
    parser.add_argument("--attack", default="pgd20")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compare", type=Path, nargs="+", metavar="DIR", help="gap numbers of these runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.compare:
        return compare(args.compare, args.attack)

    run = load_checkpoint(args.checkpoint)
    data = load_dataset("digits")
    x = torch.cat([data.x_train, data.x_test])
    y = torch.cat([data.y_train, data.y_test])
    reps = -(-args.points // len(y))
    x, y = x.repeat(reps, 1, 1, 1)[:args.points], y.repeat(reps)[:args.points]
    attack = attack_from_name(args.attack, run.spec.epsilon)
    rows = []

    def record(what, wall, cpu, goal=""):
        rows.append((what, wall, cpu, goal, os.getloadavg()[0]))
        print(f"{what:55s} {wall:7.2f} s wall {cpu:7.2f} s cpu  load {os.getloadavg()[0]:.1f}", file=sys.stderr)

    lat, wall, cpu = timed(lambda: extract_latents(run, x, y, attack, batch_size=500,
                                                   generator=torch.Generator().manual_seed(0)))
    record(f"extraction: {args.points} images, {attack.label} + forward, D scores", wall, cpu)
    labels = lat.labels.numpy()
    for space in ("logits", "features"):
        z_nat, z_pert = lat.latents(space)
        _, wall, cpu = timed(lambda z_nat=z_nat, z_pert=z_pert: Embedder("pca").fit(z_nat, z_pert, labels))
        record(f"PCA, joint fit, {space} ({z_nat.shape[1]} dims)", wall, cpu, "< 0.5 s")
    z_nat, z_pert = lat.latents("features")
    what = f"joint fit, features ({z_nat.shape[1]} -> PCA 50 dims)"
    _, wall, cpu = timed(lambda: Embedder("umap").fit(z_nat, z_pert, labels))
    record(f"UMAP cold (first call in the process: numba JIT + fit), {what}", wall, cpu)
    _, wall, cpu = timed(lambda: Embedder("umap", random_state=1).fit(z_nat, z_pert, labels))
    record(f"UMAP warm, {what}", wall, cpu, "< 10 s")
    _, wall, cpu = timed(lambda: Embedder("umap", fit_on="natural", random_state=2).fit(z_nat, z_pert, labels))
    record("UMAP warm, fit on natural + transform perturbed, features", wall, cpu)
    probe = "import time; from atld.latent import warm_up_umap; t = time.process_time(); s = warm_up_umap(); " \
            "print(s, time.process_time() - t)"
    import subprocess

    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout.split()
    record("warm_up_umap() in a fresh process (tiny fit + transform)", float(out[0]), float(out[1]))
    for space in ("logits", "features"):
        zn, zp = lat.latents(space)
        d = (lat.d_nat.numpy(), lat.d_pert.numpy()) if lat.d_nat is not None else (None, None)
        _, wall, cpu = timed(lambda zn=zn, zp=zp, d=d: gap_numbers(zn, zp, labels, *d))
        record(f"gap numbers, {space}: all four + per class (200 permutations)", wall, cpu, "< 5 s")

    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads), checkpoint {args.checkpoint}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| step | wall s | CPU s | goal | load avg |")
    print("|---|---|---|---|---|")
    for what, wall, cpu, goal, load in rows:
        print(f"| {what} | {wall:.2f} | {cpu:.2f} | {goal} | {load:.1f} |")
    return 0


def _class_mean(gap: dict, key: str) -> str:
    values = [row[key] for row in gap["per_class"] if row[key] is not None]
    return f"{sum(values) / len(values):.3f}" if values else "-"


def compare(run_dirs: list[Path], attack_name: str) -> int:
    """Gap numbers of `attack_name` latents on the whole digits test split, one row per run and space."""
    data = load_dataset("digits")
    print(f"| run | space | clean acc | {attack_name} acc | D AUC | two-sample acc | MMD² (p) | kNN mixing (expected) "
          "| per class: two-sample acc | per class: kNN mixing |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run_dir in run_dirs:
        run = load_checkpoint(run_dir)
        attack = attack_from_name(attack_name, run.spec.epsilon)
        lat = extract_latents(run, data.x_test, data.y_test, attack, generator=torch.Generator().manual_seed(0))
        for space in ("logits", "features"):
            zn, zp = lat.latents(space)
            d = (lat.d_nat.numpy(), lat.d_pert.numpy()) if lat.d_nat is not None else (None, None)
            g = gap_numbers(zn, zp, lat.labels.numpy(), *d)
            auc = "-" if g["discriminator_auc"] is None else f"{g['discriminator_auc']:.3f}"
            print(f"| {run_dir.name} | {space} | {lat.accuracy_nat:.3f} | {lat.accuracy_pert:.3f} | {auc} | "
                  f"{g['two_sample_accuracy']:.3f} | {g['mmd2']:.4f} ({g['mmd_p_value']:.3f}) | "
                  f"{g['knn_mixing']:.3f} ({g['knn_mixing_expected']:.3f}) | {_class_mean(g, 'two_sample_accuracy')} | "
                  f"{_class_mean(g, 'knn_mixing')} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
