"""Architecture specs beyond the zoo: models defined by torchvision, timm or the user's own code.

A spec is ``PREFIX:NAME``:

``torchvision:NAME``
    every classification factory of :mod:`torchvision.models`
    (``torchvision.models.list_models(module=torchvision.models)``), built with
    ``weights=None, num_classes=N`` (nothing is downloaded).
``timm:NAME``
    ``timm.create_model(NAME, pretrained=False, num_classes=N)``; needs the optional extra
    ``pip install 'mapguard[timm]'``.
``module:pkg.mod:factory``
    the user's own code: ``pkg.mod`` is imported (it must be importable, e.g. on ``PYTHONPATH``)
    and ``factory(num_classes=N)`` is called. **Building such a model runs that code**, which is
    why :func:`mapguard.checkpoint.load_checkpoint` refuses a ``module:`` checkpoint unless the
    caller opts in.

Each returns the *body* of the model; :func:`mapguard.models.create_model` puts the input
normalisation in front.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable

from torch import nn

from mapguard._errors import ConfigError

__all__ = ["CODE_PREFIX", "MAX_SPEC_CHARS", "PREFIXES", "build_spec", "is_spec", "spec_names"]

CODE_PREFIX = "module"
PREFIXES = ("torchvision", "timm", CODE_PREFIX)
#: A checkpoint header keeps ``arch`` to 200 characters (:mod:`mapguard.checkpoint`).
MAX_SPEC_CHARS = 200
_TIMM_HINT = "pip install 'mapguard[timm]'"
_IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE_SPEC = re.compile(rf"{_IDENTIFIER}(\.{_IDENTIFIER})*:{_IDENTIFIER}")


def is_spec(name: str) -> bool:
    """Whether ``name`` is a ``PREFIX:...`` spec rather than a zoo name."""
    return ":" in name


def build_spec(spec: str, *, num_classes: int) -> nn.Module:
    """The body of the model ``spec`` with ``num_classes`` outputs.

    Raises:
        ConfigError: unknown prefix or name (with a close match), timm not installed, or a
            ``module:`` factory that cannot be imported or does not return a module.
    """
    if len(spec) > MAX_SPEC_CHARS:
        raise ConfigError(f"architecture spec is {len(spec)} characters (limit {MAX_SPEC_CHARS})")
    prefix, _, name = spec.partition(":")
    builders: dict[str, Callable[[str, int], nn.Module]] = {
        "torchvision": _torchvision,
        "timm": _timm,
        CODE_PREFIX: _user_factory,
    }
    if prefix not in builders:
        raise ConfigError(
            f"unknown architecture prefix '{prefix}:' in '{spec}'; choose one of: "
            f"{', '.join(p + ':' for p in PREFIXES)}{_close_match(spec, spec_names())}"
        )
    return builders[prefix](name, num_classes)


def spec_names(*, include_timm: bool = True) -> list[str]:
    """Every ``torchvision:`` spec, and every ``timm:`` spec when timm is installed, sorted."""
    names = [f"torchvision:{n}" for n in _torchvision_names()]
    if include_timm and _timm_module() is not None:
        names += [f"timm:{n}" for n in _timm_module().list_models()]
    return sorted(names)


def _close_match(name: str, choices: list[str]) -> str:
    match = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _unknown_name(prefix: str, name: str, names: list[str]) -> ConfigError:
    specs = [f"{prefix}:{n}" for n in names]
    return ConfigError(
        f"unknown architecture '{prefix}:{name}'{_close_match(f'{prefix}:{name}', specs)}; "
        f"{len(names)} {prefix}: models are known (mapguard.models.list_model_specs()), "
        f"prefixes: {', '.join(p + ':' for p in PREFIXES)}"
    )


def _torchvision_names() -> list[str]:
    import torchvision  # on demand: importing it takes seconds

    return sorted(torchvision.models.list_models(module=torchvision.models))


def _torchvision(name: str, num_classes: int) -> nn.Module:
    import torchvision

    names = _torchvision_names()
    if name not in names:
        raise _unknown_name("torchvision", name, names)
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes)


def _timm_module():  # noqa: ANN202 - the module or None
    try:
        import timm
    except ImportError:
        return None
    return timm


def _timm(name: str, num_classes: int) -> nn.Module:
    timm = _timm_module()
    if timm is None:
        raise ConfigError(f"architecture 'timm:{name}' needs timm: {_TIMM_HINT}")
    names = sorted(timm.list_models())
    if name not in names:
        raise _unknown_name("timm", name, names)
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def _user_factory(target: str, num_classes: int) -> nn.Module:
    """Import ``pkg.mod`` and call ``factory(num_classes=num_classes)``: runs the user's code."""
    if not _MODULE_SPEC.fullmatch(target):
        raise ConfigError(
            f"architecture '{CODE_PREFIX}:{target}' must be '{CODE_PREFIX}:pkg.mod:factory' "
            "(a dotted module path and a function name)"
        )
    module_name, _, attr = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"architecture '{CODE_PREFIX}:{target}': cannot import it ({_first_line(exc)}); "
            "the module must be importable, e.g. on PYTHONPATH"
        ) from None
    if not callable(factory):
        raise ConfigError(f"architecture '{CODE_PREFIX}:{target}' is not callable")
    try:
        body = factory(num_classes=num_classes)
    except Exception as exc:  # noqa: BLE001 - the user's code failed: their input, one line
        raise ConfigError(
            f"architecture '{CODE_PREFIX}:{target}' failed to build: {type(exc).__name__}: "
            f"{_first_line(exc)}"
        ) from None
    if not isinstance(body, nn.Module):
        raise ConfigError(
            f"architecture '{CODE_PREFIX}:{target}' returned {type(body).__name__}, "
            "not a torch.nn.Module"
        )
    return body


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]
