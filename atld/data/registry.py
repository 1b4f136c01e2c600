"""The datasets and the defaults each one carries: the one source of truth for ε, steps, shapes
and budgets (torch-free).

Units: every image is a float tensor in [0, 1]; every ε and step is in those same [0, 1] pixel
units (CIFAR ε = 8/255 means 8 grey levels out of 255). Normalization lives inside the model.

The attacks' step rule (one rule for every dataset, ε/4) lives with the attacks:
`atld.attacks.step.attack_step`.

ε per dataset: CIFAR-10/100 and SVHN 8/255 (the paper); MNIST 0.3 and Fashion-MNIST 0.1 (the
customary values); digits 0.2, because at 0.1 a naturally trained small CNN still keeps about
57 % under PGD-20 on digits (too weak to show robustness), while at 0.2 it falls to about 1 %.

Training recipe (`Recipe`, one per dataset): the architecture, optimizer, learning rate and its
schedule, batch size and ε ramp a run gets when its TrainConfig leaves them empty (None). digits
keeps the recipe its shipped models were trained with (small-cnn, SGD 0.1, step decay, batch 50,
full ε from the first step). MNIST and Fashion-MNIST use the fast-adversarial-training recipe
measured on the full sets on a 2-core CPU (fast-cnn, Adam 5e-3 with a one-cycle schedule peaking at
40 % of the run, batch 100, ε ramped over the first 2 epochs for MNIST's ε = 0.3 and 1 for
Fashion-MNIST's 0.1: without the ramp PGD-AT at ε = 0.3 collapses to one class). CIFAR-10 and its
exact subsets use convnet-32 with SGD 0.05 (momentum 0.9, weight decay 5e-4), one-cycle peaking
at 30 %, batch 32 and a 3-epoch ε ramp: the net that PGD-trains on a CPU in minutes. CIFAR-100
and SVHN keep the paper's WRN-28-10 recipe.

Budgets: `max_params` bounds classifier + discriminator parameters for the dataset (checked from
the architecture's formula before any model is built: a card or flag asking for more is refused);
`max_images` bounds each split read from a dataset file.
"""

from __future__ import annotations

from dataclasses import dataclass

from atld.vocab import Augmentation, LrSchedule, Optimizer
from atld.errors import check_choice

@dataclass(frozen=True, kw_only=True)
class Recipe:
    """What an empty (None) optimisation field of TrainConfig means for one dataset (see the
    module docstring for why each recipe is what it is)."""
    arch: str
    optimizer: Optimizer = Optimizer.SGD
    lr: float = 0.1  # peak learning rate
    weight_decay: float = 2e-4  # L2 coefficient added to the gradient
    batch_size: int = 50  # images per step
    lr_schedule: LrSchedule = LrSchedule.STEP
    lr_warmup_fraction: float = 0.0  # lr_warmup_epochs = this × epochs (cosine, one-cycle)
    epsilon_ramp_epochs: float = 0.0  # epochs over which the training ε grows linearly from 0


# The settings every run made before recipes existed was trained with: an old card without these
# fields means exactly them (`TrainConfig.from_dict`).
LEGACY_TRAINING = {"optimizer": Optimizer.SGD.value, "lr_schedule": LrSchedule.STEP.value, "lr_warmup_epochs": 0.0,
                   "epsilon_ramp_epochs": 0.0}


@dataclass(frozen=True, kw_only=True)
class DatasetSpec:
    name: str
    input_shape: tuple[int, int, int]  # (channels, height, width)
    num_classes: int
    epsilon: float  # ℓ∞ radius, [0, 1] pixel units
    augmentation: Augmentation  # per batch, on the data's device
    mean: tuple[float, ...]  # per-channel normalization, applied inside the model
    std: tuple[float, ...]
    recipe: Recipe  # the training defaults
    imt_window: tuple[float, float]  # ATLD+: half IMT step where low < D(natural) < high
    gap_weight_scale: float  # ATLD: L = L_ce + s · scale · L_gap (docs/method.md §2)
    needs_root: bool  # loaded from a local --data-root (False: ships with a package)
    source: str  # where the data comes from, for messages and docs
    max_params: int  # parameters of classifier + discriminator at most
    max_images: int = 100_000  # images per split read from a dataset file, at most
    class_names: tuple[str, ...] = ()
    # The files under the data root that make the full data set "present" (availability); an idx
    # file also counts when gzipped (NAME.gz).
    data_files: tuple[str, ...] = ()
    downloadable: bool = False  # the app can fetch it (torchvision knows its mirrors and checksums)

    @property
    def default_arch(self) -> str:
        return self.recipe.arch

    @property
    def channels(self) -> int:
        return self.input_shape[0]

    def labels(self) -> tuple[str, ...]:
        return self.class_names or tuple(str(i) for i in range(self.num_classes))

    def epsilon_or_default(self, epsilon: float | None) -> float:
        """The given ε, else this dataset's ([0, 1] pixel units)."""
        return self.epsilon if epsilon is None else epsilon


_DIGITS = tuple(str(i) for i in range(10))
_CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2471, 0.2435, 0.2616)
_GREY = {"mean": (0.5,), "std": (0.5,)}
_SMALL_RECIPE = Recipe(arch="small-cnn")
_PAPER_RECIPE = Recipe(arch="wrn-28-10")
_FAST_RECIPE = {"arch": "fast-cnn", "optimizer": Optimizer.ADAM, "lr": 5e-3, "weight_decay": 0.0, "batch_size": 100,
                "lr_schedule": LrSchedule.ONE_CYCLE, "lr_warmup_fraction": 0.4}
