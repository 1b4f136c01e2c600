"""User-facing errors.

Every error a user can cause (bad flag, bad file, missing data) is raised as an `ATLDError`
subclass with a one-line message; the CLI prints it without a traceback and the app shows it in
an error box. Programming errors stay ordinary exceptions.
"""

from __future__ import annotations

import math


class ATLDError(Exception):
    """Base class: a problem the user can fix, described in one line."""


class ConfigError(ATLDError, ValueError):
    """A configuration value is out of range or unknown."""


class DataError(ATLDError):
    """A dataset is missing, incomplete or malformed."""


class CheckpointError(ATLDError):
    """A checkpoint directory is missing, corrupt, hostile or does not match its card."""


class TrainingDiverged(ATLDError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


class TrainingCollapsed(ATLDError):
    """The classifier collapsed to one class or to chance; the last good checkpoint is kept."""


def require(condition: bool, message: str, error: type[ATLDError] = ConfigError) -> None:
    """Raise `error(message)` unless `condition` holds."""
    if not condition:
        raise error(message)


def shown(value: object, limit: int = 60) -> str:
    """`value` as it may appear in a one-line message: its repr (so a newline or an escape code in
    text from a file or a form is shown escaped, never emitted), cut to `limit` characters. A value
    whose repr fails (an integer of thousands of digits) is named by its type."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_choice(name: str, value: str, choices) -> str:
    """Check that `value` is one of `choices` (a closed vocabulary)."""
    choices = tuple(choices)
    require(value in choices, f"unknown {name} {shown(value)}; choose one of: {', '.join(choices)}")
    return value


def check_finite_range(name: str, value: float, low: float, high: float, unit: str = "") -> float:
    """Check low <= value <= high and that value is a finite number."""
    require(
        isinstance(value, (int, float)) and not isinstance(value, bool),
        f"{name} must be a number, got {shown(value)}",
    )
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float (e.g. 10**400 in a JSON card)
        finite = False
    require(finite, f"{name} must be finite, got {shown(value, 40)}")
    suffix = f" {unit}" if unit else ""
    require(low <= value <= high, f"{name} must be in [{low}, {high}]{suffix}, got {shown(value)}")
    return float(value)


def check_int_at_least(name: str, value: int, low: int) -> int:
    """Check that value is an integer >= low."""
    require(
        isinstance(value, int) and not isinstance(value, bool),
        f"{name} must be an integer, got {shown(value)}",
    )
    require(value >= low, f"{name} must be >= {low}, got {shown(value)}")
    return value


def check_int_in(name: str, value: int, low: int, high: int) -> int:
    """Check that value is an integer in [low, high]."""
    check_int_at_least(name, value, low)
    require(value <= high, f"{name} must be <= {high}, got {shown(value)}")
    return value


def name_mismatch(expected, given) -> str | None:
    """How two sets of names differ, in one line ("missing a; 1 missing, 0 unexpected"), or None.
    Names from files are shown with repr, so no control character reaches a terminal."""
    missing, unexpected = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    if not missing and not unexpected:
        return None
    first = f"missing {missing[0]}" if missing else f"unexpected {shown(unexpected[0], 80)}"
    return f"{first}; {len(missing)} missing, {len(unexpected)} unexpected"


SEED_LIMIT = 2**32  # seeds are in [0, 2^32): what every random number generator here accepts


def check_seed(name: str, value: int) -> int:
    """Check that value is an integer seed in [0, 2^32)."""
    require(isinstance(value, int) and not isinstance(value, bool) and 0 <= value < SEED_LIMIT,
            f"{name} must be an integer in [0, 2^32), got {shown(value, 40)}")
    return value
