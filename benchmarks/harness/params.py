"""Checking a component's parameters from a suite against the registered factory.

The factory's own signature is the schema: unknown names are refused with the list
of accepted ones, type hints are checked (``Literal`` values listed), and — where the
factory is cheap to call — a trial construction lets the component reject bad values
itself (a negative learning rate, say) before any run starts.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fedarena.fl_core.data_root import MissingDataError
from fedarena.fl_core.registry import Registry

# Parameters that must be > 0 whatever component takes them (a safety net for factories
# that do not validate their own arguments).
POSITIVE_PARAMS = frozenset({"lr", "learning_rate", "iterations", "max_iterations", "restarts", "epochs",
                             "batch_size", "steps", "local_steps"})

Problem = tuple[str, str]  # (field path, message)


def check_params(
    registry: Registry, name: str, params: Any, path: str, *, reserved: Sequence[str] = (),
    context: Mapping[str, Any] | None = None, trial: bool = False,
) -> tuple[dict[str, Any], list[Problem]]:
    """Validate ``params`` for ``registry[name]``; return (normalised params, problems).

    ``reserved`` arguments are supplied by the harness and may not be set in a suite;
    ``context`` holds values the harness will pass when the factory accepts them, used
    for the trial construction (``trial=True``).
    """
    if params is None:
        params = {}
    if not isinstance(params, dict):
        return {}, [(path, f"must be a mapping of parameter names to values, got {_show(params)}")]
    factory = registry.get(name)
    sig = _signature(factory)
    if sig is None:
        return dict(params), []
    problems: list[Problem] = []
    accepted, takes_kwargs, hints = _accepted(factory, sig)
    allowed = [n for n in accepted if n not in reserved]
    out: dict[str, Any] = {}
    for key, value in params.items():
        where = f"{path}.{key}"
        if key in reserved:
            problems.append((where, f"is set by the harness for {registry.kind} {name!r}; remove it"))
            continue
        if key not in allowed and not takes_kwargs:
            problems.append((where, f"unknown parameter of {registry.kind} {name!r}; allowed: "
                                    f"{', '.join(allowed) or '(none)'}"))
            continue
        if key in hints:
            ok, value = conform(hints[key], value)
            if not ok:
                problems.append((where, f"expected {describe(hints[key])}, got {_show(value)}"))
                continue
        if key in POSITIVE_PARAMS and _is_number(value) and not value > 0:
            problems.append((where, f"must be > 0, got {_show(value)}"))
            continue
        out[key] = value
    supplied = set(out) | set(reserved) | set(context or {})
    for param in _required(sig):  # the harness passes only reserved and context values
        if param.name not in supplied and param.name not in params:
            hint = f" ({describe(hints[param.name])})" if param.name in hints else ""
            problems.append((f"{path}.{param.name}", f"missing required parameter of {registry.kind} {name!r}{hint}"))
    if trial and not problems:
        problems += _trial_build(factory, sig, out, dict(context or {}), registry.kind, name, path)
    return out, problems


def _required(sig: inspect.Signature) -> list[inspect.Parameter]:
    return [p for p in sig.parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def build_component(registry: Registry, name: str, params: Mapping[str, Any],
                    context: Mapping[str, Any] | None = None) -> Any:
    """Call ``registry[name]`` with the suite's params plus the context values it accepts."""
    factory = registry.get(name)
    return factory(**_with_context(factory, dict(params), dict(context or {})))


def conform(hint: Any, value: Any) -> tuple[bool, Any]:
    """Whether ``value`` (from YAML) fits ``hint``; ints are widened to float where a float is asked."""
    if hint is Any or hint is inspect.Parameter.empty or isinstance(hint, typing.TypeVar):
        return True, value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is type(None) or hint is None:
        return value is None, value
    if origin is typing.Literal:
        return value in args and not (isinstance(value, bool) and not any(isinstance(a, bool) for a in args)), value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            ok, conv = conform(arg, value)
            if ok:
                return True, conv
        return False, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True, float(value)
        return False, value
    if hint is str:
        return isinstance(value, str), value
    seq_origins = (list, tuple, Sequence, typing.Sequence, set, frozenset)
    if hint in seq_origins or origin in seq_origins or origin is _abc_sequence():
        if not isinstance(value, list):
            return False, value
        item = args[0] if args and (len(args) == 1 or args[-1] is Ellipsis) else None
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed-length tuple
            if len(args) != len(value):
                return False, value
            pairs = list(zip(args, value, strict=True))
        else:
            pairs = [(item, v) for v in value]
        out = []
        for arg, v in pairs:
            ok, conv = conform(arg, v) if arg is not None else (True, v)
            if not ok:
                return False, value
            out.append(conv)
        return True, out
    if hint in (dict, Mapping) or origin in (dict, Mapping, _abc_mapping()):
        return isinstance(value, dict), value
    return True, value  # a type a suite cannot express (a module, a callable): let the factory judge


