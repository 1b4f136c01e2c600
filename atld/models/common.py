"""Pieces every classifier shares: input normalization inside the model, the features/head split,
and the input convolution whose input gradient is cheap on the CPU."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


class Normalize(nn.Module):
    """(x - mean) / std per channel. Lives inside the model so every attack sees [0, 1] inputs."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class Classifier(nn.Module):
    """Base for classifiers: `features(x)` gives the penultimate features, `head` maps them to logits.

    Contract: x is float [B, C, H, W] in [0, 1] on the model's device; `forward` returns logits
    [B, K]; `forward_with_features` returns (logits [B, K], features [B, F]).
    """

    num_classes: int
    feature_dim: int

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.features(x)
        return self.head(feats), feats


@contextlib.contextmanager
def eval_mode(*modules: nn.Module):
    """Put modules in eval mode for the block and restore each one's previous mode after."""
    modes = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)


class _FlattenFunction(torch.autograd.Function):
    """flatten(1) whose gradient comes back in the input's memory format."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.flatten(1)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.shape).contiguous(memory_format=torch.channels_last)


class LayoutFlatten(nn.Flatten):
    """nn.Flatten (start_dim 1) whose backward hands a channels_last input its gradient in channels_last.

    Plain flatten's gradient is NCHW-contiguous; the ReLU or max-pool before it saved a channels_last
    tensor, and its backward kernel on mixed layouts is 20-40x slower than on matching ones (measured
    at one thread: ReLU backward on [100, 32, 7, 7], 0.8 ms vs 24 us) - paid by every backward pass, so
    4-5 times per ATLD step. The reorder costs one copy (~50 us). Same values, same state dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.dim() == 4 and self.start_dim == 1 and self.end_dim == -1 and torch.is_grad_enabled()
                and x.requires_grad and x.is_contiguous(memory_format=torch.channels_last)
                and not x.is_contiguous()):
            return _FlattenFunction.apply(x)
        return super().forward(x)


DIRECT_INPUT_GRAD_MIN_PIXELS = 256  # below 16x16 (digits' 8x8) the custom backward's Python cost eats the gain


def _engine_needs(ctx, index: int) -> bool:
    """Whether the running backward pass needs the gradient of a custom Function's input `index`.

    `ctx.needs_input_grad` only says the input required a gradient when the graph was built; the
    engine knows more: `autograd.grad(loss, x)` needs no weight gradient, `loss.backward(inputs=params)`
    no image gradient. Built-in nodes skip such outputs themselves, a Python Function must ask
    (a private but long-standing torch hook; without it, everything flagged is computed)."""
    if not ctx.needs_input_grad[index]:
        return False
    node = ctx.next_functions[index][0]
    if node is None:
        return False
    try:
        return torch._C._will_engine_execute_node(node)
    except RuntimeError:  # a leaf captured by autograd.grad (it is one of the requested inputs), or no hook
        return True
    except AttributeError:  # pragma: no cover - a torch without the hook
        return True


def _nchw(t: torch.Tensor) -> torch.Tensor:
    """t with NCHW strides, for the direct kernel: it is fast on NCHW only (~4x slower otherwise), and
    it reads the layout from the strides. `.contiguous()` is not enough: a 1-channel tensor or weight
    in channels_last ([16, 1, 4, 4] with strides (16, 1, 4, 1)) already counts as contiguous, yet
    sends the kernel down its channels_last path (and a copy of the gradient back to it)."""
    strides, step = [], 1
    for size in reversed(t.shape):
        strides.insert(0, step)
        step *= max(size, 1)
    return t if t.stride() == tuple(strides) else t.clone(memory_format=torch.contiguous_format)


class _InputConvFunction(torch.autograd.Function):
    """conv2d whose gradient with respect to its input comes from ATen's direct ("slow") kernel.

    On the CPU, oneDNN's backward-data kernel is poor when the convolution has one to three input
    channels (an image's): for the 1-channel stems of the digits and MNIST models it costs 3-15x
    the forward pass, and every adversarial step (ATLD's perturbation and s, PGD, the per-epoch
    evaluation) pays it; the direct kernel computes the same sums 3-6x faster. The weight and bias
    gradients keep oneDNN's kernel. Same math, float rounding aside (about 1e-7 relative)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, padding, bias is not None)
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        stride, padding, has_bias = ctx.geometry
        need_x, need_w, need_b = (_engine_needs(ctx, i) for i in range(3))
        grad_x = grad_w = grad_b = None
        if need_x:
            grad_x = torch.ops.aten._slow_conv2d_backward(_nchw(grad_out), _nchw(x), _nchw(weight),
                                                           weight.shape[2:], stride, padding, (True, False, False))[0]
        if need_w or (has_bias and need_b):
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad_out, x, weight, [weight.shape[0]] if has_bias else None, stride, padding, [1, 1], False, [0, 0],
                1, (False, need_w, has_bias and need_b))
        return grad_x, grad_w, grad_b, None, None


class InputConv2d(nn.Conv2d):
    """The classifier's first convolution (an `nn.Conv2d`: same parameters, same state dict).

    When the input itself needs a gradient on the CPU in float32 (an attack, ATLD's steps), the
    input gradient uses the faster direct kernel (`_InputConvFunction`); otherwise (natural
    training, inference, CUDA, autocast, images under 16x16, or a layout the direct kernel lacks) it is a
    plain Conv2d. Measured at one thread, forward + input gradient of fast-cnn on a batch of 100 MNIST
    images (channels_last): 7.9 -> 5.5 ms; on digits' 8x8 images small-cnn's is the same either way
    (about 4.1 ms: the custom backward's Python cost eats the kernel's gain), hence the size floor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.requires_grad and torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
                and x.shape[-2] * x.shape[-1] >= DIRECT_INPUT_GRAD_MIN_PIXELS
                and self.weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
                and self.groups == 1 and self.dilation == (1, 1) and self.padding_mode == "zeros"
                and not isinstance(self.padding, str)):
            return _InputConvFunction.apply(x, self.weight, self.bias, list(self.stride), list(self.padding))
        return super().forward(x)
