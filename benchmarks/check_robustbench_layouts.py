"""Check the lab's RobustBench-compatible architectures against RobustBench's own code, and record
their layouts for the tests (tests/data/robustbench_layouts.json).

Needs a RobustBench checkout (its architecture files are imported from it; nothing is downloaded
here): each of its classes is built beside the lab's, both get the same random weights and
BatchNorm statistics, and their logits on random 32x32 inputs are compared (the largest
difference is printed; float32 rounding is about 1e-7).

    git clone https://github.com/RobustBench/robustbench /tmp/robustbench
    python -m benchmarks.check_robustbench_layouts --robustbench /tmp/robustbench [--write]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "robustbench_layouts.json"


def _module(root: Path, name: str):
    path = root / "robustbench" / "model_zoo" / "architectures" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"rb_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--robustbench", type=Path, required=True, help="a RobustBench checkout")
    parser.add_argument("--write", action="store_true", help=f"write the layouts to {OUT}")
    args = parser.parse_args()

    import torch

    from atld.data.registry import get_spec
    from atld.models.common import Normalize
    from atld.models.registry import build_classifier

    torch.set_num_threads(1)
    wrn, dm, resnet = (_module(args.robustbench, n) for n in ("wide_resnet", "dm_wide_resnet", "resnet"))
    plain = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    theirs = {
        "rb-wrn-28-10": lambda: wrn.WideResNet(28, 10, 10),
        "rb-wrn-16-2": lambda: wrn.WideResNet(16, 10, 2),
        "dm-wrn-16-2": lambda: dm.DMWideResNet(10, 16, 2, **plain),
        "dm-wrn-16-2-swish": lambda: dm.DMWideResNet(10, 16, 2, activation_fn=dm.Swish, **plain),
        "rb-resnet18": resnet.ResNet18,
        "rb-preact-resnet18": lambda: resnet.PreActResNet(resnet.PreActBlock, [2, 2, 2, 2]),
        "rb-preact-resnet18-bn": lambda: resnet.PreActResNet(resnet.PreActBlockV2, [2, 2, 2, 2], bn_before_fc=True),
        "dm-preact-resnet18": lambda: dm.DMPreActResNet(10, 18, **plain),
        "dm-preact-resnet18-swish": lambda: dm.DMPreActResNet(10, 18, activation_fn=dm.Swish, **plain),
    }
    recorded = ("rb-wrn-28-10", "rb-resnet18", "rb-preact-resnet18", "rb-preact-resnet18-bn", "dm-preact-resnet18")
    layouts = {}
    for arch, make in theirs.items():
        torch.manual_seed(0)
        reference = make().eval()
        state = reference.state_dict()
        with torch.no_grad():
            for key, value in state.items():
                if key.endswith("running_var"):
                    value.uniform_(0.5, 1.5)
                elif value.is_floating_point():
                    value.normal_(0, 0.05)
        reference.load_state_dict(state)
        ours = build_classifier(arch, get_spec("cifar10"))
        ours.normalize = Normalize(plain["mean"], plain["std"])
        ours.load_state_dict(reference.state_dict(), strict=True)
        ours.eval()
        x = torch.rand(4, 3, 32, 32)
        with torch.no_grad():
            logits = reference(x)
            diff = (logits - ours(x)).abs().max().item()
        print(f"{arch}: {len(state)} tensors, same names and shapes; largest logit difference {diff:.2e} "
              f"(logits up to {logits.abs().max().item():.2f})")
        if arch in recorded:
            layouts[arch] = [[k, list(v.shape)] for k, v in state.items()]
    with torch.device("meta"):
        for arch, model in (("dm-wrn-70-16", dm.DMWideResNet(10, 70, 16)), ("rb-wrn-34-20", wrn.WideResNet(34, 10, 20)),
                            ("rb-wrn-34-10", wrn.WideResNet(34, 10, 10)),
                            ("rb-wrn-28-10+sub_block1", wrn.WideResNet(28, 10, 10, sub_block1=True))):
            layouts[arch] = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    if args.write:
        OUT.write_text(json.dumps(layouts, separators=(",", ":")))
        print(f"wrote {OUT}")
    else:
        same = json.loads(OUT.read_text()) == layouts
        print(f"{OUT.name}: {'matches' if same else 'DIFFERS from'} RobustBench's layouts")


if __name__ == "__main__":
    main()
