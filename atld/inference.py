"""IMT inference (docs/method.md §4): ATLD- (the bare classifier), ATLD (one IMT step) and ATLD+
(a half step where the discriminator is unsure).

One IMT step on an input x' (clean or attacked), with f and D both in eval mode:
    p = D(f(x')) (P(natural)),  g = ∇_{x'} BCE(p, 1),
    x_t = clamp01( proj_{B∞(x', ε)}( x' − ε · m · sign(g) ) ),  prediction argmax f(x_t),
m = 1 (ATLD), or for ATLD+ m = 0.5 where low < p < high (the dataset's `imt_window`: 0.3-0.7,
SVHN 0.3-0.6) and 1 elsewhere. The step moves x' towards what D calls natural; it uses no label.
ε is the model's training ε (the card's config), in [0, 1] pixel units: IMT's radius belongs
to the defense, not to the attack being evaluated. IMT is applied to clean inputs too.

`IMTPipeline` is the whole defense as one `nn.Module` (logits of f after IMT), so any attack can
target it. With `straight_through=True` its backward pass treats x_t as x + constant (BPDA, the
straight-through estimate used by Croce et al., ICML 2022, for ATLD); with False it
differentiates the step exactly almost everywhere (sign and window are piecewise constant, so
only the clip to [0, 1] remains). Either way the forward pass is the real IMT.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from atld.vocab import InferenceMode, parse
from atld.errors import ConfigError, check_finite_range, require, shown
from atld.models.common import eval_mode

INFERENCE_MODES = tuple(InferenceMode)
ATLD_PLUS_FACTOR = 0.5  # ATLD+: step multiplier m inside D's uncertain window (docs/method.md §4)
DEFAULT_WINDOW = (0.3, 0.7)  # ATLD+ window when no dataset spec is at hand


def _check_window(window) -> tuple[float, float]:
    require(isinstance(window, (tuple, list)) and len(window) == 2,
            f"the ATLD+ window must be a pair (low, high), got {shown(window)}")
    low = check_finite_range("ATLD+ window low", window[0], 0.0, 1.0)
    high = check_finite_range("ATLD+ window high", window[1], 0.0, 1.0)
    require(low < high, f"the ATLD+ window needs low < high, got {shown(window)}")
    return low, high


def imt_direction(classifier: nn.Module, discriminator: nn.Module, x: torch.Tensor,
                  window: tuple[float, float] | None = None) -> torch.Tensor:
    """m · sign(∇_x BCE(D(f(x)), 1)) for x float [B, C, H, W] in [0, 1]: the IMT step before its
    scale ε, same shape, detached. Models run in eval mode (restored after); only ∂/∂x is taken,
    so no gradient reaches the parameters, and it works under `torch.no_grad()` too."""
    if window is not None:
        window = _check_window(window)
    x_leaf = x.detach().float().requires_grad_(True)
    with torch.enable_grad(), eval_mode(classifier, discriminator), torch.autocast(x.device.type, enabled=False):
        d_logit, _ = discriminator(classifier(x_leaf).float())
        # per-example BCE(p, 1) = −log σ(d); summed, so each image's gradient is its own
        loss = F.binary_cross_entropy_with_logits(d_logit.float(), torch.ones_like(d_logit.float()), reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_leaf)
    step = grad.sign()
    if window is not None:
        p = torch.sigmoid(d_logit.detach())
        unsure = (p > window[0]) & (p < window[1])
        m = torch.where(unsure, ATLD_PLUS_FACTOR, 1.0).to(step.dtype)
        step = step * m.view(-1, *([1] * (step.dim() - 1)))
    return step.to(x.dtype)


def imt_step(classifier: nn.Module, discriminator: nn.Module, x: torch.Tensor, epsilon: float,
             window: tuple[float, float] | None = None) -> torch.Tensor:
    """One IMT step (docs/method.md §4). x: float [B, C, H, W] in [0, 1] on the models' device.
    window None: m = 1 (ATLD); window (low, high): m = 0.5 where low < D < high (ATLD+).
    Returns x_t, detached, with ‖x_t − x‖∞ ≤ ε and x_t in [0, 1]."""
    check_finite_range("IMT epsilon", epsilon, 0.0, 1.0, "([0, 1] pixel units)")
    require(x.dim() == 4, f"images must be [B, C, H, W], got shape {tuple(x.shape)}")
    x = x.detach()
    if epsilon == 0 or len(x) == 0:
        return x.clone()
    return _take_step(x, imt_direction(classifier, discriminator, x, window), epsilon)


def _take_step(x: torch.Tensor, step: torch.Tensor, epsilon: float) -> torch.Tensor:
    """clamp01(x − ε·step). |step| ≤ 1, so the projection onto B∞(x, ε) of docs/method.md §4 is the
    identity here and is left out; one formula for `imt_step` and `IMTPipeline` alike."""
    return (x - epsilon * step).clamp(0.0, 1.0)


@dataclass(frozen=True)
class IMTModels:
    """What IMT needs: the classifier, its discriminator (None: ATLD- only), the IMT radius ε
    ([0, 1] pixel units) and the ATLD+ window (low, high) on D's natural probability."""
    classifier: nn.Module
    discriminator: nn.Module | None
    epsilon: float
    window: tuple[float, float]
    name: str = "model"


