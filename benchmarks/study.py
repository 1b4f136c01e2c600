"""Reproduction study: natural, PGD-AT, Feature Scattering and ATLD trained with the
same architecture, data and budget, then evaluated with the full table.

Three phases, each resumable (a finished run or evaluation found on disk is reused):
  train     one run per (method, seed) under OUT/<method>-s<seed> (card.json + safetensors)
  evaluate  the table (natural, FGSM, PGD-20, CW-20, AutoAttack, adaptive) for each run, with
            ATLD- / ATLD / ATLD+ inference where the run has a discriminator -> OUT/<run>/eval.json
  curve     PGD-20 accuracy against ε for the first seed's runs -> OUT/curve.json
  summary   mean ± std over seeds -> OUT/summary.md and OUT/summary.json
  ship      (on request) copy the first seed's runs to checkpoints, e.g. checkpoints/mnist-<method>
  shipped   (on request) the table of any run directories' stored evaluations (--runs, e.g. the
            shipped checkpoints) with training minutes and, with --data-root, D's eval-mode AUC
            -> OUT/shipped.md and OUT/shipped.json
(benchmarks/study_figure.py draws curve.json as a PNG.)

Examples (the commands used for docs/results.md):
  python -m benchmarks.study --dataset digits --seeds 0 1 2 --out runs/study-digits
  python -m benchmarks.study --dataset mnist --data-root ../shared/data/mnist --seeds 0 \\
      --epochs 2 --train-limit 20000 --out runs/study-mnist
  python -m benchmarks.study --dataset cifar10-exact --data-root ../shared/data --device cuda \\
      --arch preact-resnet18 --epochs 100 --batch-size 128 --lr 0.1 --out runs/study-cifar10-exact
  python -m benchmarks.study --phases shipped --dataset mnist --data-root ../shared/data \\
      --runs checkpoints/mnist-* --out runs/shipped-mnist      # the real-data tables

Units: ε comes from the dataset registry ([0, 1] pixel units) unless --epsilon is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from atld.config.train import TrainConfig
from atld.data import ImageData, load_dataset
from atld.runs.card import read_card
from atld.train.trainer import train

STUDY_METHODS = ("natural", "pgd-at", "feature-scatter", "atld")


def subset(data: ImageData, n_train: int | None, n_test: int | None) -> ImageData:
    """The first n_train training and n_test test images (None: all); labels are shuffled in
    the files, so a prefix is a fair sample."""
    return dataclasses.replace(
        data,
        x_train=data.x_train[:n_train] if n_train else data.x_train,
        y_train=data.y_train[:n_train] if n_train else data.y_train,
        x_test=data.x_test[:n_test] if n_test else data.x_test,
        y_test=data.y_test[:n_test] if n_test else data.y_test)


def train_config(args, method: str, seed: int) -> TrainConfig:
    """Same architecture, data and budget for every method: only `method` and `seed` differ."""
    overrides = {k: v for k, v in {"arch": args.arch, "epochs": args.epochs, "batch_size": args.batch_size,
                                    "lr": args.lr, "epsilon": args.epsilon}.items() if v is not None}
    return TrainConfig(dataset=args.dataset, method=method, seed=seed, device=args.device,
                       eval_limit=args.train_eval_limit, **overrides)


def run_dir(args, method: str, seed: int) -> Path:
    return args.out / f"{method}-s{seed}"


def phase_train(args, data: ImageData) -> dict:
    """Train every (method, seed) not already finished; returns {run name: wall seconds}."""
    walls = {}
    for seed in args.seeds:
        for method in args.methods:
            rd = run_dir(args, method, seed)
            if (rd / "card.json").exists() and read_card(rd).get("status") == "finished":
                print(f"[train] {rd.name}: finished run found, reused", flush=True)
                continue
            config = train_config(args, method, seed)
            t0 = time.perf_counter()
            print(f"[train] {rd.name}: {config.epochs} epochs ...", flush=True)
            resume = (rd / "card.json").exists()
            train(config, data=data, run_dir=rd, name=f"{args.dataset}-{method}-s{seed}", resume=resume,
                  command="python " + " ".join(sys.argv))
            walls[rd.name] = round(time.perf_counter() - t0, 1)
            print(f"[train] {rd.name}: done in {walls[rd.name]} s", flush=True)
    return walls


CHEAP_ATTACKS = ("natural", "fgsm", "pgd20", "cw20")
COSTLY_ATTACKS = ("autoattack", "adaptive")  # run on --aa-limit images (AutoAttack: 4 attacks)
CURVE_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)  # ε of the curve, as fractions of the dataset's ε


def finished_runs(args) -> list[Path]:
    return [run_dir(args, m, s) for s in args.seeds for m in args.methods
            if (run_dir(args, m, s) / "card.json").exists()
            and read_card(run_dir(args, m, s)).get("status") == "finished"]


def phase_evaluate(args, data: ImageData) -> dict:
    """The full table for every finished run: cheap attacks on --eval-limit test images, AutoAttack
    and the adaptive attack on the first --aa-limit of them. Rows go to OUT/<run>/eval.json and
    into the card ("evaluations"). Returns {run name: wall seconds}."""
    from atld.config.eval import EvalConfig
    from atld.evaluate.report import store_evaluation
    from atld.evaluate.runner import evaluate

    walls = {}
    for rd in finished_runs(args):
        target = rd / "eval.json"
        if target.exists():
            print(f"[eval] {rd.name}: eval.json found, reused", flush=True)
            continue
        t0 = time.perf_counter()
        rows, metas = [], []
        for attacks, limit in ((CHEAP_ATTACKS, args.eval_limit), (COSTLY_ATTACKS, args.aa_limit)):
            attacks = tuple(a for a in attacks if a in args.attacks)
            if not attacks:
                continue
            config = EvalConfig(attacks=attacks, limit=limit, device=args.device, seed=0,
                                batch_size=args.eval_batch)
            print(f"[eval] {rd.name}: {', '.join(attacks)} on n <= {limit} ...", flush=True)
            report = evaluate(rd, config, data=data)
            store_evaluation(rd, report)
            rows += report.rows
            metas.append(report.meta)
        walls[rd.name] = round(time.perf_counter() - t0, 1)
        target.write_text(json.dumps({"rows": rows, "meta": metas, "wall_seconds": walls[rd.name]}, indent=1))
        print(f"[eval] {rd.name}: done in {walls[rd.name]} s", flush=True)
    return walls


def phase_curve(args, data: ImageData) -> None:
    """PGD-20 robust accuracy against ε for every finished run of the first seed (ATLD- for all,
    and ATLD with the non-adaptive protocol where the run has a discriminator) -> OUT/curve.json."""
    from atld.evaluate.runner import robust_accuracy_curve

    target = args.out / "curve.json"
    curves = json.loads(target.read_text()) if target.exists() else {}
    eps = args.epsilon if args.epsilon is not None else data.spec.epsilon
    epsilons = [round(f * eps, 6) for f in CURVE_FRACTIONS]
    for rd in finished_runs(args):
        if not rd.name.endswith(f"-s{args.seeds[0]}"):
            continue
        modes = ["atld-"] + (["atld"] if read_card(rd)["method"] == "atld" else [])
        for mode in modes:
            key = f"{rd.name}/{mode}"
            if key in curves:
                continue
            print(f"[curve] {key} ...", flush=True)
            rows = robust_accuracy_curve(rd, epsilons, attack="pgd20", inference=mode, limit=args.eval_limit,
                                         data=data, device=args.device, batch_size=args.eval_batch)
            curves[key] = [{"epsilon": r["epsilon"], "accuracy": r["accuracy"], "n": r["n"],
                            "ci_low": r["ci_low"], "ci_high": r["ci_high"]} for r in rows]
            target.write_text(json.dumps(curves, indent=1))


def phase_summary(args) -> str:
    """Mean ± std over seeds of every (method, inference, attack) cell -> OUT/summary.{json,md}."""
    cells: dict[tuple[str, str, str], list[dict]] = {}
    for rd in finished_runs(args):
        if not (rd / "eval.json").exists():
            continue
        method = read_card(rd)["method"]
        for row in json.loads((rd / "eval.json").read_text())["rows"]:
            cells.setdefault((method, row["inference"], row["attack"]), []).append(row)
    summary = []
    for (method, inference, attack), rows in sorted(cells.items()):
        acc = [100 * r["accuracy"] for r in rows]
        summary.append({"method": method, "inference": inference, "attack": attack, "seeds": len(rows),
                        "mean": statistics.fmean(acc), "std": statistics.stdev(acc) if len(acc) > 1 else None,
                        "per_seed": acc, "n": rows[0]["n"], "protocol": rows[0]["protocol"],
                        "ci_low": 100 * rows[0]["ci_low"], "ci_high": 100 * rows[0]["ci_high"]})
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    attacks = [a for a in (*CHEAP_ATTACKS, *COSTLY_ATTACKS) if a in args.attacks]
    lines = ["| method | inference | seeds | " + " | ".join(attacks) + " |", "|---|---|---|" + "---|" * len(attacks)]
    for method in STUDY_METHODS:
        for inference in ("atld-", "atld", "atld+"):
            found = {s["attack"]: s for s in summary if s["method"] == method and s["inference"] == inference}
            if not found:
                continue
            def cell(s):
                if s is None:
                    return "–"
                if s["std"] is None:  # one seed: the Wilson 95 % interval instead
                    return f"{s['mean']:.1f} ({s['ci_low']:.1f}–{s['ci_high']:.1f})"
                return f"{s['mean']:.1f} ± {s['std']:.1f}"
            seeds = max(s["seeds"] for s in found.values())
            cells = " | ".join(cell(found.get(a)) for a in attacks)
            lines.append(f"| {method} | {inference} | {seeds} | {cells} |")
    ns = sorted({(s["attack"], s["n"]) for s in summary})
    lines.append("")
    lines.append("Accuracy in %: mean ± std over seeds; with one seed, the Wilson 95 % interval. "
                 "n (test images) per attack: " + ", ".join(f"{a} {n}" for a, n in ns))
    text = "\n".join(lines) + "\n"
    (args.out / "summary.md").write_text(text)
    return text


def phase_ship(args) -> None:
    """Copy the first seed's runs of --ship-methods to <ship-prefix>-<method> (model + card with
    its evaluations; no optimizer state), e.g. checkpoints/mnist-atld."""
    from atld.runs.store import load_checkpoint, save_checkpoint

    for method in args.ship_methods:
        src = run_dir(args, method, args.seeds[0])
        if not (src / "eval.json").exists():
            print(f"[ship] {src.name}: not evaluated yet, skipped", flush=True)
            continue
        run = load_checkpoint(src)
        dest = Path(f"{args.ship_prefix}-{method}")
        card = {k: v for k, v in run.card.items() if k not in ("files", "sha256")}
        card["name"] = dest.name
        save_checkpoint(dest, card, run.classifier, run.discriminator, train_state=None)
        print(f"[ship] {src} -> {dest}", flush=True)


SHIPPED_ATTACKS = ("natural", "fgsm", "pgd20", "cw20", "autoattack", "adaptive")


def phase_shipped(args, data: ImageData | None) -> str:
    """One row per (run, inference mode) from each run's stored evaluation (its card), with the
    training minutes, the device and, for runs with D and when `data` is given, D's AUC in eval mode
    (natural vs PGD-20 latents, `atld.evaluate.discriminator`) on the first --eval-limit test images."""
    from atld.data.loaders import as_float01
    from atld.evaluate.discriminator import discriminator_check
    from atld.runs.store import load_checkpoint

    rows, lines = [], ["| checkpoint | inference | " + " | ".join(SHIPPED_ATTACKS) + " | D's AUC | training |",
                       "|---|---|" + "---|" * len(SHIPPED_ATTACKS) + "---|---|"]
    for rd in sorted(args.runs):
        card = read_card(rd)
        stored = (card.get("evaluations") or {}).get("rows", [])
        minutes = sum(m.get("seconds", 0) for m in card.get("metrics", [])) / 60
        auc = None
        if card.get("has_discriminator") and data is not None:
            run = load_checkpoint(rd)
            n = min(args.eval_limit, len(data.y_test))
            auc = discriminator_check(run, as_float01(data.x_test[:n]), data.y_test[:n], run.spec.epsilon).auc_pgd
        for inference in ("atld-", "atld", "atld+"):
            found = {r["attack"]: r for r in stored if r["inference"] == inference}
            if not found:
                continue
            cells = [f"{100 * found[a]['accuracy']:.1f}" if a in found else "–" for a in SHIPPED_ATTACKS]
            n = sorted({r["n"] for r in found.values()})
            lines.append(f"| {card['name']} | {inference} | " + " | ".join(cells) +
                         f" | {'–' if auc is None or inference != 'atld-' else f'{auc:.2f}'} | "
                         f"{card['epochs_done']} ep, {minutes:.1f} min ({card['config'].get('device', '?')}) |")
            rows.append({"run": card["name"], "inference": inference, "n": n, "d_auc_eval": auc,
                         "train_minutes": round(minutes, 2), "epochs": card["epochs_done"], "status": card["status"],
                         **{a: found[a]["accuracy"] for a in SHIPPED_ATTACKS if a in found}})
    ns = sorted({n for r in rows for n in r["n"]})
    lines += ["", f"Accuracy in % on n = {', '.join(map(str, ns))} test images (the card's stored evaluation); "
                  "D's AUC: eval mode, natural vs PGD-20 latents; training: the card's per-epoch seconds."]
    (args.out / "shipped.json").write_text(json.dumps(rows, indent=1))
    text = "\n".join(lines) + "\n"
    (args.out / "shipped.md").write_text(text)
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--data-root", type=Path)
    p.add_argument("--out", type=Path, required=True, help="study folder (runs, evaluations, summary)")
    p.add_argument("--methods", nargs="+", default=list(STUDY_METHODS), choices=STUDY_METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--arch", help="classifier (default: the dataset's)")
    p.add_argument("--epochs", type=int, help="default: TrainConfig's")
    p.add_argument("--batch-size", type=int, help="default: TrainConfig's")
    p.add_argument("--lr", type=float, help="default: TrainConfig's")
    p.add_argument("--epsilon", type=float, help="[0, 1] pixel units; default: the dataset's")
    p.add_argument("--train-limit", type=int, help="train on the first N training images (budget)")
    p.add_argument("--train-eval-limit", type=int, default=0,
                   help="test images for the per-epoch clean/PGD-20 metric during training (0: skip)")
    p.add_argument("--eval-limit", type=int, default=450, help="test images for natural, FGSM, PGD-20, CW-20, curve")
    p.add_argument("--aa-limit", type=int, default=200, help="test images for AutoAttack and the adaptive attack")
    p.add_argument("--eval-batch", type=int, default=256, help="images per attack batch")
    p.add_argument("--attacks", nargs="+", default=[*CHEAP_ATTACKS, *COSTLY_ATTACKS],
                   choices=[*CHEAP_ATTACKS, *COSTLY_ATTACKS])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (a shared machine: keep it low)")
    p.add_argument("--phases", nargs="+", default=["train", "evaluate", "curve", "summary"],
                   choices=["train", "evaluate", "curve", "summary", "ship", "shipped"])
    p.add_argument("--runs", nargs="+", type=Path, default=[], help="shipped phase: run directories to tabulate")
    p.add_argument("--ship-prefix", default=None, help="ship phase: destination prefix, e.g. checkpoints/mnist")
    p.add_argument("--ship-methods", nargs="+", default=["natural", "pgd-at", "atld"], choices=STUDY_METHODS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    from atld.data.registry import get_spec

    shipped_only = args.phases == ["shipped"] and args.data_root is None and get_spec(args.dataset).needs_root
    data = None if shipped_only else load_dataset(args.dataset, args.data_root)
    log = {"argv": sys.argv, "torch": torch.__version__, "machine": platform.machine(),
           "cpu": _cpu_name(), "threads": args.threads, "device": args.device}
    for phase in args.phases:
        t0 = time.perf_counter()
        if phase == "train":
            log["train_seconds"] = phase_train(args, subset(data, args.train_limit, None))
        elif phase == "evaluate":
            log["eval_seconds"] = phase_evaluate(args, data)
        elif phase == "curve":
            phase_curve(args, data)
        elif phase == "shipped":
            print(phase_shipped(args, data))
        elif phase == "ship":
            if not args.ship_prefix:
                p.error("the ship phase needs --ship-prefix")
            phase_ship(args)
        else:
            print(phase_summary(args))
        log[f"{phase}_wall"] = round(time.perf_counter() - t0, 1)
    (args.out / f"log-{'-'.join(args.phases)}-{int(time.time())}.json").write_text(json.dumps(log, indent=1))
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
