"""What an epoch measures: the step outputs accumulated on the device (one host read per epoch),
D's AUC, the per-epoch clean and PGD-20 test accuracy with the share of the most-predicted class,
and whether the epoch shows a collapsed classifier."""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from atld.attacks.gradient import AttackConfig, attack_batched
from atld.config.train import TrainConfig
from atld.vocab import AttackKind
from atld.data.loaders import ImageData, as_float01
from atld.train import distributed as ddp_utils

EVAL_BATCH = 500  # images per batch in the per-epoch test evaluation
COLLAPSE_SHARE = 0.99  # a collapsed classifier gives at least this share of the test images one class
COLLAPSE_LOSS_GAP = 0.02  # ... or its training loss sits within this of ln K (chance, nats)
COLLAPSE_FROM_EPOCH = 2  # the first epoch (1-based) that may be called collapsed


def auc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    """ROC AUC of scores (pos should score higher), ties counted half (Mann-Whitney)."""
    scores = torch.cat([pos, neg]).double()
    ranks = torch.empty_like(scores)
    order = scores.argsort()
    ranks[order] = torch.arange(1, len(scores) + 1, dtype=torch.float64, device=scores.device)
    # average ranks over ties
    uniq, inverse, counts = torch.unique(scores, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(uniq), dtype=torch.float64, device=scores.device).index_add_(0, inverse, ranks)
    ranks = (sums / counts)[inverse]
    n_pos, n_neg = len(pos), len(neg)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@torch.no_grad()
def _predictions(model: nn.Module, x: torch.Tensor, device) -> torch.Tensor:
    return torch.cat([model(as_float01(xb.to(device))).argmax(1) for xb in x.split(EVAL_BATCH)])


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device) -> float:
    return (_predictions(model, x, device) == y.to(device)).sum().item() / max(len(y), 1)


def evaluate_epoch(config: TrainConfig, classifier: nn.Module, data: ImageData, device, epoch: int) -> dict:
    """Clean and PGD-20 test accuracy on the first `eval_limit` test images (eval mode), and
    top_class / top_class_share: the most-predicted class on the clean images and its share."""
    if config.eval_limit == 0:
        return {}
    n = min(config.eval_limit, len(data.y_test))
    x, y = data.x_test[:n], data.y_test[:n]
    classifier.eval()
    pred = _predictions(classifier, x, device)
    clean = (pred == y.to(device)).sum().item() / n
    counts = torch.bincount(pred, minlength=config.spec.num_classes)
    gen = torch.Generator(device=device).manual_seed(config.seed * 100_003 + epoch)
    attack = AttackConfig(AttackKind.PGD, config.resolved_epsilon, steps=20)
    x_adv = attack_batched(classifier, as_float01(x), y, attack, batch_size=EVAL_BATCH, generator=gen)
    robust = _accuracy(classifier, x_adv, y, device)
    return {"test_clean_acc": clean, "test_pgd20_acc": robust, "test_n": n,
            "top_class": int(counts.argmax()), "top_class_share": counts.max().item() / n}


def single_class(metrics: dict) -> bool:
    """Whether the epoch's test evaluation gave one class at least COLLAPSE_SHARE of the images."""
    share = metrics.get("top_class_share")
    return share is not None and share >= COLLAPSE_SHARE


def collapse_message(config: TrainConfig, metrics: dict) -> str | None:
    """One line saying how an epoch's classifier collapsed and what to try, or None if it did not.

    Collapsed: after the ε ramp (and from epoch 2), the test evaluation gives one class at least
    99 % of the images, or the epoch's mean training cross-entropy is within 0.02 of ln K (the loss
    of a uniform guess, whatever the label smoothing)."""
    epoch = metrics["epoch"]
    if epoch < COLLAPSE_FROM_EPOCH or epoch <= config.resolved_epsilon_ramp_epochs:
        return None
    k = config.spec.num_classes
    share = metrics.get("top_class_share")
    loss = metrics.get("loss_ce", metrics.get("loss"))
    one_class = share is not None and share >= COLLAPSE_SHARE
    at_chance = loss is not None and abs(loss - math.log(k)) <= COLLAPSE_LOSS_GAP
    if not (one_class or at_chance):
        return None
    what = []
    if one_class:
        label = config.spec.labels()[metrics["top_class"]]
        what.append(f"{100 * share:.0f} % of test predictions are class {label}")
    if loss is not None:
        what.append(f"the loss {'sits at' if at_chance else 'is'} {loss:.2f} (ln {k} = {math.log(k):.2f})")
    return (f"training collapsed at epoch {epoch}: {' and '.join(what)}; try a lower --lr, a longer "
            f"--epsilon-ramp-epochs, another --seed, or --arch fast-cnn-bn / --optimizer sgd")


class EpochMeter:
    """Accumulates step outputs on the device; `result()` syncs once."""

    def __init__(self, device):
        self.started = time.perf_counter()
        self.sums: dict[str, torch.Tensor] = {}
        self.n = 0
        self.correct_clean = torch.zeros((), device=device)
        self.correct_pert = torch.zeros((), device=device)
        self.has_clean = self.has_pert = False
        self.d_nat: list[torch.Tensor] = []
        self.d_pert: list[torch.Tensor] = []
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=device)

    def seconds(self) -> float:
        """Wall time since the epoch started (call after the device has finished its work)."""
        return time.perf_counter() - self.started

    def add(self, out, y: torch.Tensor) -> None:
        b = y.shape[0]
        self.n += b
        self.nonfinite |= ~torch.isfinite(out.loss)
        for k, v in {"loss": out.loss, **out.loss_terms}.items():
            self.sums[k] = self.sums.get(k, 0) + v.float() * b
        if out.logits_clean is not None:
            self.has_clean = True
            self.correct_clean += (out.logits_clean.argmax(1) == y).sum()
        if out.logits_perturbed is not None:
            self.has_pert = True
            self.correct_pert += (out.logits_perturbed.argmax(1) == y).sum()
        if out.d_natural is not None:
            self.d_nat.append(out.d_natural)
            self.d_pert.append(out.d_perturbed)

    def all_reduce(self) -> None:
        """DDP: replace this rank's sums and counts by those over all ranks (one exchange per epoch)."""
        keys = list(self.sums)
        n = torch.tensor(float(self.n), device=self.correct_clean.device)
        reduced = ddp_utils.all_reduce_sum([n, self.correct_clean, self.correct_pert, self.nonfinite.float(),
                                            *[torch.as_tensor(self.sums[k]) for k in keys]])
        self.n = int(round(float(reduced[0])))
        self.correct_clean, self.correct_pert, self.nonfinite = reduced[1], reduced[2], reduced[3] > 0
        self.sums = dict(zip(keys, reduced[4:]))
        if self.d_nat:
            self.d_nat = [ddp_utils.all_gather_rows(torch.cat(self.d_nat))]
            self.d_pert = [ddp_utils.all_gather_rows(torch.cat(self.d_pert))]

    def result(self) -> dict:
        if bool(self.nonfinite):
            return {"nonfinite": True}
        m = {k: float(v) / self.n for k, v in self.sums.items()}
        if self.has_clean:
            m["train_clean_acc"] = float(self.correct_clean) / self.n
        if self.has_pert:
            m["train_perturbed_acc"] = float(self.correct_pert) / self.n
        if self.d_nat:
            nat, pert = torch.cat(self.d_nat), torch.cat(self.d_pert)
            m["d_acc"] = float(((nat > 0).sum() + (pert < 0).sum()).float() / (len(nat) + len(pert)))
            m["d_auc"] = auc(nat, pert)
        return m
