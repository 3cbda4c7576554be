"""One definition per setting: a dataclass field with its default, range or choices and a sentence of docs.

`setting(...)` declares a field; `check(obj, prefix)` enforces its declaration (each dataclass calls it in
`__post_init__`);
`json_schema(cls)` turns the same declarations into the JSON schema that Snakemake validates the config against
(`python -m act24.schema` writes those sections of workflow/schemas/config.schema.yaml, and a test checks that the
committed file matches). No torch here: the workflow parses without it.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


class ConfigError(ValueError):
    """A setting is missing, unknown, of the wrong type or out of range; the message names the key."""


def setting(default: Any = dataclasses.MISSING, doc: str = "", *, choices: tuple | None = None,
            derived: str = "", items: dict | None = None, flatten: bool = False, neutral: bool = False,
            **bounds: float) -> Any:
    """A dataclass field with its declaration. bounds: JSON-schema keywords (minimum, exclusiveMaximum, ...);
    choices: the allowed values; items: bounds of each element of a list or pair; derived: the field is not a
    config key of its section but comes from elsewhere (the key it comes from); flatten: a dataclass field whose
    own fields are keys of this section; neutral: the field does not change results (thread counts), so neither
    a resume checkpoint nor the workflow's rerun triggers compare it."""
    unknown = set(bounds) - set(BOUNDS)
    if unknown:
        raise TypeError(f"setting(): unknown bound {sorted(unknown)}")
    meta = {"doc": doc, "choices": choices, "derived": derived, "items": items or {}, "bounds": bounds,
            "flatten": flatten, "neutral": neutral}
    if isinstance(default, (list, dict)):  # mutable: each instance gets its own copy
        return dataclasses.field(default_factory=default.copy, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def declaration(f: dataclasses.Field) -> dict:
    return f.metadata or {"doc": "", "choices": None, "derived": "", "items": {}, "bounds": {}, "flatten": False,
                          "neutral": False}


def config_fields(cls, derived: bool = False) -> list[dataclasses.Field]:
    """The fields of `cls` a config section sets: not the derived ones, unless `derived`."""
    return [f for f in dataclasses.fields(cls) if derived or not declaration(f)["derived"]]


def _bound_error(value: float, bounds: dict) -> str:
    tests = {"minimum": (lambda b: value >= b, "≥"), "maximum": (lambda b: value <= b, "≤"),
             "exclusiveMinimum": (lambda b: value > b, ">"), "exclusiveMaximum": (lambda b: value < b, "<"),
             "multipleOf": (lambda b: value % b == 0, "a multiple of")}
    failed = [f"{tests[k][1]} {b}" for k, b in bounds.items() if not tests[k][0](b)]
    return f"must be {' and '.join(failed)}" if failed else ""


def _type_ok(value: Any, typ: Any) -> bool:
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if typ is type(None):
        return value is None
    if origin is tuple:
        if not isinstance(value, (tuple, list)):
            return False
        kinds = args[:1] * len(value) if args[-1:] == (Ellipsis,) else args
        return len(kinds) == len(value) and all(_type_ok(v, k) for v, k in zip(value, kinds))
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) and _type_ok(v, args[1]) for k, v in value.items())
    if typ is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, typ)


def _elements(value: Any) -> list:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _elements(v)]
    return list(value) if isinstance(value, (tuple, list)) else [value]


