"""Dataclass configs loadable from YAML, with `key=value` overrides and strict key checking."""

from __future__ import annotations

import dataclasses
import types
import typing
import warnings
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError

T = TypeVar("T")


def renamed_keys(
    cls: type,
    data: dict[str, Any],
    source: str = "config",
    key_sources: dict[str, str] | None = None,
    stacklevel: int = 1,
) -> dict[str, Any]:
    """`data` with each deprecated key of `cls` under its new name, with a FutureWarning naming the new one.

    A class lists its renamed keys, old name → new name, in a ``RENAMED`` class attribute (its metaclass,
    :class:`RenamedKeywords`, takes them as keyword arguments too). Both names in one mapping with different
    values is a ConfigError. `key_sources` (updated in place) names where particular keys came from;
    `stacklevel` is the frame the warning names, counted up from the caller of this function (1).
    """
    renamed: dict[str, str] = getattr(cls, "RENAMED", None) or {}
    if not set(renamed) & set(data):
        return data
    out = dict(data)
    key_sources = {} if key_sources is None else key_sources
    for old, new in renamed.items():
        if old not in out:
            continue
        value = out.pop(old)
        where = key_sources.pop(old, source)
        if new in out and out[new] != value:
            raise ConfigError(f"{where}: {old} is the deprecated name of {new}; give only {new}")
        warnings.warn(
            f"{where}: {old} is deprecated; use {new} (the same setting, renamed)",
            FutureWarning,
            stacklevel=stacklevel + 1,
        )
        out[new] = value
        key_sources.setdefault(new, where)
    return out


class RenamedKeywords(type):
    """Metaclass of a config dataclass with renamed keys (its ``RENAMED``, old name → new name): the old
    name still works as a keyword argument and as an attribute, each time with a FutureWarning naming the new
    one."""

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any):
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        for old, new in namespace.get("RENAMED", {}).items():
            setattr(cls, old, _renamed_attribute(old, new))
        return cls

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return super().__call__(*args, **renamed_keys(cls, kwargs, cls.__name__, stacklevel=2))


def _renamed_attribute(old: str, new: str) -> property:
    def warn() -> None:
        message = f"{old} is deprecated; use {new} (the same setting, renamed)"
        warnings.warn(message, FutureWarning, stacklevel=3)

    def get(self: Any) -> Any:
        warn()
        return getattr(self, new)

    def set_(self: Any, value: Any) -> None:
        warn()
        setattr(self, new, value)

    return property(get, set_, doc=f"Deprecated: {new}.")


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Turn a YAML/CLI value into the field's declared type, or say clearly why it can't be."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: cannot be {value!r}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return value
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "yes", "1", "on"}:
            return True
        if isinstance(value, str) and value.lower() in {"false", "no", "0", "off"}:
            return False
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if annotation is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if annotation is str:
        if not isinstance(value, str | int | float):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return Path(value)
    return value


def from_dict(
    cls: type[T], data: dict[str, Any], source: str = "config", key_sources: dict[str, str] | None = None
) -> T:
    """Build `cls` from a mapping; unknown keys and ill-typed values raise ConfigError naming their source.

    `key_sources` names where particular keys came from (e.g. `-o seed=x`); the others come from `source`.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of config keys, got {type(data).__name__}")
    key_sources = dict(key_sources or {})
    data = renamed_keys(cls, data, source, key_sources, stacklevel=2)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        where = key_sources.get(unknown[0], source)
        raise ConfigError(
            f"{where}: unknown config key(s) {', '.join(unknown)}; known keys: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for key, value in data.items():
        try:
            kwargs[key] = _coerce(value, hints[key], key)
        except ConfigError as exc:
            raise ConfigError(f"{key_sources.get(key, source)}: {exc}") from None
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: {exc}") from None


def parse_overrides(overrides: list[str] | None) -> dict[str, Any]:
    """`["a=1", "b=x,y"]` → `{"a": 1, "b": "x,y"}` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        out[key.strip().replace("-", "_")] = yaml.safe_load(raw) if raw != "" else ""
    return out


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> T:
    """Defaults ← `base` (e.g. a preset) ← YAML file ← overrides. A renamed key (the class's ``RENAMED``) is
    read under its new name, with a FutureWarning, in whichever of them it appears."""
    data: dict[str, Any] = renamed_keys(cls, dict(base or {}), stacklevel=2)
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
        data.update(renamed_keys(cls, loaded, source, stacklevel=2))
    if not isinstance(overrides, dict):
        overrides = parse_overrides(overrides)
    key_sources = {key: f"-o {key}={value}" for key, value in overrides.items()}
    data.update(renamed_keys(cls, overrides, source, key_sources, stacklevel=2))
    return from_dict(cls, data, source, key_sources)


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON/YAML-safe dict of a config dataclass."""

    def plain(v):
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(config).items()}
