"""Flags generated from a frozen config dataclass, so the CLI and the dataclass never disagree:
one `--field-name` per field, its help text (with unit) from the field's metadata, its default
from the dataclass (None = "the dataset's default")."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing


def _parse_tuple(item_type):
    def parse(text: str):
        text = text.strip()
        if text == "":
            return ()
        try:
            return tuple(item_type(t) for t in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {item_type.__name__} values, got {text!r}")
    return parse


def _flag_type(annotation):
    """Map a field annotation to (argparse type, is_bool)."""
    if isinstance(annotation, str):
        annotation = eval(annotation, {"tuple": tuple, "int": int, "float": float, "str": str, "bool": bool,
                                       "None": None})
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _flag_type(args[0])
    if annotation is bool:
        return None, True
    if origin is tuple:
        return _parse_tuple(typing.get_args(annotation)[0]), False
    return annotation, False


def add_dataclass_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    group = parser.add_argument_group(f"{cls.__name__} fields")
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        kind, is_bool = _flag_type(f.type)
        # "%(default).0s" renders as nothing; it only stops ArgumentDefaultsHelpFormatter from
        # appending "(default: None)" beside the dataclass default shown here.
        help_text = f.metadata.get("help", "").replace("%", "%%") + "%(default).0s"
        if is_bool:
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                               help=f"{help_text} (default: {f.default})")
        else:
            shown = "dataset default" if f.default is None else (
                ",".join(map(str, f.default)) if isinstance(f.default, tuple) else f.default)
            group.add_argument(flag, dest=f.name, type=kind, default=None, metavar=f.name.upper(),
                               help=f"{help_text} (default: {shown})")


def dataclass_from_flags(cls, args: argparse.Namespace, base=None, **fixed):
    """Build `cls` from the flags the user gave (others keep `base`'s or the dataclass default)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls)
             if getattr(args, f.name, None) is not None}
    given.update(fixed)
    if base is not None:
        return dataclasses.replace(base, **given)
    return cls(**given)
