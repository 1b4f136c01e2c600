"""What a latent map computes (the `embed` command and the Latent explorer): the frozen,
validated `LatentConfig` (docs/latent.md)."""

from __future__ import annotations

from dataclasses import dataclass

from atld.attacks.registry import PERTURBATION_NAMES
from atld.config.fields import setting
from atld.vocab import DeviceChoice, FitMode, LatentSpace, Projection, Split, device_name, parse
from atld.errors import check_choice, check_finite_range, check_int_in, check_seed, require

# The point table of a map (`atld.latent.maps.points_frame`; the CSV export and the `embed`
# command write it): one row per point, natural points first.
POINT_COLUMNS = ("index", "set", "label", "label_name", "pred", "pred_name", "correct", "d_natural", "x", "y")


@dataclass(frozen=True)
class LatentConfig:
    attack: str = setting("pgd20", "perturbation, at the dataset's ε (step ε/4; FGSM one step of ε)",
                          choices=PERTURBATION_NAMES)
    epsilon: float | None = setting(None, "the attack's ε ([0, 1] pixel units); default: the dataset's")
    projection: Projection = setting(Projection.PCA, "projection to 2-D", aliases=("method",))
    fit_on: FitMode = setting(FitMode.JOINT, "fit the map on both clouds, or on natural latents only (understates "
                                             "the gap)")
    space: LatentSpace = setting(LatentSpace.LOGITS, "latent space: logits (what D sees) or penultimate features")
    split: Split = setting(Split.TEST, "dataset split")
    limit: int = setting(1000, "use the first N images of the split (at least 2)")
    device: str = setting("cpu", "auto | cpu | cuda | cuda:N", choices=tuple(DeviceChoice))
    batch_size: int = setting(256, "images per attack batch")
    seed: int = setting(0, "seed for the attack's random start and the projection, in [0, 2^32)")
    permutations: int = setting(200, "MMD permutation-test permutations")
    neighbors: int = setting(10, "k of the kNN mixing")
    folds: int = setting(5, "cross-validation folds of the two-sample test")

    def __post_init__(self):
        check_choice("attack", self.attack, PERTURBATION_NAMES)
        if self.epsilon is not None:
            check_finite_range("epsilon", self.epsilon, 0.0, 1.0, "([0, 1] pixel units)")
        for name, enum, what in (("projection", Projection, "projection"), ("fit_on", FitMode, "fit mode"),
                                 ("space", LatentSpace, "latent space"), ("split", Split, "split")):
            object.__setattr__(self, name, parse(enum, getattr(self, name), what))
        check_int_in("limit", self.limit, 2, 1_000_000)
        object.__setattr__(self, "device", device_name(self.device))
        check_int_in("batch size", self.batch_size, 1, 100_000)
        check_seed("seed", self.seed)
        check_int_in("permutations", self.permutations, 1, 100_000)
        check_int_in("neighbors", self.neighbors, 1, 1000)
        check_int_in("folds", self.folds, 2, 100)
        require(not (self.projection is Projection.TSNE and self.fit_on is FitMode.NATURAL),
                "t-SNE cannot project new points onto a fitted map; use --fit-on joint or --projection pca/umap")
