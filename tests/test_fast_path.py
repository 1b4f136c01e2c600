"""The fast training path, checked on the CPU: no host synchronisation in the hot loop,
bf16 autocast only around the training steps (evaluation stays fp32), channels_last and the
fused optimizer leave the math unchanged, and --compile reaches torch.compile."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import atld.models.common as common
import atld.train.trainer as trainer
from atld.cli import build_parser
from atld.config.fields import from_flags
from atld.config.train import TrainConfig
from atld.data.loaders import as_float01
from atld.methods import METHODS, StepContext
from atld.models import Discriminator, build_classifier
from atld.models.common import InputConv2d, LayoutFlatten
from atld.train.trainer import amp_dtype, train

# Tensor -> host reads: each one waits for the GPU (torch.cuda.set_sync_debug_mode only works on CUDA,
# so on the CPU every Python-level call is intercepted instead).
_HOST_READS = {"item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__", "__index__",
               "nonzero", "argwhere", "masked_select", "unique", "unique_consecutive"}


class HostSyncRecorder(TorchFunctionMode):
    """Records every torch call that reads a tensor's value on the host (or indexes with a mask)."""

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", str(func))
        if name in _HOST_READS:
            self.calls.append(name)
        elif name in ("__getitem__", "__setitem__") and len(args) > 1 and _has_bool_mask(args[1]):
            self.calls.append(name + "[mask]")
        return func(*args, **(kwargs or {}))


def _has_bool_mask(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)



def test_recorder_sees_host_reads():
    """The recorder must catch what it is meant to catch, or the tests below prove nothing."""
    t = torch.arange(4.0)
    with HostSyncRecorder() as rec:
        t.sum().item()
        bool(t[0] > 1)
        _ = t[t > 1]
        float(t.max())
        _ = t * 2 + 1  # not a host read
    assert rec.calls == ["item", "__bool__", "__getitem__[mask]", "__float__"]


def test_amp_dtype_choices():
    assert amp_dtype("auto", "cuda") is torch.bfloat16  # the fast path is on by default on CUDA
    assert amp_dtype("auto", "cpu") is None
    assert amp_dtype("off", "cuda") is None
    assert amp_dtype("bf16", "cpu") is torch.bfloat16


def _context(config: TrainConfig):
    torch.manual_seed(0)
    f = build_classifier(config.resolved_arch, config.spec)
    d = Discriminator(config.spec.num_classes, config.discriminator_spec())
    opt = torch.optim.SGD(f.parameters(), lr=0.01, momentum=0.9)
    d_opt = torch.optim.SGD(d.parameters(), lr=1e-3, momentum=0.9)
    return StepContext(config, f, opt, torch.Generator().manual_seed(0), d, d_opt, contextlib.nullcontext)


@pytest.mark.parametrize("method,variant", [("natural", "code"), ("pgd-at", "code"), ("atld", "code"),
                                            ("atld", "paper")])
def test_training_steps_never_read_tensors_on_the_host(digits, method, variant):
    config = TrainConfig(method=method, variant=variant, pgd_steps=2, device="cpu")
    ctx = _context(config)
    x, y = as_float01(digits.x_train[:32]), digits.y_train[:32]
    with HostSyncRecorder() as rec:
        out = METHODS[method].step(ctx, x, y)
    assert rec.calls == [], f"{method} step reads tensors on the host: {rec.calls}"
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("method", ["natural", "atld"])
def test_host_reads_per_epoch_do_not_grow_with_the_number_of_steps(digits, method):
    """The loop's host reads happen once per epoch (the metrics), not once per step."""
    counts = {}
    for batch in (300, 600):  # 5 vs 3 steps per epoch
        config = TrainConfig(method=method, epochs=1, batch_size=batch, eval_limit=0, device="cpu")
        with HostSyncRecorder() as rec:
            train(config, data=digits)
        counts[batch] = len(rec.calls)
    assert counts[300] == counts[600], counts


