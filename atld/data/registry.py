"""The closed set of datasets and the defaults each one carries (the one source of truth).

Units: every image is a float tensor in [0, 1]; every ε and step is in those same [0, 1] pixel
units (CIFAR ε = 8/255 means 8 grey levels out of 255). Normalization lives inside the model.

Step-size rule (one rule for every dataset): the PGD step is ε/4. Then PGD-10 (training) covers
10·ε/4 = 2.5 ε of path, enough to cross the ε-ball corner to corner and back once, and the
evaluation attacks PGD-20 / CW-20 cover 5 ε. For CIFAR/SVHN this gives exactly the paper's
2/255 at ε = 8/255. ATLD's own training perturbation is one signed step of size ε from a random
start (method doc §2) and IMT's step is ε (method doc §4).

ε per dataset: CIFAR-10/100 and SVHN 8/255 (the paper); MNIST 0.3 and Fashion-MNIST 0.1 (the
customary values in the literature); digits 0.2, because at 0.1 a naturally trained small CNN
still keeps about 57 % under PGD-20 on digits (too weak to show robustness), while at 0.2 it
falls to about 1 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from atld.errors import check_choice

Augmentation = Literal["none", "crop-flip"]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    input_shape: tuple[int, int, int]  # (channels, height, width)
    num_classes: int
    epsilon: float  # ℓ∞ radius, [0, 1] pixel units
    augmentation: Augmentation  # per-batch, done on the data's device
    mean: tuple[float, ...]  # per-channel normalization applied inside the model
    std: tuple[float, ...]
    default_arch: str
    imt_window: tuple[float, float]  # ATLD+: half IMT step where low < D(natural) < high
    gap_weight_scale: float  # ATLD: L = L_ce + s * gap_weight_scale * L_gap (method doc §2)
    needs_root: bool  # loaded from a local --data-root (False: ships with a package)
    source: str  # where the data comes from, for messages and docs
    class_names: tuple[str, ...] = ()

    @property
    def attack_step(self) -> float:
        """PGD / CW step size in [0, 1] units: ε/4 (see module docstring)."""
        return self.epsilon / 4

    @property
    def channels(self) -> int:
        return self.input_shape[0]

    def labels(self) -> tuple[str, ...]:
        return self.class_names or tuple(str(i) for i in range(self.num_classes))


_DIGITS = tuple(str(i) for i in range(10))
_CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2471, 0.2435, 0.2616)

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("digits", (1, 8, 8), 10, 0.2, "none", (0.5,), (0.5,), "small-cnn",
                    (0.3, 0.7), 0.5, False, "scikit-learn load_digits (ships with scikit-learn)", _DIGITS),
        DatasetSpec("mnist", (1, 28, 28), 10, 0.3, "none", (0.5,), (0.5,), "small-cnn",
                    (0.3, 0.7), 0.5, True, "torchvision MNIST (idx files under ROOT/MNIST/raw)", _DIGITS),
        DatasetSpec("fashion-mnist", (1, 28, 28), 10, 0.1, "none", (0.5,), (0.5,), "small-cnn",
                    (0.3, 0.7), 0.5, True, "torchvision FashionMNIST (idx files under ROOT/FashionMNIST/raw)", _FASHION),
        DatasetSpec("cifar10", (3, 32, 32), 10, 8 / 255, "crop-flip", _CIFAR_MEAN, _CIFAR_STD, "wrn-28-10",
                    (0.3, 0.7), 0.5, True, "torchvision CIFAR10 (ROOT/cifar-10-batches-py)", _CIFAR10),
        DatasetSpec("cifar100", (3, 32, 32), 100, 8 / 255, "crop-flip", (0.5071, 0.4865, 0.4409),
                    (0.2673, 0.2564, 0.2762), "wrn-28-10", (0.3, 0.7), 0.1, True,
                    "torchvision CIFAR100 (ROOT/cifar-100-python)"),
        DatasetSpec("svhn", (3, 32, 32), 10, 8 / 255, "none", (0.4377, 0.4438, 0.4728),
                    (0.1980, 0.2010, 0.1970), "wrn-28-10", (0.3, 0.6), 0.5, True,
                    "torchvision SVHN (ROOT/train_32x32.mat, ROOT/test_32x32.mat)", _DIGITS),
        # The exact CIFAR-10 subsets in ../shared/data (8,068 train / 1,017 test real images):
        # for benchmarks and the reproduction study on machines without the full data set.
        DatasetSpec("cifar10-exact", (3, 32, 32), 10, 8 / 255, "crop-flip", _CIFAR_MEAN, _CIFAR_STD,
                    "preact-resnet18", (0.3, 0.7), 0.5, True,
                    "exact CIFAR-10 subsets (ROOT/cifar10/exact/cifar10_exact_subsets.npz)", _CIFAR10),
    )
}

DATASET_NAMES = tuple(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The spec of a registered dataset; a clear error for any other name."""
    check_choice("dataset", name, DATASET_NAMES)
    return DATASETS[name]
