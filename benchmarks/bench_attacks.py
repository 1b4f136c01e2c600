"""Attack speed: PGD-20 images per second, ours beside foolbox 3.3.4 in the same run.

CPU (default): the digits small CNN (checkpoints/digits-natural when present, else a freshly
initialised one: speed does not depend on the weights), PGD-20 at ε = 0.2 (step ε/4, random
start) on the 450 digits test images, one batch; ours (`atld.attacks.run_attack`) and foolbox's
LinfPGD with the same ε, step, steps and random start. One warm-up, then the median of --repeats.

GPU (--gpu, CUDA only): WRN-28-10 PGD-20 at ε = 8/255 on 10,000 CIFAR-shaped images in [0, 1]
(random: speed does not depend on content), fp32 with TF32 allowed, channels_last, eval mode.
Goal: under 30 s on an H100. Without CUDA it says "not measured: no GPU available".

    python -m benchmarks.bench_attacks [--threads 2] [--repeats 5]
    python -m benchmarks.bench_attacks --gpu [--batch-size 1000]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch

from atld.attacks.gradient import AttackConfig, run_attack
from atld.data import as_float01, get_spec, load_dataset
from atld.models import build_classifier


def _foolbox_pgd(model, x, y, config: AttackConfig):
    import foolbox as fb

    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0))
    attack = fb.attacks.LinfPGD(abs_stepsize=config.alpha, steps=config.steps, random_start=config.random_start)
    return lambda: attack(fmodel, x, y, epsilons=config.epsilon)[1]


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cpu_benchmark(repeats: int) -> None:
    spec = get_spec("digits")
    shipped = Path(__file__).resolve().parents[1] / "checkpoints" / "digits-natural"
    if (shipped / "card.json").is_file():
        from atld.runs.store import load_checkpoint

        model, source = load_checkpoint(shipped).classifier, str(shipped.name)
    else:
        torch.manual_seed(0)
        model, source = build_classifier("small-cnn", spec).eval(), "fresh small-cnn"
    data = load_dataset("digits")
    x, y = as_float01(data.x_test), data.y_test
    config = AttackConfig("pgd", spec.epsilon, steps=20)
    gen = torch.Generator().manual_seed(0)
    ours = _time(lambda: run_attack(model, x, y, config, gen), repeats)
    theirs = _time(_foolbox_pgd(model, x, y, config), repeats)
    n = len(y)
    print(f"device cpu ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, model {source}, n {n}, PGD-20 eps {spec.epsilon}, repeats {repeats}")
    print(f"ours     {ours:8.3f} s  {n / ours:9.1f} images/s")
    print(f"foolbox  {theirs:8.3f} s  {n / theirs:9.1f} images/s")
    print(f"ratio ours/foolbox speed: {theirs / ours:.2f}x")


def gpu_benchmark(batch_size: int, n: int) -> None:
    if not torch.cuda.is_available():
        print("WRN-28-10 PGD-20 on 10k CIFAR-shaped images: not measured: no GPU available")
        return
    torch.backends.cuda.matmul.allow_tf32 = True  # fp32 numbers with TF32 matmuls/convs (never bf16)
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    spec = get_spec("cifar10")
    torch.manual_seed(0)
    model = build_classifier("wrn-28-10", spec).to(device, memory_format=torch.channels_last).eval()
    x = torch.rand(n, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (n,), device=device)
    config = AttackConfig("pgd", spec.epsilon, steps=20)
    gen = torch.Generator(device).manual_seed(0)

    def attack_all():
        for xb, yb in zip(x.split(batch_size), y.split(batch_size)):
            run_attack(model, xb, yb, config, gen)
        torch.cuda.synchronize()

    run_attack(model, x[:batch_size], y[:batch_size], config, gen)  # warm-up (cudnn autotuning)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    attack_all()
    seconds = time.perf_counter() - t0
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, TF32 on, channels_last, "
          f"batch {batch_size}")
    print(f"WRN-28-10 PGD-20 on {n} images: {seconds:.1f} s ({n / seconds:.0f} images/s); goal < 30 s on an H100")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="the WRN-28-10 CUDA benchmark instead of the CPU one")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1000, help="GPU batch size")
    parser.add_argument("--n", type=int, default=10_000, help="GPU: number of images")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.gpu:
        gpu_benchmark(args.batch_size, args.n)
    else:
        cpu_benchmark(args.repeats)


if __name__ == "__main__":
    main()
