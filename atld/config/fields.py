"""One description per config field, from which the CLI flag and the app widget are both made.

A config is a frozen dataclass whose fields are declared with `setting(default, help, ...)`: the
help text states the unit; `choices` names a closed vocabulary (an enum's values come from the
annotation); `main` puts the widget at the top of the app's form; `app_default` is the app's
initial value where the dataclass default suits a long CLI run better; `flag` renames the CLI
flag and `aliases` adds older names it still accepts. Adding a field to a config is then one
edit: `add_flags` (CLI) and `widgets` (app) pick it up, and `from_flags` / `from_widget_values`
build the validated config back. Values are checked by the dataclass itself (`__post_init__`),
so every path reports the same one-line error.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass
from enum import Enum
from typing import Any

from atld.errors import ConfigError

_NO_APP_DEFAULT = object()


def setting(default, help: str, *, choices: tuple[str, ...] | None = None, main: bool = False,
            app_default=_NO_APP_DEFAULT, flag: str | None = None, aliases: tuple[str, ...] = ()):
    """A dataclass field with what the CLI and the app need to offer it (see the module docstring)."""
    metadata = {"help": help, "choices": choices, "main": main, "app_default": app_default, "flag": flag,
                "aliases": aliases}
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class FieldSpec:
    """What one config field looks like from outside: its flag, widget kind, parser and default."""
    name: str
    flag: str  # "--batch-size"
    help: str
    default: Any
    base: Any  # the annotation without "| None" (int, float, str, bool, an Enum, tuple[...])
    optional: bool  # None is allowed (it means "the dataset's default" or "all")
    choices: tuple[str, ...]  # a closed vocabulary, or () for free values
    main: bool
    app_default: Any
    aliases: tuple[str, ...] = ()  # older flags accepted for the same field, e.g. ("--method",)

    @property
    def options(self) -> tuple[str, ...]:
        """A select widget's options: the choices, after "" (the default) for an optional field."""
        return ("", *self.choices) if self.optional else self.choices

    @property
    def is_tuple(self) -> bool:
        return typing.get_origin(self.base) is tuple

    @property
    def item(self) -> Any:
        """The type of one value (a tuple field's item type)."""
        return typing.get_args(self.base)[0] if self.is_tuple else self.base

    @property
    def kind(self) -> str:
        """The app widget: "select" | "bool" | "int" | "float" | "text" (text: optional or list values)."""
        if self.choices and not self.is_tuple:
            return "select"
        if self.base is bool:
            return "bool"
        if self.optional or self.is_tuple or self.base not in (int, float):
            return "text"
        return "int" if self.base is int else "float"

    def parse_text(self, text: str):
        """A value from text (a flag, a text box): "" is None for optional fields and () for lists;
        lists are comma-separated. Raises ConfigError with one line."""
        text = (text or "").strip()
        if text == "":
            if self.optional:
                return None
            if self.is_tuple:
                return ()
            raise ConfigError(f"{self.name} must not be empty")
        if self.is_tuple:
            try:
                return tuple(_scalar(self.item, t.strip()) for t in text.split(","))
            except ValueError:
                raise ConfigError(f"{self.name} must be comma-separated {_type_name(self.item)} values, "
                                  f"got {text[:60]!r}") from None
        try:
            return _scalar(self.item, text)
        except ValueError:
            what = "whole number" if self.item is int else "number" if self.item is float else "value"
            raise ConfigError(f"{self.name} must be a {what}, got {text[:60]!r}") from None

    def as_text(self, value) -> str:
        if value is None:
            return ""
        if isinstance(value, tuple):
            return ", ".join(str(v) for v in value)
        return str(value)


def _type_name(kind) -> str:
    return kind.__name__ if isinstance(kind, type) and not issubclass(kind, Enum) else "text"


def _scalar(kind, text: str):
    if kind is int:
        return int(text, 10)
    if kind is float:
        return float(text)
    return text  # strings and enum values: the dataclass checks them against their vocabulary


def _split_optional(annotation) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0], len(args) < len(typing.get_args(annotation))
    return annotation, False