def describe(hint: Any) -> str:
    """A type hint in words, for error messages (``'a' or 'b'``, ``float or null``)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is type(None) or hint is None:
        return "null"
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is not None and args:
        inner = describe(args[0])
        return f"a list of {inner}" if origin in (list, tuple, set, frozenset, _abc_sequence()) else str(hint)
    return getattr(hint, "__name__", str(hint))


def _abc_sequence() -> Any:
    import collections.abc

    return collections.abc.Sequence


def _abc_mapping() -> Any:
    import collections.abc

    return collections.abc.Mapping


@functools.lru_cache(maxsize=1024)  # a grid asks about the same factories for every variant
def _signature(factory: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(factory)
    except (TypeError, ValueError):
        return None


def _accepted(factory: Callable[..., Any], sig: inspect.Signature) -> tuple[list[str], bool, dict[str, Any]]:
    """(accepted parameter names, accepts anything?, type hints) of a factory (copies: callers may edit them).

    A factory that declares a dataclass ``settings_class`` (the inversion attacks do) is
    described by that dataclass's fields, including those its published signature leaves out.
    """
    names, takes_kwargs, hints = _described(factory, sig)
    return list(names), takes_kwargs, dict(hints)


@functools.lru_cache(maxsize=1024)
def _described(factory: Callable[..., Any], sig: inspect.Signature) -> tuple[tuple[str, ...], bool, dict[str, Any]]:
    names = [p.name for p in sig.parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    hints = _hints(factory)
    settings = getattr(factory, "settings_class", None)
    if dataclasses.is_dataclass(settings):  # its published signature may leave out forced fields
        own = [f.name for f in dataclasses.fields(settings)]
        names = own + [n for n in names if n not in own]
        try:
            hints = {**typing.get_type_hints(settings), **hints}
        except Exception:
            pass
        takes_kwargs = False
    return tuple(names), takes_kwargs, hints


def _hints(factory: Callable[..., Any]) -> dict[str, Any]:
    target = factory.__init__ if inspect.isclass(factory) else factory  # type: ignore[misc]
    try:
        return typing.get_type_hints(target)
    except Exception:  # unresolvable forward references: fall back to no type checks
        return {}


def _with_context(factory: Callable[..., Any], params: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """``params`` plus the context values the factory takes. A factory taking ``**kwargs``
    without a declared ``settings_class`` gets every context value: dropping one silently
    (an adaptive attacker's ``update_transform``, say) would give wrong results, while an
    unwanted one fails loudly."""
    sig = _signature(factory)
    if sig is None:
        return params
    names, takes_anything, _ = _accepted(factory, sig)
    extra = {k: v for k, v in context.items() if (takes_anything or k in names) and k not in params}
    return {**params, **extra}


def _trial_build(factory: Callable[..., Any], sig: inspect.Signature, params: dict[str, Any],
                 context: dict[str, Any], kind: str, name: str, path: str) -> list[Problem]:
    kwargs = _with_context(factory, params, context)
    if any(p.name not in kwargs for p in _required(sig)):  # needs run-time inputs (a model, a dataset)
        return []
    try:
        factory(**kwargs)
    except (ValueError, TypeError) as exc:
        culprit = _culprit(factory, params, context, str(exc))
        where = f"{path}.{culprit}" if culprit else path
        return [(where, f"{kind} {name!r} rejects this: {exc}")]
    except MissingDataError as exc:  # weights it needs are absent: every run with it would fail
        return [(path, f"{kind} {name!r} cannot be built: {str(exc).replace(chr(10), chr(10) + '      ')}")]
    except Exception:  # anything else is the run's to report (it may depend on run-time inputs)
        return []
    return []


def _culprit(factory: Callable[..., Any], params: dict[str, Any], context: dict[str, Any], message: str) -> str | None:
    """The one parameter whose removal makes the factory accept the rest (else the only one the
    message names), so the error can point at ``...params.<name>``."""
    fixes = []
    for key in params:
        rest = {k: v for k, v in params.items() if k != key}
        try:
            factory(**_with_context(factory, rest, context))
        except Exception:
            continue
        fixes.append(key)
    if len(fixes) == 1:
        return fixes[0]
    named = [k for k in params if re.search(rf"\b{re.escape(k)}\b", message)]
    return named[0] if len(named) == 1 else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"
