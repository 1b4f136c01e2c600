"""GPU training speed. Needs a CUDA GPU; results go to docs/benchmarks.md.

Measures, in one run on one GPU:
 1. one ATLD epoch and one natural epoch of WRN-28-10 on 50k CIFAR-shaped random images, batch
    128 (the trainer's fast path: bf16 autocast, channels_last, data on the GPU), after one
    warm-up epoch each (cuDNN autotuning, --compile); their ratio;
 2. the achieved FLOP/s of each epoch and its share of the GPU's dense bf16 peak (FLOPs of one
    step counted with torch.utils.flop_counter, scaled to the epoch) and the peak GPU memory;
 3. PGD-20 (ε = 8/255, step 2/255) over 10k CIFAR-shaped images against WRN-28-10 in TF32;
 4. a 10-epoch PreAct ResNet-18 ATLD run on the exact CIFAR-10 subset (8,068 train / 1,017 test
    images, dataset "cifar10-exact" under --data-root), wall time and clean / PGD-20 accuracy.

Goals: WRN-28-10 ATLD epoch <= 15 s on an H100 (>= 25 % of the dense bf16 peak) and <= 2.5x a
natural epoch; PGD-20 on 10k images <= 30 s; the 10-epoch PreAct ResNet-18 run < 1 minute.

    python -m benchmarks.bench_gpu --json gpu.json            # everything (about 3-5 minutes)
    python -m benchmarks.bench_gpu --only wrn pgd --compile   # a subset, with torch.compile
    python -m benchmarks.bench_gpu --device cpu --n-train 64 --batch-size 32 --arch wrn-10-1 --pgd-n 32 \\
        --pgd-batch 16 --exact-epochs 1 --exact-n 64 --exact-test-n 16   # a CPU dry run of the script
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sys
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from atld.attacks.gradient import AttackConfig, attack_batched
from atld.config.train import TrainConfig
from atld.data import ImageData, get_spec, load_dataset
from atld.train.metrics import evaluate_epoch
from atld.train.trainer import train

# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets.
BF16_PEAK_TFLOPS = {"H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0,
                    "H200": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0, "RTX 4090": 165.0}
DEFAULT_DATA_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data")
SECTIONS = ("wrn", "pgd", "exact")


def peak_tflops(name: str) -> float | None:
    """The dense bf16 peak of a GPU named like torch.cuda.get_device_name() (None if unknown)."""
    for key in sorted(BF16_PEAK_TFLOPS, key=len, reverse=True):
        if key.lower() in name.lower():
            return BF16_PEAK_TFLOPS[key]
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_cifar(n: int, n_test: int = 16, seed: int = 0) -> ImageData:
    """n CIFAR-shaped uint8 images with random labels (speed only, not accuracy)."""
    g = torch.Generator().manual_seed(seed)
    spec = get_spec("cifar10")
    return ImageData(spec, torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n,), generator=g),
                     torch.randint(0, 256, (n_test, 3, 32, 32), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (n_test,), generator=g))


def flops_per_step(config: TrainConfig, data: ImageData) -> int:
    """FLOPs (matmuls and convolutions, forward and backward, classifier and discriminator) of one
    training step on one batch, counted by torch.utils.flop_counter on an uncompiled model."""
    b = config.resolved_batch_size
    one = ImageData(data.spec, data.x_train[:b], data.y_train[:b], data.x_test, data.y_test)
    counter = _FlopCounter()
    with counter:
        train(config.with_overrides(epochs=1, compile=False, eval_limit=0), data=one)
    return counter.total


class _FlopCounter(TorchDispatchMode):
    """torch.utils.flop_counter's per-operator FLOP formulas without FlopCounterMode's module
    tracker, whose backward hooks do not support the torch.autograd.grad calls of the ATLD step."""

    def __init__(self):
        super().__init__()
        from torch.utils.flop_counter import FlopCounterMode

        self.registry = FlopCounterMode(display=False).flop_registry
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = self.registry.get(func._overloadpacket)
        if count is not None:
            self.total += count(*args, **kwargs, out_val=out)
        return out


def timed_epoch(config: TrainConfig, data: ImageData, device: torch.device) -> tuple[dict, torch.nn.Module]:
    """Train 2 epochs (the first warms up), return the second's seconds and the peak memory."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    result = train(config.with_overrides(epochs=2, lr_milestones=(), eval_limit=0), data=data)
    out = {"seconds": result.card["metrics"][1]["seconds"], "warmup_seconds": result.card["metrics"][0]["seconds"]}
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out, result.classifier


