"""Gradient-masking diagnostics: each finding read from rows (atld.evaluate.findings), and fired
end to end by a model built to trigger it (atld.evaluate.diagnostics); `--diagnose` honours
--attacks, every --inference mode and names the real device."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from atld.cli import main
from atld.config.eval import EvalConfig
from atld.vocab import InferenceMode, Protocol
from atld.evaluate import make_row, masking_diagnostics, masking_findings
from atld.evaluate.diagnostics import diagnostic_attacks

D, NA, AD = Protocol.DIRECT, Protocol.NON_ADAPTIVE, Protocol.ADAPTIVE


def _row(attack, mode, protocol, correct, n=200):
    return make_row(attack, mode, protocol, correct, n, 0.2, 1.0)


def _by_check(findings):
    return {(f["check"], f["inference"]): f for f in findings}


# ----------------------------------------------------------------------------- findings from rows

def test_pgd_above_autoattack_is_masking_and_autoattack_above_pgd_under_imt_is_a_warning():
    rows = [_row("pgd20", "atld-", D, 133), _row("autoattack", "atld-", D, 69),
            _row("pgd20", "atld", NA, 97), _row("autoattack", "atld", NA, 109),  # 48.5 % vs 54.5 %: the case
            _row("pgd20", "atld+", NA, 100), _row("autoattack", "atld+", NA, 101)]
    found = _by_check(masking_findings(rows))
    bare = found[("pgd20-autoattack-gap", "atld-")]
    assert bare["flagged"] and "32.0 points higher" in bare["message"]
    imt = found[("pgd20-autoattack-gap", "atld")]
    assert imt["flagged"] and "6.0 points higher" in imt["message"] and "does not see" in imt["message"]
    assert not found[("pgd20-autoattack-gap", "atld+")]["flagged"]  # half a point: noise


def test_square_is_compared_only_with_white_box_attacks_of_its_own_protocol():
    # Square through IMT (0.5 %) beside non-adaptive white-box rows only: nothing to compare with
    rows = [_row("pgd20", "atld", NA, 97), _row("autoattack", "atld", NA, 109), _row("square", "atld", AD, 1)]
    finding = _by_check(masking_findings(rows))[("black-box-vs-white-box", "atld")]
    assert not finding["flagged"] and "no white-box attack with the same protocol" in finding["message"]
    # beside the adaptive attack it is compared, and agrees
    rows.append(_row("adaptive", "atld", AD, 0))
    finding = _by_check(masking_findings(rows))[("black-box-vs-white-box", "atld")]
    assert not finding["flagged"] and "adaptive attack through IMT" in finding["message"]
    # on the bare classifier, Square far below every white-box attack is masking
    rows = [_row("pgd20", "atld-", D, 120), _row("autoattack", "atld-", D, 100), _row("square", "atld-", D, 60)]
    assert _by_check(masking_findings(rows))[("black-box-vs-white-box", "atld-")]["flagged"]


def test_adaptive_far_below_the_non_adaptive_protocol_is_flagged():
    rows = [_row("autoattack", "atld", NA, 109), _row("adaptive", "atld", AD, 0),
            _row("autoattack", "atld+", NA, 109), _row("adaptive", "atld+", AD, 105)]
    found = _by_check(masking_findings(rows))
    assert found[("adaptive-vs-non-adaptive", "atld")]["flagged"]
    assert not found[("adaptive-vs-non-adaptive", "atld+")]["flagged"]


def test_the_steps_curve_is_judged_against_its_interval():
    noise = [{"steps": k, "accuracy": a, "n": 200, "inference": "atld-", "restarts": 2}
             for k, a in ((10, 0.50), (20, 0.515), (50, 0.50), (100, 0.495))]  # a 3-image rise
    assert not masking_findings([], noise)[0]["flagged"]
    rise = [dict(p) for p in noise]
    rise[2]["accuracy"] = 0.65
    finding = masking_findings([], rise)[0]
    assert finding["flagged"] and "rises from 20 to 50" in finding["message"]
    falling = [dict(p) for p in noise]
    falling[3]["accuracy"] = 0.40
    finding = masking_findings([], falling)[0]
    assert finding["flagged"] and "still falling after 20 steps" in finding["message"]


# ----------------------------------------------------------------------------- models built to trigger them

class _GradientScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


class HiddenGradient(nn.Module):
    """f's logits; the gradient w.r.t. the input is zero (a textbook masked model)."""

    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(_GradientScale.apply(x, 0.0))


