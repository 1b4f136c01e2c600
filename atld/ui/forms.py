"""The Train page's form, generated from `TrainConfig` so the app and the dataclass never disagree.

`field_widgets()` describes one widget per config field (kind, label with its unit from the
field's "help" metadata, default, choices); `config_from_values()` turns what the widgets hold
back into a validated `TrainConfig` (a bad value raises `ConfigError` with one line).
Streamlit-free: the page only draws what this module describes."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from atld.data.registry import DATASET_NAMES
from atld.device import DEVICE_CHOICES
from atld.errors import ConfigError
from atld.train.config import AMP_CHOICES, METHODS, VARIANTS, TrainConfig

# Closed vocabularies offered as select boxes.
CHOICES: dict[str, tuple[str, ...]] = {"dataset": DATASET_NAMES, "method": METHODS, "variant": VARIANTS,
                                       "amp": AMP_CHOICES, "device": DEVICE_CHOICES}
# Shown at the top of the form; everything else sits under "Advanced".
MAIN_FIELDS = ("dataset", "method", "epochs", "batch_size", "lr", "epsilon", "seed", "eval_limit")
# The app's defaults where the dataclass's suit a long CLI run better than an interactive one:
# 5 epochs of digits take about 10-30 s on 2 CPU cores; 200 test images keep the per-epoch PGD-20 check quick.
APP_DEFAULTS: dict[str, Any] = {"epochs": 5, "eval_limit": 200, "device": "cpu"}


@dataclass(frozen=True)
class FieldWidget:
    name: str  # the TrainConfig field
    kind: str  # "select" | "int" | "float" | "text" | "bool"
    label: str  # field name and its meaning/unit from the metadata
    help: str
    default: Any  # the widget's initial value (text fields: a string, "" = dataset default)
    options: tuple[str, ...] = ()  # for "select"
    main: bool = False  # drawn at the top (else under "Advanced")


def _annotation(f: dataclasses.Field):
    ann = f.type
    if isinstance(ann, str):
        ann = eval(ann, {"tuple": tuple, "int": int, "float": float, "str": str, "bool": bool, "None": None})
    return ann


def _split_optional(ann) -> tuple[Any, bool]:
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(ann) if a is not type(None)]
        return args[0], True
    return ann, False


def _as_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def field_widgets(overrides: dict[str, Any] | None = None) -> list[FieldWidget]:
    """One widget description per TrainConfig field, in the dataclass's order.

    overrides: initial values to use instead of the dataclass defaults (e.g. the sidebar's dataset)."""
    initial = {**APP_DEFAULTS, **(overrides or {})}
    out = []
    for f in dataclasses.fields(TrainConfig):
        base, optional = _split_optional(_annotation(f))
        default = initial.get(f.name, f.default)
        help_text = f.metadata.get("help", "")
        label = f"{f.name} — {help_text}" if help_text else f.name
        main = f.name in MAIN_FIELDS
        if f.name in CHOICES:
            out.append(FieldWidget(f.name, "select", label, help_text, default, CHOICES[f.name], main))
        elif base is bool:
            out.append(FieldWidget(f.name, "bool", label, help_text, bool(default), (), main))
        elif optional or typing.get_origin(base) is tuple:
            suffix = " (empty: default)" if optional else " (comma-separated)"
            out.append(FieldWidget(f.name, "text", label + suffix, help_text, _as_text(default), (), main))
        elif base is int:
            out.append(FieldWidget(f.name, "int", label, help_text, int(default), (), main))
        elif base is float:
            out.append(FieldWidget(f.name, "float", label, help_text, float(default), (), main))
        else:  # a plain str field without a closed vocabulary
            out.append(FieldWidget(f.name, "text", label, help_text, _as_text(default), (), main))
    return out


def _parse_text(f: dataclasses.Field, text: str):
    base, optional = _split_optional(_annotation(f))
    text = (text or "").strip()
    if text == "":
        if optional:
            return None
        if typing.get_origin(base) is tuple:
            return ()
        raise ConfigError(f"{f.name} must not be empty")
    if typing.get_origin(base) is tuple:
        item = typing.get_args(base)[0]
        try:
            return tuple(item(t.strip()) for t in text.split(","))
        except ValueError:
            raise ConfigError(f"{f.name} must be comma-separated {item.__name__} values, got {text!r}") from None
    if base in (int, float):
        try:
            return base(text)
        except ValueError:
            raise ConfigError(f"{f.name} must be a {'whole ' if base is int else ''}number, got {text!r}") from None
    return text


def config_from_values(values: dict[str, Any]) -> TrainConfig:
    """A validated TrainConfig from widget values keyed by field name (missing keys keep the
    dataclass default). Raises ConfigError with one line for anything invalid."""
    kwargs = {}
    for f in dataclasses.fields(TrainConfig):
        if f.name not in values:
            continue
        value = values[f.name]
        base, optional = _split_optional(_annotation(f))
        if isinstance(value, str) and (optional or typing.get_origin(base) is tuple or base in (int, float)):
            value = _parse_text(f, value)
        elif base is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        kwargs[f.name] = value
    try:
        return TrainConfig(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad training settings: {exc}") from None


def default_run_name(config: TrainConfig, stamp: str) -> str:
    """A run name that passes `safe_run_name`: <dataset>-<method>-<stamp>."""
    return f"{config.dataset}-{config.method}-{stamp}"
