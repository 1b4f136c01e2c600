"""What ATLD's discriminator learns, and a discriminator that judges single images (docs/results.md,
"What D learned").

    python benchmarks/study_d.py train OUT DATA_ROOT [NAME ...]   # trains the variants one after the other
    python benchmarks/study_d.py eval OUT DATA_ROOT [NAME ...]    # evaluates each trained one (writes OUT/NAME.json)
    python benchmarks/study_d.py table OUT [NAME ...]             # the study table (markdown) from OUT/*.json

Every variant is the shipped ATLD checkpoint's recipe (checkpoints/make_real.sh, seed 0) with D's
normalisation, how D sees a training batch and D's training perturbation changed. Training runs
`python -m atld train` from a frozen copy of the package (OUT/snapshot), so editing the worktree
while the queue runs changes nothing; one thread per process. The shipped released-recipe
checkpoints are evaluated by `eval` too (names mnist-atld, fashion-mnist-atld, cifar10-atld).

Evaluation (`study_row`): the first `--limit` (500) test images for clean, PGD-20, IMT and D's
check; AutoAttack and the adaptive attack on the first `--aa-limit` (200).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ATLD_SGD = ["--optimizer", "sgd", "--lr", "0.1", "--weight-decay", "2e-4"]  # as checkpoints/make_real.sh
RECIPES = {  # dataset, epochs, extra flags: the shipped ATLD recipes
    "mnist": ("mnist", 8, ATLD_SGD),
    "fashion-mnist": ("fashion-mnist", 8, [*ATLD_SGD, "--epsilon-ramp-epochs", "3"]),
    "cifar10": ("cifar10-exact", 15, []),
}
# With PGD perturbations ATLD's classifier loss did not train on MNIST (measured, seed 0; each run
# stopped by the collapse check, every prediction one class): with the released SGD recipe
# ("layer-mixed-pgd-sgd", at epoch 3, when ε reached 0.3), with the dataset's Adam recipe and a tenth
# of the logit-pairing weight ("layer-mixed-pgd-ls", epoch 3), and with label smoothing off as well
# ("batch-mixed-pgd-pair", epoch 5). The "batch-mixed-pgd" variants therefore train the classifier
# with PGD-AT's loss (cross-entropy on the PGD-10 examples, no label smoothing, no pairing) and the
# dataset's default optimizer, as the shipped PGD-AT checkpoints; D, which never sends a gradient to
# the classifier, learns on the side to tell natural latents from PGD latents, one image at a time:
# exactly the question of the study.
PGD_AT_LOSS = ["--label-smoothing", "0", "--gap-weight-scale", "0"]
PAIRING = ["--label-smoothing", "0", "--gap-weight-scale", "0.05"]
D_VARIANTS = {  # name suffix: (d_norm, d_batch, d_perturbation, flags replacing the recipe's optimizer flags or None)
    "batch-mixed-pgd": ("batch", "mixed", "pgd", PGD_AT_LOSS),
    "batch-mixed-pgd-pair": ("batch", "mixed", "pgd", PAIRING),
    "layer-mixed-pgd-pair": ("layer", "mixed", "pgd", PAIRING),
    "layer-mixed-pgd-sgd": ("layer", "mixed", "pgd", None),
    "layer-mixed-pgd-ls": ("layer", "mixed", "pgd", ["--gap-weight-scale", "0.05"]),
    "layer-mixed-lmae": ("layer", "mixed", "lmae", None),
}
QUEUE = ("mnist-batch-mixed-pgd", "mnist-layer-mixed-lmae", "fashion-mnist-batch-mixed-pgd", "cifar10-batch-mixed-pgd")
DEFAULT_ROOT = str(REPO.parent / "shared" / "data")
RELEASED = ("mnist-atld", "fashion-mnist-atld", "cifar10-atld")


def split(name: str) -> tuple[str, tuple]:
    for dataset in sorted(RECIPES, key=len, reverse=True):
        if name.startswith(dataset + "-") and name[len(dataset) + 1:] in D_VARIANTS:
            return dataset, D_VARIANTS[name[len(dataset) + 1:]]
    raise SystemExit(f"unknown variant {name!r}; names are <{'|'.join(RECIPES)}>-<{'|'.join(D_VARIANTS)}>")


def train_command(name: str, out: Path, data_root: str) -> list[str]:
    key, (norm, how, pert, replace) = split(name)
    dataset, epochs, flags = RECIPES[key]
    if replace is not None:
        flags = [f for f in flags if f not in ATLD_SGD] + replace
    return [sys.executable, "-m", "atld", "train", "--dataset", dataset, "--data-root", data_root, "--method", "atld",
            "--epochs", str(epochs), "--seed", "0", "--device", "cpu", "--amp", "off", "--d-norm", norm,
            "--d-batch", how, "--d-perturbation", pert, "--out", str(out / name), "--name", name, "--quiet", *flags]


def train(out: Path, data_root: str, names, after: int | None = None) -> None:
    while after and Path(f"/proc/{after}").exists():  # a training of the queue before this one
        time.sleep(5)
    snapshot = out / "snapshot"
    if not snapshot.exists():
        shutil.copytree(REPO / "atld", snapshot / "atld", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(snapshot), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for name in names:
        if (out / name / "card.json").exists():
            print(f"{name}: already trained", flush=True)
            continue
        cmd = train_command(name, out, data_root)
        print(f"{time.strftime('%H:%M:%S')} {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.time()
        rc = subprocess.run(cmd, env=env, cwd=out).returncode
        print(f"{time.strftime('%H:%M:%S')} {name}: exit {rc} after {time.time() - t0:.0f} s", flush=True)


def study_row(run, data, limit: int, aa_limit: int, log=print) -> dict:
    """One variant's numbers: the bare classifier's clean / PGD-20 / AutoAttack, IMT's clean,
    non-adaptive PGD-20 and AutoAttack and adaptive accuracy, ATLD+'s window share, D's AUCs
    (per batch, per image, mixed), IMT's step against the reversed and a random step, and the
    training-perturbation diagnostic. PGD-20 and D's check on the first `limit` test images,
    AutoAttack and the adaptive attack on the first `aa_limit`."""
    from atld.config.eval import EvalConfig
    from atld.evaluate.runner import evaluate
    from atld.evaluate.verdict import verdicts

    log(f"natural and PGD-20 on {limit}")
    first = evaluate(run, EvalConfig(attacks=("natural", "pgd20"), limit=limit, device="cpu"), data)
    log(f"AutoAttack and the adaptive attack on {aa_limit}")
    second = evaluate(run, EvalConfig(attacks=("autoattack", "adaptive"), inferences=("atld-", "atld"),
                                      limit=aa_limit, device="cpu"), data)
    rows = first.rows + second.rows
    acc = {(r["attack"], r["inference"]): r["accuracy"] for r in rows}
    check = first.meta["discriminator"]
    cfg = run.config
    return {"dataset": cfg.dataset, "d_norm": str(cfg.d_norm), "d_batch": str(cfg.d_batch),
            "d_perturbation": str(cfg.d_perturbation), "label_smoothing": cfg.label_smoothing,
            "gap_weight_scale": cfg.resolved_gap_weight_scale, "optimizer": str(cfg.resolved_optimizer),
            "n": limit, "aa_n": aa_limit, "epochs": run.card.get("epochs_done"), "status": run.card.get("status"),
            "clean": acc[("natural", "atld-")], "pgd20": acc[("pgd20", "atld-")],
            "autoattack": acc[("autoattack", "atld-")], "adaptive_bare": acc[("adaptive", "atld-")],
            "imt_clean": acc[("natural", "atld")], "imt_pgd20": acc[("pgd20", "atld")],
            "imt_autoattack": acc[("autoattack", "atld")], "imt_adaptive": acc[("adaptive", "atld")],
            "plus_clean": acc[("natural", "atld+")], "plus_pgd20": acc[("pgd20", "atld+")],
            "in_window_natural": check["in_window_natural"], "in_window_pgd": check["in_window_pgd"],
            "sep_pgd": check["sep_pgd"], "sep_own": check["sep_own"], "steps_clean": check["steps_clean"],
            "steps_pgd": check["steps_pgd"], "perturbation": check["perturbation"],
            "sentences": check["sentences"], "verdicts": [v.text for v in verdicts(rows)], "rows": rows}


def evaluate(out: Path, data_root: str, names, limit: int, aa_limit: int) -> None:
    import torch

    from atld.data.loaders import load_dataset
    from atld.runs.store import load_checkpoint

    torch.set_num_threads(1)
    for name in names:
        path = REPO / "checkpoints" / name if (REPO / "checkpoints" / name).is_dir() else out / name
        run = load_checkpoint(path)
        data = load_dataset(run.config.dataset, data_root)
        t0 = time.time()
        row = study_row(run, data, limit=limit, aa_limit=aa_limit,
                        log=lambda s, n=name: print(f"  {n}: {s}", flush=True))
        row.update(name=name, seconds=round(time.time() - t0, 1), load=os.getloadavg()[0])
        (out / f"{name}.json").write_text(json.dumps(row, indent=1))
        print(f"{name}: done in {row['seconds']} s", flush=True)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _steps(st: dict) -> str:
    from atld.evaluate.stats import p_value_text

    c = st["correct"]
    return f"{c['imt']} / {c['reversed']} / {c['random']} (IMT vs reversed {p_value_text(st['p_reversed'])})"


def _perturbation(d: dict) -> str:
    drop = lambda k: f"{100 * (d['clean'] - d[k]):.1f}"  # noqa: E731
    return (f"{d['kind']}: −{drop('perturbed')} points (random −{drop('random')}, FGSM −{drop('fgsm')}), "
            f"{100 * d['sign_agreement']:.0f} % signs as FGSM")


def study_table(rows: list[dict]) -> str:
    """The study table (markdown) from `study_row` results."""
    from atld.evaluate.discriminator import auc_words

    head = ("| model | D: norm, batch, perturbation | D's AUC vs PGD-20: per batch / per image / mixed | "
            "vs own perturbation: per batch / per image | bare: clean / PGD-20 / AutoAttack | "
            "IMT: clean / PGD-20 (non-adaptive) / AutoAttack (non-adaptive) / adaptive | ATLD+ window share "
            "(clean / PGD-20) | clean inputs right after IMT / reversed / random step | PGD-20 inputs right after "
            "IMT / reversed / random step | D's training perturbation for f |\n|" + "---|" * 10 + "\n")
    out = []
    for r in rows:
        sp, so = r["sep_pgd"], r["sep_own"]
        out.append(
            f"| {r['name']} | {r['d_norm']}, {r['d_batch']}, {r['d_perturbation']} | "
            f"{auc_words(sp['per_batch'])} / {auc_words(sp['per_image'])} / {auc_words(sp['mixed'])} | "
            f"{auc_words(so['per_batch'])} / {auc_words(so['per_image'])} | "
            f"{_pct(r['clean'])} / {_pct(r['pgd20'])} / {_pct(r['autoattack'])} | "
            f"{_pct(r['imt_clean'])} / {_pct(r['imt_pgd20'])} / {_pct(r['imt_autoattack'])} / "
            f"{_pct(r['imt_adaptive'])} | {_pct(r['in_window_natural'])} / {_pct(r['in_window_pgd'])} | "
            f"{_steps(r['steps_clean'])} | {_steps(r['steps_pgd'])} | {_perturbation(r['perturbation'])} |")
    return head + "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=("train", "eval", "table"))
    p.add_argument("out", type=Path)
    p.add_argument("data_root", nargs="?", default=DEFAULT_ROOT)
    p.add_argument("names", nargs="*")
    p.add_argument("--limit", type=int, default=500)
    p.add_argument("--aa-limit", type=int, default=200)
    p.add_argument("--after", type=int, help="train: start when this process id has ended")
    args = p.parse_args(argv)
    if str(REPO) not in sys.path:  # eval and table import the worktree's package (train runs the snapshot)
        sys.path.insert(0, str(REPO))
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.stage == "train":
        train(args.out, str(Path(args.data_root).resolve()), args.names or QUEUE, args.after)
    elif args.stage == "eval":
        evaluate(args.out, str(Path(args.data_root).resolve()), args.names or (*RELEASED, *QUEUE), args.limit,
                 args.aa_limit)
    else:
        names = [*([args.data_root] if args.data_root != DEFAULT_ROOT else []), *args.names]  # table takes no root
        paths = [args.out / f"{n}.json" for n in names] if names else sorted(args.out.glob("*.json"))
        sys.stdout.write(study_table([json.loads(p.read_text()) for p in paths if p.is_file()]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