def test_evaluation_runs_in_fp32_while_steps_use_bf16(digits, monkeypatch):
    """amp=bf16: the training steps run under bf16 autocast; the per-epoch evaluation does not."""
    seen = {"step": set(), "eval": set()}
    phase = {"now": "step"}
    original_eval = trainer.evaluate_epoch

    def evaluate(*args, **kwargs):
        phase["now"] = "eval"
        try:
            return original_eval(*args, **kwargs)
        finally:
            phase["now"] = "step"

    monkeypatch.setattr(trainer, "evaluate_epoch", evaluate)
    original_build = trainer.build_classifier

    def build(*args, **kwargs):
        model = original_build(*args, **kwargs)
        model.register_forward_hook(lambda m, i, out: seen[phase["now"]].add(out.dtype))
        return model

    monkeypatch.setattr(trainer, "build_classifier", build)
    config = TrainConfig(method="atld", amp="bf16", epochs=1, batch_size=400, eval_limit=20, device="cpu")
    result = train(config, data=digits)
    assert seen["step"] == {torch.bfloat16}
    assert seen["eval"] == {torch.float32}
    assert 0.0 <= result.card["metrics"][0]["test_clean_acc"] <= 1.0


def test_channels_last_and_fused_optimizer_keep_the_math(digits, monkeypatch):
    """The CPU fast path (channels_last model and batches, fused SGD) trains the same model as the
    plain path (contiguous tensors, for-loop SGD), up to float rounding. On the BatchNorm-free CNN:
    with BatchNorm the two layouts' rounding differences (1.7e-5 after one full-batch step) are
    amplified by the near-constant border pixels of digits (0.03 after one epoch of batch 50)."""
    config = TrainConfig(method="natural", arch="small-cnn-nobn", epochs=1, lr=0.05, lr_milestones=(), eval_limit=0,
                         device="cpu")
    fast = train(config, data=digits).classifier
    assert _inner_conv(fast).weight.is_contiguous(memory_format=torch.channels_last)
    assert not _inner_conv(fast).weight.is_contiguous()
    monkeypatch.setattr(trainer, "make_sgd", lambda params, device, **hyper: torch.optim.SGD(params, **hyper))
    plain = train(config.with_overrides(channels_last=False), data=digits).classifier
    assert _inner_conv(plain).weight.is_contiguous()
    torch.manual_seed(config.seed)
    init = build_classifier(config.resolved_arch, config.spec)
    moved = max((a - b).abs().max().item() for a, b in zip(init.parameters(), plain.parameters()))
    diff = max((a - b).abs().max().item() for a, b in zip(fast.parameters(), plain.parameters()))
    assert moved > 1e-2  # the epoch really trained
    assert diff < 1e-4, diff


def _inner_conv(model: torch.nn.Module) -> torch.nn.Conv2d:
    """A convolution with more than one input channel (a 1-channel weight is both layouts at once)."""
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)


def test_compile_flag_reaches_torch_compile(digits, monkeypatch):
    args = build_parser().parse_args(["train", "--compile", "--dataset", "digits"])
    config = from_flags(TrainConfig, args)
    assert config.compile is True
    compiled = []

    def fake_compile(model, *a, **k):
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    result = train(config.with_overrides(method="natural", epochs=1, batch_size=400, eval_limit=0, device="cpu"),
                   data=digits)
    assert compiled == [result.classifier]
    compiled.clear()
    train(config.with_overrides(compile=False, method="natural", epochs=1, batch_size=400, eval_limit=0,
                                device="cpu"), data=digits)
    assert compiled == []


@pytest.mark.parametrize("channels,side,kernel,stride,bias,channels_last", [
    (1, 28, 4, 2, True, False), (1, 28, 4, 2, True, True), (3, 16, 3, 1, False, True)])