def check(obj: Any, prefix: str) -> None:
    """Enforce the declarations of `obj`'s fields (type, choices, bounds); ConfigError names the first bad key."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, decl, key = getattr(obj, f.name), declaration(f), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            continue  # checked when built
        if not _type_ok(value, hints[f.name]):
            raise ConfigError(f"config key '{key}': expected {_type_name(hints[f.name])}, got {value!r}")
        if decl["choices"] is not None and value not in decl["choices"]:
            raise ConfigError(f"config key '{key}': expected one of {decl['choices']}, got {value!r}")
        if value is not None and decl["bounds"] and (err := _bound_error(value, decl["bounds"])):
            raise ConfigError(f"config key '{key}': {err}, got {value!r}")
        for element in _elements(value) if decl["items"] else ():
            if err := _bound_error(element, decl["items"]):
                raise ConfigError(f"config key '{key}': every element {err}, got {value!r}")


def _type_name(typ: Any) -> str:
    return getattr(typ, "__name__", None) or str(typ).replace("typing.", "")


def build(cls, values: Any, prefix: str = "", derived: bool = True):
    """`cls` from a config mapping: unknown keys, wrong types and values out of range are ConfigErrors naming the key.
    Lists become tuples. derived: also take the derived fields (as `to_dict` writes them; a flattened dataclass's
    derived fields never are keys)."""
    if not isinstance(values, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.') or '<root>'}': expected a mapping, got "
                          f"{type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = config_fields(cls, derived)
    flat = {f.name: [g.name for g in config_fields(hints[f.name])] for f in fields if declaration(f)["flatten"]}
    names = [f.name for f in fields if f.name not in flat] + [k for keys in flat.values() for k in keys]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}' (expected one of: {', '.join(sorted(names))})")
    kwargs = {k: build(hints[k], v, f"{prefix}{k}.") if dataclasses.is_dataclass(hints[k]) else _freeze(v, hints[k])
              for k, v in values.items() if k in hints and k not in flat}
    for name, keys in flat.items():
        kwargs[name] = build(hints[name], {k: values[k] for k in keys if k in values}, prefix)
    return cls(**kwargs)  # the dataclass checks itself (`check` in its __post_init__)


def _freeze(v: Any, typ: Any) -> Any:
    """`v` as the field type `typ` holds it: lists as tuples, integers as floats where floats are declared."""
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        return v if v is None else _freeze(v, next(a for a in args if a is not type(None)))
    if origin is tuple and isinstance(v, (list, tuple)):
        kinds = args[:1] * len(v) if args[-1:] == (Ellipsis,) else args
        return tuple(_freeze(x, k) for x, k in zip(v, kinds)) if len(kinds) == len(v) else tuple(v)
    if origin is dict and isinstance(v, dict):
        return {k: _freeze(x, args[1]) for k, x in v.items()}
    if typ is float and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


def to_dict(obj: Any, derived: bool = True, neutral: bool = True) -> dict:
    """The mapping `build` takes for `obj`: tuples as lists, flattened dataclasses merged in (without their derived
    fields), derived fields included unless `derived` is False, neutral ones unless `neutral` is False."""
    out: dict[str, Any] = {}
    for f in config_fields(type(obj), derived):
        value = getattr(obj, f.name)
        if declaration(f)["neutral"] and not neutral:
            continue
        if declaration(f)["flatten"]:
            out.update(to_dict(value, derived=False, neutral=neutral))
        else:
            out[f.name] = to_dict(value, derived, neutral) if dataclasses.is_dataclass(value) else _plain(value)
    return out


def _type_schema(typ: Any, items: dict) -> dict:
    origin, args = typing.get_origin(typ), typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        inner = [_type_schema(a, items) for a in args if a is not type(None)]
        return {**inner[0], "type": [inner[0]["type"], "null"]}
    if origin is tuple:
        element = _type_schema(args[0], {})
        out = {"type": "array", "items": {**element, **items}}
        if args[-1:] != (Ellipsis,):
            out.update(minItems=len(args), maxItems=len(args))
        return out
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1], items)}
    return {"type": {int: "integer", float: "number", bool: "boolean", str: "string"}[typ]}


def json_schema(cls, *, defaults: bool = True) -> dict:
    """The JSON schema of a config section described by `cls`: every config field with its type, bounds, choices,
    description and (if `defaults`) default; a nested dataclass field contributes its own fields (flattened)."""
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    for f in config_fields(cls):
        if declaration(f)["flatten"]:
            properties.update(json_schema(hints[f.name], defaults=defaults)["properties"])
            continue
        decl = declaration(f)
        prop = {"enum": list(decl["choices"])} if decl["choices"] else _type_schema(hints[f.name], decl["items"])
        prop.update(decl["bounds"])
        if decl["doc"]:
            prop["description"] = decl["doc"]
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if defaults and has_default:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            prop["default"] = _plain(default)
        properties[f.name] = prop
    required = [f.name for f in config_fields(cls) if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING and not dataclasses.is_dataclass(hints[f.name])]
    out = {"type": "object", "additionalProperties": False, "properties": properties}
    if required and defaults:
        out["required"] = required
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v
