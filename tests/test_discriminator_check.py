"""D's honesty check (atld.evaluate.discriminator): eval-mode AUC on the evaluation images beside
the card's training metric, the share of inputs inside ATLD+'s window, and plain words when D
cannot separate the clouds; on the shipped ATLD model and on a discriminator built to separate."""

from __future__ import annotations

import torch
from torch import nn

from atld.evaluate.discriminator import SEPARATION_AUC, WINDOW_SHARE, discriminator_check
from atld.ui.evaluate import discriminator_messages


class MemorizingD(nn.Module):
    """P(natural) high exactly on latents it has memorized (the evaluation's natural ones), low
    elsewhere: a discriminator built to separate the clouds perfectly."""

    def __init__(self, z_natural: torch.Tensor):
        super().__init__()
        self.register_buffer("z", z_natural)
        self.scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, z):
        distance = torch.cdist(z, self.z).min(1).values
        return self.scale * (1 - distance), z


def test_the_shipped_atld_discriminator_is_reported_as_it_behaves(atld_run, digits_batch):
    x, y = digits_batch(120)
    check = discriminator_check(atld_run, x, y, atld_run.spec.epsilon)
    card_auc = atld_run.card["metrics"][-1].get("d_auc")
    assert check.train_auc == card_auc and check.n == 120
    assert 0.0 <= check.in_window_pgd <= 1.0 and 0.5 - 0.2 < check.auc_pgd < 1.0
    text = " ".join(check.sentences())
    assert "eval mode" in text and f"{check.auc_pgd:.2f} natural vs PGD-20" in text
    if card_auc is not None:
        assert f"The card's {card_auc:.2f} is a training metric" in text
    assert (f"{100 * check.in_window_natural:.1f} % of clean" in text)
    # the shipped model: D cannot separate the clouds and ATLD+ is a uniform half step
    if atld_run.path.name == "digits-atld" and card_auc is not None and card_auc > 0.9:
        assert check.auc_pgd < SEPARATION_AUC and not check.separates and "cannot separate" in text
        assert check.uniform_half_step and min(check.in_window_natural, check.in_window_pgd) > WINDOW_SHARE
        levels = [level for level, _ in discriminator_messages(check.to_dict())]
        assert levels == ["info", "warning", "warning"]


def test_a_discriminator_that_separates_is_reported_so(natural_run, as_run, digits_batch):
    x, y = digits_batch(60)
    with torch.no_grad():
        z = natural_run.classifier(x)
    check = discriminator_check(as_run(natural_run.classifier, MemorizingD(z)), x, y, 0.2)
    assert check.auc_pgd > 0.95 and check.separates and not check.uniform_half_step
    assert check.train_auc is None
    text = " ".join(check.sentences())
    assert "D separates natural from adversarial latents" in text and "cannot" not in text
    assert "training metric" not in text
    assert [level for level, _ in discriminator_messages(check.to_dict())] == ["info", "info", "info"]
