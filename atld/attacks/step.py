"""The attacks' step rule, one for every dataset (torch-free): the PGD / CW step is ε/4.

PGD-10 (training) then covers 10·ε/4 = 2.5 ε of path, enough to cross the ε-ball corner to corner
and back once, and the evaluation attacks PGD-20 / CW-20 cover 5 ε. For CIFAR/SVHN this gives the
paper's 2/255 at ε = 8/255. ATLD's own training perturbation is one signed step of size ε from a
random start (docs/method.md §2) and IMT's step is ε (docs/method.md §4)."""

STEP_FRACTION = 0.25  # PGD / CW step = ε/4


def attack_step(epsilon: float) -> float:
    """The PGD / CW step size for radius ε, both in [0, 1] pixel units: ε/4."""
    return epsilon * STEP_FRACTION
