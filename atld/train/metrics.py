"""What an epoch measures: the step outputs accumulated on the device (one host read per epoch),
D's AUC, and the per-epoch clean and PGD-20 test accuracy."""

from __future__ import annotations

import time

import torch
from torch import nn

from atld.attacks.gradient import AttackConfig, attack_batched
from atld.config.train import TrainConfig
from atld.config.vocab import AttackKind
from atld.data.loaders import ImageData, as_float01
from atld.train import distributed as ddp_utils

EVAL_BATCH = 500  # images per batch in the per-epoch test evaluation


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
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device) -> float:
    correct = 0
    for xb, yb in zip(x.split(EVAL_BATCH), y.split(EVAL_BATCH)):
        correct += (model(as_float01(xb.to(device))).argmax(1) == yb.to(device)).sum().item()
    return correct / max(len(y), 1)


def evaluate_epoch(config: TrainConfig, classifier: nn.Module, data: ImageData, device, epoch: int) -> dict:
    """Clean and PGD-20 test accuracy on the first `eval_limit` test images (eval mode)."""
    if config.eval_limit == 0:
        return {}
    n = min(config.eval_limit, len(data.y_test))
    x, y = data.x_test[:n], data.y_test[:n]
    classifier.eval()
    clean = _accuracy(classifier, x, y, device)
    gen = torch.Generator(device=device).manual_seed(config.seed * 100_003 + epoch)
    attack = AttackConfig(AttackKind.PGD, config.resolved_epsilon, steps=20)
    x_adv = attack_batched(classifier, as_float01(x), y, attack, batch_size=EVAL_BATCH, generator=gen)
    robust = _accuracy(classifier, x_adv, y, device)
    return {"test_clean_acc": clean, "test_pgd20_acc": robust, "test_n": n}


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