def resolve_models(run_or_models, epsilon: float | None = None,
                   window: tuple[float, float] | None = None) -> IMTModels:
    """Accept a `LoadedRun` (ε and window from its config and dataset), an `IMTModels`, or a
    (classifier, discriminator) pair (then `epsilon` is required)."""
    if isinstance(run_or_models, IMTModels):
        models = run_or_models
        if epsilon is None and window is None:
            return models
        return IMTModels(models.classifier, models.discriminator,
                         models.epsilon if epsilon is None else epsilon, window or models.window, models.name)
    if isinstance(run_or_models, (tuple, list)):
        require(len(run_or_models) == 2, "give a run or a (classifier, discriminator) pair")
        require(epsilon is not None, "IMT on a bare (classifier, discriminator) pair needs epsilon")
        classifier, discriminator = run_or_models
        return IMTModels(classifier, discriminator, check_finite_range("IMT epsilon", epsilon, 0.0, 1.0),
                         _check_window(window or DEFAULT_WINDOW))
    config = run_or_models.config  # a LoadedRun
    eps = config.resolved_epsilon if epsilon is None else check_finite_range("IMT epsilon", epsilon, 0.0, 1.0)
    return IMTModels(run_or_models.classifier, run_or_models.discriminator, eps,
                     _check_window(window or config.spec.imt_window), getattr(run_or_models, "name", "model"))


def _window_for(mode: str, models: IMTModels) -> tuple[float, float] | None:
    return models.window if mode == InferenceMode.IMT_PLUS else None


def check_inference(mode: str, models: IMTModels) -> InferenceMode:
    """Check the mode name and that IMT modes have a discriminator to use."""
    mode = parse(InferenceMode, mode, "inference")
    if mode is not InferenceMode.BARE and models.discriminator is None:
        raise ConfigError(f"checkpoint {models.name!r} has no discriminator, so inference {mode!r} (IMT) "
                          "is impossible; use atld- (the bare classifier) or an ATLD checkpoint")
    return mode


def apply_inference(run_or_models, x: torch.Tensor, mode: str, *, epsilon: float | None = None,
                    window: tuple[float, float] | None = None) -> torch.Tensor:
    """The input the classifier finally sees under `mode`: x itself for "atld-", one IMT step
    (m = 1) for "atld", one ATLD+ step for "atld+". x: float [B, C, H, W] in [0, 1] (moved to the
    models' device and back). Raises ConfigError for IMT without a discriminator."""
    models = resolve_models(run_or_models, epsilon, window)
    if check_inference(mode, models) is InferenceMode.BARE:
        return x
    device = next(models.classifier.parameters()).device
    x_t = imt_step(models.classifier, models.discriminator, x.to(device), models.epsilon,
                   _window_for(mode, models))
    return x_t.to(x.device)


def predict(run_or_models, x: torch.Tensor, mode: str, *, epsilon: float | None = None,
            window: tuple[float, float] | None = None) -> torch.Tensor:
    """Logits [B, K] of the classifier (eval mode) after `mode`'s inference, on the models' device."""
    models = resolve_models(run_or_models, epsilon, window)
    x_t = apply_inference(models, x, mode)
    device = next(models.classifier.parameters()).device
    with torch.no_grad(), eval_mode(models.classifier):
        return models.classifier(x_t.to(device))


class IMTPipeline(nn.Module):
    """The defense as one model: x float [B, C, H, W] in [0, 1] -> logits [B, K] of f(IMT(x))
    (f(x) for "atld-"). Attack it to attack the defense (the adaptive attack).

    straight_through=True: backward treats x_t as x + const (BPDA); False: exact almost
    everywhere (see the module docstring). Call `.eval()` on it like any model under attack."""

    def __init__(self, run_or_models, mode: str, straight_through: bool = True, *,
                 epsilon: float | None = None, window: tuple[float, float] | None = None):
        super().__init__()
        models = resolve_models(run_or_models, epsilon, window)
        self.mode = check_inference(mode, models)
        self.classifier, self.discriminator = models.classifier, models.discriminator
        self.epsilon, self.window, self.straight_through = models.epsilon, _window_for(mode, models), straight_through

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode is InferenceMode.BARE or self.epsilon == 0:
            return self.classifier(x)
        step = imt_direction(self.classifier, self.discriminator, x, self.window)
        if self.straight_through:
            # value exactly x_t (x − x.detach() is exactly 0), gradient of the identity
            x_t = _take_step(x.detach(), step, self.epsilon) + (x - x.detach())
        else:
            x_t = _take_step(x, step, self.epsilon)
        return self.classifier(x_t)
