"""`python -m atld embed`: project natural and perturbed latents of a checkpoint to 2-D and compute
the gap numbers (in latent space), the same pipeline and CSV as the app's Latent explorer
(`atld.latent.maps`: `# key: value` lines with the gap numbers, then one row per point).

Example: python -m atld embed --checkpoint checkpoints/digits-atld --attack pgd20 --projection pca \\
             --limit 500 --out atld-pgd20.csv

With `--trajectories N` it follows the first N images along the attack's iterations instead
(`atld.latent.path_map`: step 0 natural, one row per image and step, and a row "imt" for the IMT
step back of a run with a discriminator), on a PCA map of the first `--limit` natural images;
`--out` ending in .json writes JSON, otherwise CSV; `--html FILE` also writes the animation.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path

from atld.config.fields import add_flags, from_flags
from atld.config.latent import LatentConfig
from atld.errors import DataError, check_int_in


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, required=True, metavar="DIR", help="run directory (card.json + model)")
    p.add_argument("--out", type=Path, help="CSV file to write (default, or '-': standard output)")
    p.add_argument("--data-root", type=Path,
                   help="local folder holding the dataset files (default: the shipped test sample)")
    p.add_argument("--cache-dir", type=Path, help="cache folder (default: $ATLD_CACHE/latent or ~/.cache/atld/latent)")
    p.add_argument("--no-cache", action="store_true", help="recompute everything; write no cache")
    p.add_argument("--trajectories", type=int, nargs="?", const=TRAJECTORY_DEFAULT, metavar="N",
                   help=f"follow the first N images (default {TRAJECTORY_DEFAULT}, at most {TRAJECTORY_MAX}) along "
                        "the attack's iterations instead of writing the map")
    p.add_argument("--html", type=Path, metavar="FILE", help="with --trajectories: write the animation as HTML")
    add_flags(p, LatentConfig)


TRAJECTORY_DEFAULT = 20
TRAJECTORY_MAX = 500


def run(args: argparse.Namespace) -> int:
    import torch

    from atld.config.settings import settings
    from atld.data.loaders import load_for_cli, sample_notice
    from atld.device import resolve_device
    from atld.fileio import check_distinct_outputs, check_output_file, write_output
    from atld.latent import LatentCache, latent_map, map_csv
    from atld.runs.store import load_checkpoint

    config = from_flags(LatentConfig, args)  # validates every flag before any work
    if args.html is not None and args.trajectories is None:
        raise DataError("--html writes the trajectory animation: give --trajectories too")
    if args.trajectories is not None:
        check_int_in("--trajectories", args.trajectories, 1, TRAJECTORY_MAX)
        if config.attack == "natural":
            raise DataError("--trajectories follows an attack: give --attack (e.g. pgd20), not natural")
    check_output_file(args.out, "--out")
    if args.html is not None:
        check_output_file(args.html, "--html")
    check_distinct_outputs({"--out": args.out, "--html": args.html})
    device = resolve_device(config.device)
    run_ = load_checkpoint(args.checkpoint, device=device)
    data = load_for_cli(run_.spec.name, args.data_root, settings().samples_dir)
    if data.sample and config.split != "test":
        raise DataError(f"the shipped sample of {run_.spec.name} holds test images only: give --data-root DIR for "
                        f"the {config.split} split")
    sys.stderr.write(sample_notice(data))
    x, y = data.split(config.split)
    if len(y) < 2:
        raise DataError(f"the {config.split} split of {run_.spec.name} has fewer than 2 images")
    if args.trajectories is not None:
        return _trajectories(args, config, run_, x, y)
    x, y = x[:config.limit], y[:config.limit]
    start = time.perf_counter()
    m = latent_map(run_, x, y, config, LatentCache(args.cache_dir, enabled=not args.no_cache), device)
    seconds = time.perf_counter() - start
    meta = {"checkpoint": str(args.checkpoint), "model_sha256": run_.model_hash, "method_trained": run_.method,
            "dataset": run_.spec.name, "split": config.split, "torch": torch.__version__}
    where = write_output(args.out, map_csv(m, meta, run_.spec.labels()), "--out")
    sys.stderr.write(f"wrote {2 * len(m.latents)} points to {where} in {seconds:.1f} s "
                     f"(clean acc {m.latents.accuracy_nat:.3f}, {config.attack} acc {m.latents.accuracy_pert:.3f}, "
                     f"two-sample acc {m.gap['two_sample_accuracy']:.3f}, MMD² p {m.gap['mmd_p_value']:.3g})\n")
    return 0


def _trajectories(args, config: LatentConfig, run_, x, y) -> int:
    import json

    import torch

    from atld.attacks.registry import attack_from_name
    from atld.data.loaders import as_float01
    from atld.fileio import is_stdout, write_output
    from atld.latent.trajectories import PATH_COLUMNS, path_map, path_rows

    n = min(args.trajectories, len(y))
    attack = attack_from_name(config.attack, run_.spec.epsilon_or_default(config.epsilon))
    torch.manual_seed(config.seed)
    start = time.perf_counter()
    pm = path_map(run_, as_float01(x[:n]), y[:n],
                  attack, range(n), config.seed, as_float01(x[:config.limit]), y[:config.limit])
    seconds = time.perf_counter() - start
    names = run_.spec.labels()
    rows = path_rows(pm, names)
    meta = {"checkpoint": str(args.checkpoint), "model_sha256": run_.model_hash, "dataset": run_.spec.name,
            "split": config.split, "attack": f"{attack.label} eps={attack.epsilon:.6g} step={attack.alpha:.6g}",
            "steps": pm.path.steps, "imt": pm.imt_coords is not None, "n_images": n,
            "map": f"PCA fitted on {n + len(pm.background)} natural logits (the followed images and the first "
                   f"{len(pm.background)} of the split)",
            "accuracy_per_step": [round(float(a), 6) for a in pm.path.accuracy()],
            "accuracy_after_imt": None if pm.path.imt_accuracy is None else round(pm.path.imt_accuracy, 6),
            "seed": config.seed, "torch": torch.__version__}
    if not is_stdout(args.out) and args.out.suffix.lower() == ".json":
        text = json.dumps({"meta": meta, "columns": list(PATH_COLUMNS), "rows": rows}, indent=1)
    else:
        buf = io.StringIO()
        for key, value in meta.items():
            buf.write(f"# {key}: {json.dumps(value) if isinstance(value, list) else value}\n")
        writer = csv.DictWriter(buf, PATH_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else str(v).lower() if isinstance(v, bool) else v)
                          for k, v in r.items()} for r in rows)
        text = buf.getvalue()
    where = write_output(args.out, text, "--out")
    if args.html is not None:
        from atld.latent.path_figure import path_figure

        fig = path_figure(pm.path, pm.coords, pm.imt_coords, pm.background, pm.background_labels, names,
                          indices=pm.indices, title=f"{run_.name}: {attack.label} at ε = {attack.epsilon:.3g}")
        write_output(args.html, fig.to_html(include_plotlyjs=True, full_html=True, auto_play=False), "--html")
    sys.stderr.write(f"wrote {len(rows)} path points ({n} images, {pm.path.steps} steps"
                     + (", IMT" if pm.imt_coords is not None else "") + f") to {where} in {seconds:.1f} s "
                     f"(accuracy {pm.path.accuracy()[0]:.3f} natural, {pm.path.accuracy()[-1]:.3f} after the attack"
                     + (f", {pm.path.imt_accuracy:.3f} after IMT" if pm.path.imt_accuracy is not None else "")
                     + ")" + (f"; animation: {args.html}" if args.html is not None else "") + "\n")
    return 0