def test_input_conv_gradients_equal_conv2d(channels, side, kernel, stride, bias, channels_last):
    """InputConv2d's direct-kernel input gradient (and its weight and bias gradients) equal nn.Conv2d's."""
    torch.manual_seed(0)
    fast = InputConv2d(channels, 8, kernel, stride=stride, padding=1, bias=bias)
    plain = torch.nn.Conv2d(channels, 8, kernel, stride=stride, padding=1, bias=bias)
    plain.load_state_dict(fast.state_dict())
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.rand(6, channels, side, side).contiguous(memory_format=layout)
    grads = []
    for conv in (fast, plain):
        xi = x.clone().requires_grad_(True)
        out = conv.to(memory_format=layout)(xi)
        weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        grads.append([out, *torch.autograd.grad((out * weights).sum(), [xi, *conv.parameters()])])
    assert "InputConvFunction" in type(grads[0][0].grad_fn).__name__  # the fast path really ran
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (a - b).abs().max()


class AtenRecorder(TorchDispatchMode):
    """Records the names of the ATen ops that run (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []
        self.tensor_args: list[list[torch.Tensor]] = []  # each op's tensor arguments, in order

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        self.tensor_args.append([a for a in args if isinstance(a, torch.Tensor)])
        return func(*args, **(kwargs or {}))


@pytest.mark.slow
def test_compiled_classifier_trains_atld(digits, tmp_path, monkeypatch):
    """A real torch.compile of the classifier (CPU, cold cache) trains ATLD, whose step
    backpropagates more than once through one forward graph, and gives the uncompiled run's losses
    (compiled kernels round differently, hence the tolerance)."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    config = TrainConfig(method="atld", arch="small-cnn-nobn", epochs=1, batch_size=400, eval_limit=0, device="cpu")
    plain = train(config, data=digits).card["metrics"][0]
    compiled = train(config.with_overrides(compile=True), data=digits).card["metrics"][0]
    for key in ("loss", "loss_ce", "loss_gap", "s"):
        assert compiled[key] == pytest.approx(plain[key], rel=1e-3, abs=1e-4), key


def test_input_conv_computes_only_the_gradients_the_pass_needs():
    """An image-only pass (autograd.grad to x, as ATLD's perturbation and s) computes no weight
    gradient; a parameters-only pass (backward(inputs=params), f's update) no image gradient. Both
    still equal nn.Conv2d's."""
    torch.manual_seed(0)
    fast = InputConv2d(1, 8, 4, stride=2, padding=1)
    plain = torch.nn.Conv2d(1, 8, 4, stride=2, padding=1)
    plain.load_state_dict(fast.state_dict())
    x = torch.rand(5, 1, 28, 28)
    results = {}
    for name, conv in (("fast", fast), ("plain", plain)):
        xi = x.clone().requires_grad_(True)
        out = conv(xi)
        loss = (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(1))).sum()
        with AtenRecorder() as image_pass:
            (gx,) = torch.autograd.grad(loss, xi, retain_graph=True)
        conv.zero_grad(set_to_none=True)
        with AtenRecorder() as weight_pass:
            loss.backward(inputs=list(conv.parameters()))
        results[name] = (gx, conv.weight.grad, conv.bias.grad, image_pass.ops, weight_pass.ops)
    gx, gw, gb, image_ops, weight_ops = results["fast"]
    assert "_slow_conv2d_backward" in image_ops and "convolution_backward" not in image_ops, image_ops
    assert "convolution_backward" in weight_ops and "_slow_conv2d_backward" not in weight_ops, weight_ops
    for a, b in zip((gx, gw, gb), results["plain"][:3]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), (a - b).abs().max()


