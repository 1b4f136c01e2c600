"""`python -m atld embed`: project natural and perturbed latents of a checkpoint to 2-D and compute
the gap numbers (in latent space). Writes a CSV: a header of `# key: value` comment lines with
the gap numbers (overall, then one line per class), then one row per point with its
coordinates, label, prediction and D score. Read it back with pandas.read_csv(path, comment="#").

Example: python -m atld embed --checkpoint checkpoints/digits-atld --attack pgd20 --method pca \
             --limit 500 --out atld-pgd20.csv
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path

from atld.errors import DataError, check_int_at_least

GAP_HEADER_KEYS = ("discriminator_auc", "two_sample_accuracy", "two_sample_p_value", "mmd2", "mmd_p_value",
                   "mmd_bandwidth", "knn_mixing", "knn_mixing_expected")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from atld.device import DEVICE_CHOICES
    from atld.latent import ATTACK_NAMES, EMBED_METHODS, FIT_MODES, LATENT_SPACES

    p.add_argument("--checkpoint", type=Path, required=True, metavar="DIR", help="run directory (card.json + model)")
    p.add_argument("--attack", choices=ATTACK_NAMES, default="pgd20",
                   help="perturbation, at the dataset's ε (step ε/4; FGSM one step of ε)")
    p.add_argument("--epsilon", type=float, help="override ε ([0, 1] pixel units)")
    p.add_argument("--method", choices=EMBED_METHODS, default="pca", help="projection to 2-D")
    p.add_argument("--fit-on", choices=FIT_MODES, default="joint",
                   help="fit the map on both clouds, or on natural latents only (understates the gap)")
    p.add_argument("--space", choices=LATENT_SPACES, default="logits",
                   help="latent space: logits (what D sees) or penultimate features")
    p.add_argument("--split", choices=("test", "train"), default="test", help="dataset split")
    p.add_argument("--limit", type=int, default=1000, help="use the first N images of the split")
    p.add_argument("--out", type=Path, help="CSV file to write (default: standard output)")
    p.add_argument("--data-root", type=Path, help="local folder holding the torchvision dataset files")
    p.add_argument("--device", default="cpu", help=f"{' | '.join(DEVICE_CHOICES)} | cuda:N")
    p.add_argument("--batch-size", type=int, default=256, help="images per attack batch")
    p.add_argument("--seed", type=int, default=0, help="seed for the attack's random start and the projection")
    p.add_argument("--permutations", type=int, default=200, help="MMD permutation-test permutations")
    p.add_argument("--neighbors", type=int, default=10, help="k of the kNN mixing")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds of the two-sample test")
    p.add_argument("--cache-dir", type=Path, help="cache folder (default: $ATLD_CACHE/latent or ~/.cache/atld/latent)")
    p.add_argument("--no-cache", action="store_true", help="recompute everything; write no cache")


def run(args: argparse.Namespace) -> int:
    import torch

    from atld.attacks import attack_from_name
    from atld.checkpoints import load_checkpoint
    from atld.data import load_dataset
    from atld.device import resolve_device
    from atld.latent import Embedder, LatentCache

    check_int_at_least("limit", args.limit, 2)
    check_int_at_least("batch size", args.batch_size, 1)
    check_int_at_least("seed", args.seed, 0)
    device = resolve_device(args.device)
    run_ = load_checkpoint(args.checkpoint, device=device)
    spec = run_.spec
    attack = attack_from_name(args.attack, spec.epsilon if args.epsilon is None else args.epsilon)
    embedder = Embedder(args.method, fit_on=args.fit_on, random_state=args.seed)  # validates before any work
    data = load_dataset(spec.name, args.data_root)
    x, y = data.split(args.split)
    if len(y) < 2:
        raise DataError(f"the {args.split} split of {spec.name} has fewer than 2 images")
    x, y = x[:args.limit], y[:args.limit]
    cache = LatentCache(args.cache_dir, enabled=not args.no_cache)

    start = time.perf_counter()
    latents = cache.latents(run_, x, y, attack, args.batch_size, device, args.seed)
    z_nat, z_pert = latents.latents(args.space)
    labels = latents.labels.numpy()
    d_nat = None if latents.d_nat is None else latents.d_nat.numpy()
    d_pert = None if latents.d_pert is None else latents.d_pert.numpy()
    gap = cache.gap(z_nat, z_pert, labels, d_nat, d_pert, folds=args.folds, permutations=args.permutations,
                    neighbors=args.neighbors, random_state=args.seed)
    coords = cache.embedding(embedder, z_nat, z_pert, labels)
    seconds = time.perf_counter() - start

    text = _csv_text(args, run_, attack, latents, gap, coords, torch.__version__)
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    where = "standard output" if args.out is None else str(args.out)
    sys.stderr.write(f"wrote {2 * len(latents)} points to {where} in {seconds:.1f} s "
                     f"(clean acc {latents.accuracy_nat:.3f}, {args.attack} acc {latents.accuracy_pert:.3f}, "
                     f"two-sample acc {gap['two_sample_accuracy']:.3f}, MMD² p {gap['mmd_p_value']:.3g})\n")
    return 0


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _csv_text(args, run_, attack, latents, gap, coords, torch_version: str) -> str:
    spec = run_.spec
    names = spec.labels()
    buf = io.StringIO()
    head = {"checkpoint": str(args.checkpoint), "model_sha256": run_.model_hash, "method_trained": run_.config.method,
            "dataset": spec.name, "split": args.split, "n_images": len(latents),
            "attack": args.attack if attack is None else f"{attack.label} eps={attack.epsilon:.6g} "
                                                         f"step={attack.alpha:.6g}",
            "projection": f"{args.method} fit_on={args.fit_on}", "space": args.space, "seed": args.seed,
            "accuracy_natural": latents.accuracy_nat, "accuracy_perturbed": latents.accuracy_pert,
            "torch": torch_version}
    head.update({k: gap[k] for k in GAP_HEADER_KEYS})
    for key, value in head.items():
        buf.write(f"# {key}: {_fmt(value)}\n")
    for row in gap["per_class"]:
        fields = " ".join(f"{k}={_fmt(row[k])}" for k in ("n_natural", *GAP_HEADER_KEYS) if k != "mmd_bandwidth")
        buf.write(f"# class {row['label']} ({names[row['label']]}): {fields}\n")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["index", "set", "label", "label_name", "pred", "d_natural", "x", "y"])
    n = len(latents)
    for side, offset, preds, d in (("natural", 0, latents.pred_nat, latents.d_nat),
                                   ("perturbed", n, latents.pred_pert, latents.d_pert)):
        for i in range(n):
            label = int(latents.labels[i])
            writer.writerow([i, side, label, names[label], int(preds[i]), "" if d is None else f"{float(d[i]):.6g}",
                             f"{coords[offset + i, 0]:.6g}", f"{coords[offset + i, 1]:.6g}"])
    return buf.getvalue()