_MNIST_RECIPE = Recipe(**_FAST_RECIPE, epsilon_ramp_epochs=2.0)  # ε = 0.3
_FASHION_RECIPE = Recipe(**_FAST_RECIPE, epsilon_ramp_epochs=1.0)  # ε = 0.1
_CPU_CIFAR_RECIPE = Recipe(arch="convnet-32", optimizer=Optimizer.SGD, lr=0.05, weight_decay=5e-4, batch_size=32,
                           lr_schedule=LrSchedule.ONE_CYCLE, lr_warmup_fraction=0.3, epsilon_ramp_epochs=3.0)
_SMALL_BUDGET = 20_000_000  # grey 8x8 / 28x28 images: far above any model that suits them
IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")


def _idx_files(folder: str) -> tuple[str, ...]:
    return tuple(f"{folder}/raw/{name}" for name in IDX_NAMES)


_CIFAR_BUDGET = 300_000_000  # 32x32 colour: WRN-70-16 (267 M) and the official D fit

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec(name="digits", input_shape=(1, 8, 8), num_classes=10, epsilon=0.2, augmentation=Augmentation.NONE,
                **_GREY, recipe=_SMALL_RECIPE, imt_window=(0.3, 0.7), gap_weight_scale=0.5, needs_root=False,
                source="scikit-learn load_digits (ships with scikit-learn)", max_params=_SMALL_BUDGET,
                max_images=2_000, class_names=_DIGITS),
    DatasetSpec(name="mnist", input_shape=(1, 28, 28), num_classes=10, epsilon=0.3, augmentation=Augmentation.NONE,
                **_GREY, recipe=_MNIST_RECIPE, imt_window=(0.3, 0.7), gap_weight_scale=0.5, needs_root=True,
                source="torchvision MNIST (idx files under ROOT/MNIST/raw)", max_params=_SMALL_BUDGET,
                class_names=_DIGITS, data_files=_idx_files("MNIST"), downloadable=True),
    DatasetSpec(name="fashion-mnist", input_shape=(1, 28, 28), num_classes=10, epsilon=0.1,
                augmentation=Augmentation.NONE, **_GREY, recipe=_FASHION_RECIPE, imt_window=(0.3, 0.7),
                gap_weight_scale=0.5, needs_root=True,
                source="torchvision FashionMNIST (idx files under ROOT/FashionMNIST/raw)", max_params=_SMALL_BUDGET,
                class_names=_FASHION, data_files=_idx_files("FashionMNIST"), downloadable=True),
    DatasetSpec(name="cifar10", input_shape=(3, 32, 32), num_classes=10, epsilon=8 / 255,
                augmentation=Augmentation.CROP_FLIP, mean=_CIFAR_MEAN, std=_CIFAR_STD, recipe=_CPU_CIFAR_RECIPE,
                imt_window=(0.3, 0.7), gap_weight_scale=0.5, needs_root=True,
                source="torchvision CIFAR10 (ROOT/cifar-10-batches-py)", max_params=_CIFAR_BUDGET,
                class_names=_CIFAR10,
                data_files=("cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch")),
    DatasetSpec(name="cifar100", input_shape=(3, 32, 32), num_classes=100, epsilon=8 / 255,
                augmentation=Augmentation.CROP_FLIP, mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762),
                recipe=_PAPER_RECIPE, imt_window=(0.3, 0.7), gap_weight_scale=0.1, needs_root=True,
                source="torchvision CIFAR100 (ROOT/cifar-100-python)", max_params=_CIFAR_BUDGET,
                data_files=("cifar-100-python/train", "cifar-100-python/test")),
    DatasetSpec(name="svhn", input_shape=(3, 32, 32), num_classes=10, epsilon=8 / 255, augmentation=Augmentation.NONE,
                mean=(0.4377, 0.4438, 0.4728), std=(0.1980, 0.2010, 0.1970), recipe=_PAPER_RECIPE,
                imt_window=(0.3, 0.6), gap_weight_scale=0.5, needs_root=True,
                source="torchvision SVHN (ROOT/train_32x32.mat, ROOT/test_32x32.mat)", max_params=_CIFAR_BUDGET,
                max_images=700_000, class_names=_DIGITS, data_files=("train_32x32.mat", "test_32x32.mat")),
    # The exact CIFAR-10 subsets in ../shared/data (8,068 train / 1,017 test real images): for
    # benchmarks and the reproduction study on machines without the full data set.
    DatasetSpec(name="cifar10-exact", input_shape=(3, 32, 32), num_classes=10, epsilon=8 / 255,
                augmentation=Augmentation.CROP_FLIP, mean=_CIFAR_MEAN, std=_CIFAR_STD, recipe=_CPU_CIFAR_RECIPE,
                imt_window=(0.3, 0.7), gap_weight_scale=0.5, needs_root=True,
                source="exact CIFAR-10 subsets (ROOT/cifar10/exact/cifar10_exact_subsets.npz)",
                max_params=_CIFAR_BUDGET, class_names=_CIFAR10,
                data_files=("cifar10/exact/cifar10_exact_subsets.npz",)),
)}

DATASET_NAMES = tuple(DATASETS)


def get_spec(name: str) -> DatasetSpec:
    """The spec of a registered dataset; a clear error for any other name."""
    check_choice("dataset", name, DATASET_NAMES)
    return DATASETS[name]
