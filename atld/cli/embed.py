"""`python -m atld embed`: project natural and perturbed latents of a checkpoint to 2-D and compute
the gap numbers (in latent space), the same pipeline and CSV as the app's Latent explorer
(`atld.latent.maps`: `# key: value` lines with the gap numbers, then one row per point).

Example: python -m atld embed --checkpoint checkpoints/digits-atld --attack pgd20 --method pca \\
             --limit 500 --out atld-pgd20.csv
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from atld.config.fields import add_flags, from_flags
from atld.config.latent import LatentConfig
from atld.errors import DataError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True, metavar="DIR", help="run directory (card.json + model)")
    p.add_argument("--out", type=Path, help="CSV file to write (default: standard output)")
    p.add_argument("--data-root", type=Path, help="local folder holding the dataset files")
    p.add_argument("--cache-dir", type=Path, help="cache folder (default: $ATLD_CACHE/latent or ~/.cache/atld/latent)")
    p.add_argument("--no-cache", action="store_true", help="recompute everything; write no cache")
    add_flags(p, LatentConfig)


def run(args: argparse.Namespace) -> int:
    import torch

    from atld.data.loaders import load_dataset
    from atld.device import resolve_device
    from atld.fileio import atomic_write, check_output_file
    from atld.latent import LatentCache, latent_map, map_csv
    from atld.runs.store import load_checkpoint

    config = from_flags(LatentConfig, args)  # validates every flag before any work
    if args.out is not None:
        check_output_file(args.out)
    device = resolve_device(config.device)
    run_ = load_checkpoint(args.checkpoint, device=device)
    x, y = load_dataset(run_.spec.name, args.data_root).split(config.split)
    if len(y) < 2:
        raise DataError(f"the {config.split} split of {run_.spec.name} has fewer than 2 images")
    x, y = x[:config.limit], y[:config.limit]
    start = time.perf_counter()
    m = latent_map(run_, x, y, config, LatentCache(args.cache_dir, enabled=not args.no_cache), device)
    seconds = time.perf_counter() - start
    meta = {"checkpoint": str(args.checkpoint), "model_sha256": run_.model_hash, "method_trained": run_.config.method,
            "dataset": run_.spec.name, "split": config.split, "torch": torch.__version__}
    text = map_csv(m, meta, run_.spec.labels())
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(args.out, text.encode())
    where = "standard output" if args.out is None else str(args.out)
    sys.stderr.write(f"wrote {2 * len(m.latents)} points to {where} in {seconds:.1f} s "
                     f"(clean acc {m.latents.accuracy_nat:.3f}, {config.attack} acc {m.latents.accuracy_pert:.3f}, "
                     f"two-sample acc {m.gap['two_sample_accuracy']:.3f}, MMD² p {m.gap['mmd_p_value']:.3g})\n")
    return 0