def field_specs(cls) -> list[FieldSpec]:
    """One FieldSpec per field of the config dataclass `cls`, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        base, optional = _split_optional(hints[f.name])
        item = typing.get_args(base)[0] if typing.get_origin(base) is tuple else base
        choices = f.metadata.get("choices")
        if choices is None and isinstance(item, type) and issubclass(item, Enum):
            choices = tuple(m.value for m in item)
        out.append(FieldSpec(name=f.name, flag="--" + (f.metadata.get("flag") or f.name).replace("_", "-"),
                             help=f.metadata.get("help", ""), default=f.default, base=base, optional=optional,
                             choices=tuple(choices or ()), main=bool(f.metadata.get("main")),
                             app_default=f.metadata.get("app_default", _NO_APP_DEFAULT),
                             aliases=tuple("--" + a.replace("_", "-") for a in f.metadata.get("aliases", ()))))
    return out


# ----------------------------------------------------------------------------- the CLI

def add_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One `--field-name` flag per field of `cls` (not in `skip`), with its help and default."""
    group = parser.add_argument_group(f"{cls.__name__} fields")
    for spec in field_specs(cls):
        if spec.name in skip:
            continue
        # "%(default).0s" renders as nothing; it only stops ArgumentDefaultsHelpFormatter from
        # appending "(default: None)" beside the dataclass default shown here.
        text = spec.help.replace("%", "%%") + "%(default).0s"
        if spec.choices:
            text += f" (one of: {', '.join(spec.choices)}{', comma-separated' if spec.is_tuple else ''})"
        if spec.aliases:
            text += f" (also: {', '.join(spec.aliases)})"
        if spec.kind == "bool":
            group.add_argument(spec.flag, *spec.aliases, dest=spec.name, action=argparse.BooleanOptionalAction,
                               default=None, help=f"{text} (default: {spec.default})")
            continue
        if spec.default is not None:  # a None default is explained by the help text itself
            text += f" (default: {spec.as_text(spec.default).replace(', ', ',')})"
        group.add_argument(spec.flag, *spec.aliases, dest=spec.name, type=_flag_parser(spec), default=None,
                           metavar=spec.name.upper(), help=text)


def _flag_parser(spec: FieldSpec):
    """argparse's `type`: plain int/float keep argparse's own "invalid int value" message."""
    if not spec.is_tuple and spec.item in (int, float):
        return spec.item

    def parse(text: str):
        try:
            return spec.parse_text(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc).replace(f"{spec.name} must be", "expected")) from None
    parse.__name__ = spec.name
    return parse


def from_flags(cls, args: argparse.Namespace, base=None, **fixed):
    """Build `cls` from the flags the user gave (the others keep `base`'s or the dataclass default)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    given.update(fixed)
    return dataclasses.replace(base, **given) if base is not None else build(cls, given)


def build(cls, kwargs: dict):
    """`cls(**kwargs)` with a wrong keyword reported as one ConfigError line."""
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad {cls.__name__} settings: {exc}") from None


# ----------------------------------------------------------------------------- the app

# Plain names for fields whose name alone does not say it; every other field's label is its name
# in words ("batch_size" -> "Batch size"). The field's help (its unit and meaning) is the tooltip.
APP_LABELS = {"lr": "Learning rate", "lr_milestones": "Learning-rate milestones", "lr_gamma": "Learning-rate decay",
              "epsilon": "ε (perturbation radius)", "arch": "Classifier architecture", "d_lr": "D learning rate",
              "d_momentum": "D momentum", "d_weight_decay": "D weight decay", "d_updates": "D updates per batch",
              "d_widths": "D widths", "d_blocks": "D blocks per width", "s_max": "Cap on s",
              "amp": "Mixed precision", "eval_limit": "Test images per epoch check",
              "pgd_step_size": "PGD step size", "pgd_steps": "PGD steps", "compile": "torch.compile"}


def app_label(name: str) -> str:
    """The app's label of field `name`: APP_LABELS, or the name in words."""
    return APP_LABELS.get(name) or name.replace("_", " ").capitalize()


@dataclass(frozen=True)
class Widget:
    """One widget of the app's form: the field, its label, its help (tooltip) and its initial value."""
    spec: FieldSpec
    label: str
    initial: Any  # text widgets: a string ("" = the default); others: the value
    help: str = ""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind


def widgets(cls, overrides: dict[str, Any] | None = None) -> list[Widget]:
    """One widget per field of `cls`, in declaration order; `overrides` replace initial values."""
    out = []
    for spec in field_specs(cls):
        initial = spec.default if spec.app_default is _NO_APP_DEFAULT else spec.app_default
        initial = (overrides or {}).get(spec.name, initial)
        label = app_label(spec.name)
        help_text = spec.help[:1].upper() + spec.help[1:] if spec.help else ""
        if spec.kind == "text":
            help_text += " (empty: the default)" if spec.optional else " (comma-separated)" if spec.is_tuple else ""
            initial = spec.as_text(initial)
        elif spec.kind == "int":
            initial = int(initial)
        elif spec.kind == "float":
            initial = float(initial)
        elif spec.kind == "select":
            initial = spec.as_text(initial)  # None (the default) is ""
            help_text += " (empty: the default)" if spec.optional else ""
        out.append(Widget(spec, label, initial, help_text))
    return out


def from_widget_values(cls, values: dict[str, Any]):
    """A validated `cls` from widget values keyed by field name (missing keys keep the dataclass
    default). Raises ConfigError with one line for anything invalid."""
    kwargs = {}
    for spec in field_specs(cls):
        if spec.name not in values:
            continue
        value = values[spec.name]
        if isinstance(value, str) and (spec.optional or spec.is_tuple or spec.item in (int, float)):
            value = spec.parse_text(value)
        elif spec.item is int and not spec.is_tuple and isinstance(value, float) and value.is_integer():
            value = int(value)
        kwargs[spec.name] = value
    return build(cls, kwargs)
