"""What every option dataclass shares: value checks and the dict round trip, in one place.

A config is a frozen, keyword-only dataclass that derives from :class:`ConfigMixin` (naming its
kind of options for error messages) and checks its values in ``__post_init__`` with the
``check_*`` functions below, so that every bad value gets one :class:`ConfigError` naming it.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True, kw_only=True)
    ... class Demo(ConfigMixin, what="demo"):
    ...     steps: int = 1
    ...     names: tuple[str, ...] = ()
    ...     def __post_init__(self) -> None:
    ...         check_int("steps", self.steps, low=1)
    >>> Demo().replace(steps=3, names="a")
    Demo(steps=3, names=('a',))
    >>> Demo().to_dict()
    {'steps': 1, 'names': []}
    >>> Demo.from_dict({"stepz": 3})
    Traceback (most recent call last):
    ...
    mapguard._errors.ConfigError: unknown demo option(s): stepz
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

from mapguard._errors import ConfigError

__all__ = ["ConfigMixin", "check_int", "check_number", "check_range"]

_C = TypeVar("_C", bound="ConfigMixin")


def check_int(
    name: str, value: object, *, low: int, high: int | None = None, why: str = ""
) -> None:
    """``value`` must be an ``int`` (not a bool) in ``[low, high]``; ``why`` explains ``high``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    if high is not None and value > high:
        reason = f" ({why})" if why else ""
        raise ConfigError(f"{name} must be at most {high:,}{reason}, got {value!r}")


def check_number(name: str, value: object, *, positive: bool) -> None:
    """``value`` must be a finite real number, ``> 0`` (``positive``) or ``>= 0``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):  # type: ignore[operator]
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")


def check_range(
    name: str, value: object, *, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False
) -> None:
    """``value`` must be a finite real number in the interval from ``lo`` to ``hi``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    ok = ok and math.isfinite(float(value))  # type: ignore[arg-type]
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        raise ConfigError(f"{name} must be a number in {left}{lo:g}, {hi:g}{right}, got {value!r}")


class ConfigMixin:
    """``to_dict`` / ``from_dict`` / ``replace`` / ``with_options`` for an options dataclass.

    Tuple fields are written as lists and read back from any sequence (a lone string becomes a
    one-element tuple); a field whose default is itself a config is written nested and read back
    from a dict. Subclass as ``class MaskConfig(ConfigMixin, what="mask")``.
    """

    _what: ClassVar[str] = "config"

    def __init_subclass__(cls, *, what: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if what is not None:
            cls._what = what

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every option (tuples become lists, nested options dicts)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def check_names(cls, names: Iterable[str]) -> None:
        """Raise a :class:`ConfigError` naming every entry of ``names`` that is not an option."""
        unknown = sorted(set(names) - {f.name for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
        if unknown:
            raise ConfigError(f"unknown {cls._what} option(s): {', '.join(unknown)}")

    @classmethod
    def from_dict(cls: type[_C], data: Mapping[str, Any]) -> _C:
        """Inverse of :meth:`to_dict`; unknown keys are an error naming them."""
        cls.check_names(data)
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: _coerce(fields[k], v) for k, v in data.items()})

    def replace(self: _C, **changes: Any) -> _C:
        """A copy with ``changes`` applied (validated)."""
        return self.from_dict({**self.to_dict(), **changes})

    def with_options(self: _C, options: Mapping[str, Any]) -> _C:
        """A copy with ``options`` applied: field names, or ``FIELD.NAME`` for an option of a nested
        config (e.g. ``{"target_weight": 2, "mask.weight_noise": 0.1}``); unknown names are an
        error."""
        data = self.to_dict()
        fields = {f.name: f for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        for key, value in options.items():
            head, dot, name = key.partition(".")
            nested = _nested_type(fields[head]) if dot and head in fields else None
            if not dot:
                data[key] = value
            elif nested is None:
                raise ConfigError(f"unknown {self._what} option '{key}'")
            else:
                sub = data[head] = dict(_jsonable(data[head]))
                if name not in sub:
                    known = ", ".join(sub)
                    raise ConfigError(f"unknown {nested._what} option '{name}'; known: {known}")
                sub[name] = value
        return self.from_dict(data)


def _jsonable(value: Any) -> Any:
    if isinstance(value, ConfigMixin):
        return value.to_dict()
    if isinstance(value, tuple):
        return list(value)
    return value


def _nested_type(f: dataclasses.Field) -> type[ConfigMixin] | None:
    if isinstance(f.default, ConfigMixin):
        return type(f.default)
    factory = f.default_factory
    if isinstance(factory, type) and issubclass(factory, ConfigMixin):
        return factory
    return None


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    nested = _nested_type(f)
    if nested is not None and isinstance(value, Mapping):
        return nested.from_dict(value)
    if isinstance(f.default, tuple) and isinstance(value, str):
        return (value,)
    if isinstance(f.default, tuple) and isinstance(value, Iterable):
        return tuple(value)
    return value