class TurningGradient(nn.Module):
    """f's logits; the input gradient of the i-th gradient query of an attack run is multiplied by
    scale(i) (the count restarts at the next prediction, i.e. after each attack run): an
    obfuscated gradient that misleads the attacker after, or until, some number of steps."""

    def __init__(self, f, scale):
        super().__init__()
        self.f, self.scale, self.calls = f, scale, 0

    def forward(self, x):
        if not torch.is_grad_enabled():
            self.calls = 0
            return self.f(x)
        self.calls += 1
        return self.f(_GradientScale.apply(x, self.scale(self.calls)))


def _diagnose(run, digits, attacks, steps, limit=40):
    config = EvalConfig(attacks=attacks, limit=limit, device="cpu", restarts=1, square_queries=300)
    return masking_diagnostics(run, config, steps=steps, data=digits)


@pytest.mark.slow  # over 10 s
def test_a_model_that_hides_its_gradient_fires_the_gap_and_black_box_findings(natural_run, as_run, digits):
    report = _diagnose(as_run(HiddenGradient(natural_run.classifier)), digits,
                       ("natural", "pgd20", "autoattack", "square"), steps=(1, 20), limit=12)
    found = _by_check(report.findings)
    assert found[("pgd20-autoattack-gap", "atld-")]["flagged"]
    assert found[("black-box-vs-white-box", "atld-")]["flagged"]
    honest = _by_check(_diagnose(natural_run, digits, ("natural", "pgd20", "square"), steps=(1, 20), limit=12).findings)
    assert not honest[("black-box-vs-white-box", "atld-")]["flagged"]


@pytest.mark.parametrize("scale, phrase", [
    (lambda i: 1.0 if i <= 5 else -1.0, "rises"),  # turns against the attacker after 5 steps
    (lambda i: 0.0 if i <= 20 else 1.0, "still falling after 20 steps"),  # hidden for its first 20 queries
])
def test_a_model_whose_gradient_turns_fires_the_steps_finding(natural_run, as_run, digits, scale, phrase):
    report = _diagnose(as_run(TurningGradient(natural_run.classifier, scale)), digits, ("natural",), (5, 20, 50))
    finding = _by_check(report.findings)[("pgd-steps", "atld-")]
    assert finding["flagged"] and phrase in finding["message"], finding["message"]
    honest = _diagnose(natural_run, digits, ("natural",), (5, 20, 50))
    assert not _by_check(honest.findings)[("pgd-steps", "atld-")]["flagged"]


def test_diagnose_runs_every_mode_with_the_given_attacks_on_the_real_device(atld_run, capsys):
    code = main(["eval", "--checkpoint", str(atld_run.path), "--diagnose", "--attacks", "natural,pgd20",
                 "--limit", "8", "--restarts", "1", "--device", "auto", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    assert "device cpu" in out.splitlines()[0] and "auto" not in out.splitlines()[0]
    for mode, how in (("atld-", "on the bare classifier"), ("atld", "through IMT"), ("atld+", "through IMT")):
        assert f"{mode}: PGD accuracy by steps {how}" in out
    assert "AutoAttack" not in out and "adaptive attack through IMT" not in out.split("Verdict")[0]
    assert diagnostic_attacks((InferenceMode.BARE,)) == ("natural", "pgd20", "autoattack", "square")
    assert "adaptive" in diagnostic_attacks((InferenceMode.BARE, InferenceMode.IMT))
