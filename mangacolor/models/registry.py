"""Model registry: every architecture is a class registered under a unique name with its config.

The registry is a plain dict filled by :func:`register_model`; the CLI's choices and the checkpoint
loader both come from it, so a checkpoint's ``arch`` + JSON config rebuild the model with no flags.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

TASKS = ("colorize", "scan", "discriminator")


@dataclass(frozen=True)
class ModelSpec:
    """A registered architecture.

    Attributes:
        name: registry name, stored as ``arch`` in checkpoints.
        cls: the ``nn.Module`` class; its ``__init__`` takes one config instance.
        config_cls: frozen dataclass holding every hyperparameter.
        task: ``colorize``, ``scan`` or ``discriminator``.
        description: one line for ``mangacolor models``.
        toy: config overrides for a tiny instance (tests build every model at this width).
        toy_size: input side the toy instance is tested at.
    """

    name: str
    cls: type[nn.Module]
    config_cls: type
    task: str
    description: str
    toy: dict[str, Any]
    toy_size: int


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str, config_cls: type, task: str, toy: dict[str, Any] | None = None, toy_size: int = 64
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator that registers an architecture under ``name``.

    Args:
        name: unique registry name (stored as ``arch`` in checkpoints).
        config_cls: the frozen config dataclass the class is built from.
        task: ``colorize``, ``scan`` or ``discriminator``.
        toy: config overrides giving a tiny instance, used by the tests of every registered model.
        toy_size: square input side for the toy instance.

    Raises:
        ValueError: ``name`` is taken, ``task`` is unknown or ``config_cls`` is not a dataclass.
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}. Got {task!r}")
    if not dataclasses.is_dataclass(config_cls):
        raise ValueError(f"config_cls must be a dataclass. Got {config_cls!r}")

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is already registered by {_REGISTRY[name].cls.__name__}")
        doc = (cls.__doc__ or "").strip().splitlines()
        _REGISTRY[name] = ModelSpec(name, cls, config_cls, task, doc[0] if doc else "", dict(toy or {}), toy_size)
        cls.arch_name = name
        return cls

    return decorator


def get_spec(name: str) -> ModelSpec:
    """Look up a registered architecture.

    Raises:
        KeyError: with the list of known names.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def list_models(task: str | None = None) -> list[ModelSpec]:
    """Registered architectures, optionally only those of one task, sorted by name."""
    return [s for _, s in sorted(_REGISTRY.items()) if task is None or s.task == task]


def build_config(name: str, config: Any = None, **overrides: Any) -> Any:
    """Make the config dataclass of ``name`` from an instance, a dict (e.g. from JSON) or defaults.

    Raises:
        ValueError: a key is not a field of the config.
    """
    spec = get_spec(name)
    if isinstance(config, spec.config_cls):
        values = dataclasses.asdict(config)
    else:
        values = dict(config or {})
    values.update(overrides)
    fields = {f.name: f for f in dataclasses.fields(spec.config_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{name}: unknown config field(s) {unknown}; fields are {sorted(fields)}")
    for key, value in values.items():  # JSON turns tuples into lists
        if isinstance(value, list) and "tuple" in str(fields[key].type):
            values[key] = tuple(value)
        _check_field(name, key, str(fields[key].type), values[key])
    return spec.config_cls(**values)


def _check_field(name: str, key: str, kind: str, value: Any) -> None:
    """Refuse a config value of the wrong type, a negative count or a width below 1 (e.g. from JSON).

    Raises:
        ValueError: naming the architecture, the field and the value.
    """

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if kind == "int":
        ok = is_int(value)
        ints = [value] if ok else []
    elif kind.startswith("tuple[int"):
        ok = isinstance(value, tuple) and all(is_int(v) for v in value)
        ints = list(value) if ok else []
    else:
        ok = {
            "float": lambda: isinstance(value, (int, float)) and not isinstance(value, bool),
            "bool": lambda: isinstance(value, bool),
            "str": lambda: isinstance(value, str),
        }.get(kind, lambda: True)()
        ints = []
    if not ok:
        raise ValueError(f"{name}: {key} must be of type {kind}. Got {value!r}")
    least = 1 if "width" in key or "channels" in key else 0
    if any(v < least for v in ints):
        raise ValueError(f"{name}: {key} must be >= {least}. Got {value!r}")


def create_model(name: str, config: Any = None, **overrides: Any) -> nn.Module:
    """Build a registered model from its config (instance, dict or defaults) plus overrides."""
    spec = get_spec(name)
    return spec.cls(build_config(name, config, **overrides))


def config_dict(model: nn.Module) -> dict[str, Any]:
    """The JSON-able config that rebuilds ``model``."""
    return dataclasses.asdict(model.config)