@pytest.mark.parametrize("channels", [1, 3])
def test_input_conv_hands_the_direct_kernel_nchw_strides(channels):
    """In channels_last (as the trainer puts the model on the CPU) a 1-channel weight [16, 1, 4, 4]
    has strides (16, 1, 4, 1): "contiguous" to torch, yet the direct kernel reads it as channels_last
    and takes its ~4x slower path. Every tensor it gets must have plain NCHW strides; the gradient
    must still equal nn.Conv2d's."""
    torch.manual_seed(0)
    fast = InputConv2d(channels, 16, 4, stride=2, padding=1).to(memory_format=torch.channels_last)
    plain = torch.nn.Conv2d(channels, 16, 4, stride=2, padding=1)
    plain.load_state_dict(fast.state_dict())
    x = torch.rand(4, channels, 28, 28).contiguous(memory_format=torch.channels_last)
    grads = []
    for conv in (fast, plain):
        xi = x.clone().requires_grad_(True)
        out = conv(xi)
        with AtenRecorder() as rec:
            (gx,) = torch.autograd.grad((out * out).sum(), xi)
        grads.append(gx)
        if conv is fast:
            (args,) = [a for op, a in zip(rec.ops, rec.tensor_args) if op == "_slow_conv2d_backward"]
            assert all(a.stride() == torch.zeros(a.shape).stride() for a in args), [a.stride() for a in args]
    assert torch.allclose(*grads, rtol=1e-5, atol=1e-6), (grads[0] - grads[1]).abs().max()


@pytest.mark.parametrize("shape", [(6, 32, 7, 7), (6, 64, 2, 2)])
def test_layout_flatten_returns_gradients_in_the_input_layout(shape):
    """LayoutFlatten equals nn.Flatten, forward and backward, and a channels_last input gets a
    channels_last gradient (nn.Flatten's is NCHW, which makes the ReLU before it slow to backprop)."""
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
    weights = torch.randn(shape[0], shape[1] * shape[2] * shape[3])
    grads = []
    for flatten in (LayoutFlatten(), torch.nn.Flatten()):
        xi = x.clone().requires_grad_(True)
        out = torch.relu(xi)
        flat = flatten(out)
        (g,) = torch.autograd.grad((flat * weights).sum(), out)
        grads.append((flat, g))
    (fast_out, fast_g), (plain_out, plain_g) = grads
    assert torch.equal(fast_out, plain_out) and torch.equal(fast_g, plain_g)
    assert fast_g.is_contiguous(memory_format=torch.channels_last) and not fast_g.is_contiguous()
    assert plain_g.is_contiguous()  # what LayoutFlatten exists to avoid


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dataset", ["mnist", "digits"])
def test_atld_steps_on_the_fast_path_equal_the_plain_steps(dataset, channels_last, monkeypatch):
    """Three ATLD steps with the CPU fast paths (InputConv2d's input gradient, LayoutFlatten) leave
    the same classifier and discriminator as the plain nn.Conv2d / nn.Flatten path (within 1e-6):
    the speed-up changes rounding, not the method. Both layouts (the trainer uses channels_last on
    the CPU). Synthetic images of the dataset's shape (no data files needed)."""
    config = TrainConfig(dataset=dataset, method="atld", device="cpu")
    shape = config.spec.input_shape
    gen = torch.Generator().manual_seed(3)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    batches = [(torch.rand(32, *shape, generator=gen).contiguous(memory_format=layout),
                torch.randint(0, 10, (32,), generator=gen)) for _ in range(3)]
    fast_calls = []

    def run():
        ctx = _context(config)
        ctx.classifier.to(memory_format=layout)
        for x, y in batches:
            METHODS["atld"].step(ctx, x, y)
        return [p.detach().clone() for p in [*ctx.classifier.parameters(), *ctx.discriminator.parameters()]]

    flatten_apply = common._FlattenFunction.apply
    monkeypatch.setattr(common._FlattenFunction, "apply", lambda *a: fast_calls.append(1) or flatten_apply(*a))
    fast = run()
    assert bool(fast_calls) == channels_last  # the layout-keeping flatten ran where it should
    monkeypatch.setattr(InputConv2d, "forward", torch.nn.Conv2d.forward)
    monkeypatch.setattr(LayoutFlatten, "forward", torch.nn.Flatten.forward)
    plain = run()
    torch.manual_seed(0)
    init = list(build_classifier(config.resolved_arch, config.spec).parameters())
    assert max((a - b).abs().max().item() for a, b in zip(init, plain)) > 1e-3  # the steps really trained
    diff = max((a - b).abs().max().item() for a, b in zip(fast, plain))
    assert diff < 1e-6, diff