@contextlib.contextmanager
def tf32():
    """TF32 matmuls and convolutions for the duration (restored afterwards)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def bench_wrn(args, device, peak) -> tuple[dict, torch.nn.Module]:
    data = random_cifar(args.n_train)
    steps = -(-args.n_train // args.batch_size)
    out = {"images": args.n_train, "batch_size": args.batch_size, "arch": args.arch, "compile": args.compile}
    model = None
    for method in ("natural", "atld"):
        config = TrainConfig(dataset="cifar10", arch=args.arch, method=method, batch_size=args.batch_size,
                             lr=0.1, device=str(device), compile=args.compile)
        row, model = timed_epoch(config, data, device)
        row["flops_per_epoch"] = flops_per_step(config, data) * args.n_train / args.batch_size
        row["tflops_per_s"] = row["flops_per_epoch"] / row["seconds"] / 1e12
        if peak:
            row["share_of_bf16_peak"] = row["tflops_per_s"] / peak
        row["steps"] = steps
        out[method] = row
        print(f"{args.arch} {method:8s}: {row['seconds']:.2f} s/epoch (warm-up {row['warmup_seconds']:.2f} s), "
              f"{row['tflops_per_s']:.1f} TFLOP/s"
              + (f" = {100 * row['share_of_bf16_peak']:.1f} % of peak" if peak else "")
              + (f", peak memory {row['peak_memory_gib']:.2f} GiB" if "peak_memory_gib" in row else ""), flush=True)
    out["atld_over_natural_time"] = out["atld"]["seconds"] / out["natural"]["seconds"]
    out["atld_over_natural_flops"] = out["atld"]["flops_per_epoch"] / out["natural"]["flops_per_epoch"]
    print(f"ATLD / natural: {out['atld_over_natural_time']:.2f}x time, {out['atld_over_natural_flops']:.2f}x FLOPs")
    return out, model


def bench_pgd(args, device, model) -> dict:
    data = random_cifar(args.pgd_n, seed=1)
    model.eval()
    x, y = data.x_train.float().div_(255).to(device), data.y_train.to(device)
    attack = AttackConfig("pgd", 8 / 255, steps=20, step_size=2 / 255)
    gen = torch.Generator(device=device).manual_seed(0)
    with tf32():
        attack_batched(model, x[:args.pgd_batch], y[:args.pgd_batch], attack, args.pgd_batch, gen)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        attack_batched(model, x, y, attack, args.pgd_batch, gen)
        sync(device)
        seconds = time.perf_counter() - t0
    print(f"PGD-20 on {args.pgd_n} images ({args.arch}, TF32, batch {args.pgd_batch}): {seconds:.2f} s", flush=True)
    return {"images": args.pgd_n, "batch_size": args.pgd_batch, "arch": args.arch, "seconds": seconds}


def bench_exact(args, device) -> dict:
    data = load_dataset("cifar10-exact", args.data_root)
    n_train, n_test = args.exact_n or len(data.y_train), args.exact_test_n or len(data.y_test)
    data = ImageData(data.spec, data.x_train[:n_train], data.y_train[:n_train], data.x_test[:n_test],
                     data.y_test[:n_test])
    config = TrainConfig(dataset="cifar10-exact", arch="preact-resnet18", method="atld", epochs=args.exact_epochs,
                         batch_size=args.batch_size, lr=0.1, eval_limit=0, device=str(device), compile=args.compile)
    sync(device)
    t0 = time.perf_counter()
    result = train(config, data=data)
    sync(device)
    seconds = time.perf_counter() - t0
    n_test = len(data.y_test)
    t1 = time.perf_counter()
    with tf32():
        acc = evaluate_epoch(config.with_overrides(eval_limit=n_test), result.classifier, data, device, config.epochs)
    eval_seconds = time.perf_counter() - t1
    out = {"epochs": config.epochs, "train_images": len(data.y_train), "test_images": n_test,
           "batch_size": config.resolved_batch_size, "seconds": seconds, "eval_seconds": eval_seconds,
           "clean_acc": acc["test_clean_acc"], "pgd20_acc": acc["test_pgd20_acc"],
           "epoch_seconds": [m["seconds"] for m in result.card["metrics"]]}
    print(f"PreAct ResNet-18 ATLD, {config.epochs} epochs on cifar10-exact ({len(data.y_train)} images): "
          f"{seconds:.1f} s; clean {100 * out['clean_acc']:.1f} %, PGD-20 {100 * out['pgd20_acc']:.1f} % "
          f"on {n_test} test images (eval {eval_seconds:.1f} s)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--device", default="cuda", help="cuda | cuda:N (cpu only for a dry run of the script)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    p.add_argument("--arch", default="wrn-28-10", help="model of the epoch and PGD benchmarks")
    p.add_argument("--n-train", type=int, default=50_000, help="random CIFAR-shaped training images")
    p.add_argument("--batch-size", type=int, default=128, help="training batch")
    p.add_argument("--pgd-n", type=int, default=10_000, help="images attacked by PGD-20")
    p.add_argument("--pgd-batch", type=int, default=500, help="PGD batch")
    p.add_argument("--exact-epochs", type=int, default=10, help="epochs of the PreAct ResNet-18 run")
    p.add_argument("--exact-n", type=int, default=0, help="use only the first N exact-subset images (0: all)")
    p.add_argument("--exact-test-n", type=int, default=0, help="evaluate on the first N test images (0: all)")
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT, help="folder holding cifar10/exact/")
    p.add_argument("--compile", action="store_true", help="torch.compile the classifier")
    p.add_argument("--peak-tflops", type=float, help="dense bf16 peak of this GPU (default: looked up by name)")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.stderr.write("error: bench_gpu.py needs a CUDA GPU and none is available here "
                         "(for a dry run of the script on the CPU pass --device cpu with small sizes)\n")
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = args.peak_tflops or (peak_tflops(name) if device.type == "cuda" else None)
    header = {"date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
              "bf16_peak_tflops": peak, "command": " ".join(sys.argv)}
    print(json.dumps(header))
    results: dict = {"header": header}
    model = None
    if "wrn" in args.only:
        results["wrn"], model = bench_wrn(args, device, peak)
    if "pgd" in args.only:
        if model is None:
            from atld.models import build_classifier

            model = build_classifier(args.arch, get_spec("cifar10")).to(device)
        results["pgd"] = bench_pgd(args, device, model)
    if "exact" in args.only:
        results["exact"] = bench_exact(args, device)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
