"""How long a user waits for an imported model on the CPU: the import, then its first latent view.

A WRN-28-10 in RobustBench's layout (random weights, random BatchNorm statistics; the time does
not depend on the values), saved the way RobustBench's checkpoints are (`torch.save` of
{"state_dict": ...} with DataParallel's "module." prefix), then:

- import: `import_weights` (read, hash, opcode scan, torch.load(weights_only=True), every check,
  the sample check on --check-images images of the shipped CIFAR-10 sample, the save, the lab's
  own load of the new run);
- first latent view: what `python -m atld embed` and the Latent explorer compute for the
  default view (PGD-20 at ε = 8/255, logits, PCA, gap numbers) on the first --images images of
  the shipped sample, with an empty cache;
- the estimate `estimate_seconds` gives for each, beside the measurement.

    python -m benchmarks.bench_import                      # WRN-28-10, 200 + 100 images
    python -m benchmarks.bench_import --arch rb-wrn-16-2   # something quick
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="rb-wrn-28-10")
    parser.add_argument("--check-images", type=int, default=200)
    parser.add_argument("--images", type=int, default=100, help="images of the first latent view")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from atld.config.latent import LatentConfig
    from atld.config.settings import settings
    from atld.data.loaders import as_float01, load_sample
    from atld.data.registry import get_spec
    from atld.latent import LatentCache, latent_map
    from atld.models.registry import build_classifier
    from atld.runs.importer import estimate_seconds, import_weights
    from atld.runs.store import load_checkpoint

    dataset = "cifar10-exact"
    print(f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} before, torch {torch.__version__}, {args.threads} thread(s)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        model = build_classifier(args.arch, get_spec(dataset))
        torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp / "model.pt")
        size = (tmp / "model.pt").stat().st_size
        del model
        start = time.perf_counter()
        result = import_weights(tmp / "model.pt", args.arch, dataset, runs_root=tmp / "runs",
                                check_images=args.check_images)
        imported = time.perf_counter() - start
        guess = estimate_seconds(args.arch, dataset, args.check_images, "forward", threads=args.threads)
        print(f"import of {size / 2**20:.0f} MiB ({args.arch}, sample check of {args.check_images} images): "
              f"{imported:.1f} s (estimate for the sample check alone: {guess:.0f} s)")

        start = time.perf_counter()
        run = load_checkpoint(result.path)
        data = load_sample(dataset, settings().samples_dir)
        x, y = as_float01(data.x_test[:args.images]), data.y_test[:args.images]
        loaded = time.perf_counter() - start
        start = time.perf_counter()
        latent_map(run, x, y, LatentConfig(limit=args.images), LatentCache(tmp / "cache", enabled=False), "cpu")
        mapped = time.perf_counter() - start
        guess = estimate_seconds(args.arch, dataset, args.images, "latent-map-pgd20", threads=args.threads)
        print(f"first latent view (PGD-20, logits, PCA, gap numbers) on {args.images} images: {mapped:.1f} s "
              f"after {loaded:.1f} s loading the run and the sample (estimate: {guess:.0f} s)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
