"""``fedarena list``: every registry a suite or an attack can name, and one component in detail.

``registries()`` is the one list of categories (datasets … regularisers), each kept apart:
a name may live in two (``fedavg`` is an aggregator and a protocol; ``additive_noise`` a
corruption and a poisoning attack). ``describe(name)`` reads a component's parameters
from the factory's signature — or, for a factory taking ``**settings`` with a dataclass
``settings_class`` (the inversion attacks), from that dataclass, the same rule suite
validation uses (``params``) — with their types and defaults, and attaches to each the
docstring sentences that name it: the provenance notes (which paper or reference code a
default follows) stay where the code documents them and are shown, not copied.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from fedarena.fl_core.registry import Registry

from .components import default_components
from .params import _accepted, _signature
from .params import describe as describe_hint
from .suite import RESERVED

# Category (as in ``list --json``) -> (module to import so entries register, module holding it, name).
# The first nine are ``Components``' registries; generators and regularisers are the inversion
# attacks' own (a suite names them inside an attack's params).
_EXTRA: dict[str, tuple[str, str, str]] = {
    "generators": ("fedarena.attacks", "fedarena.attacks.inversion.generators.models", "GENERATORS"),
    "regularisers": ("fedarena.attacks", "fedarena.attacks.inversion.priors", "REGULARISERS"),
}
MAX_NOTES = 3  # docstring sentences shown per parameter
# Category -> its key in ``suite.RESERVED`` (the arguments the harness passes itself).
_RESERVED_KIND = {"datasets": "datasets", "models": "models", "partitioners": "partitioners",
                  "corruptions": "corruptions", "inversion_attacks": "attacks", "poisoning_attacks": "attacks",
                  "privacy_defenses": "defenses", "aggregators": "defenses"}


@dataclass(frozen=True)
class Parameter:
    """One parameter of a component: ``default`` is meaningless when ``required``."""

    name: str
    type: str
    required: bool
    default: Any
    defined_in: str  # where the default is written: "signature of X" or a settings dataclass
    notes: list[str] = field(default_factory=list)
    harness: bool = False  # passed by the harness itself (a seed, the dataset's shape); a suite may not set it

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["default"] = None if self.required else _jsonable(self.default)
        return out


@dataclass(frozen=True)
class Component:
    """A registry entry as ``fedarena list NAME`` shows it."""

    category: str
    name: str
    description: str
    factory: str  # module.qualname
    parameters: list[Parameter]
    defaults_notes: list[str]  # docstring sentences about defaults in general ("Defaults follow …")

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["parameters"] = [p.as_dict() for p in self.parameters]
        return out


def registries() -> dict[str, Registry]:
    """Every registry, by category, in display order (import side effects register the entries)."""
    comps = default_components()
    out: dict[str, Registry] = {f.name: getattr(comps, f.name) for f in dataclasses.fields(comps)}
    for category, (package, module, attr) in _EXTRA.items():
        importlib.import_module(package)
        out[category] = getattr(importlib.import_module(module), attr)
    return out


def catalogue() -> dict[str, dict[str, str]]:
    """``{category: {name: description}}`` for every registry (``fedarena list --json``)."""
    return {category: reg.descriptions() for category, reg in registries().items()}


def find(name: str) -> list[Component]:
    """Every component called ``name`` (one per category holding it); ``KeyError`` names close matches."""
    found = [describe(category, reg, name) for category, reg in registries().items() if name in reg]
    if not found:
        known = sorted({n for reg in registries().values() for n in reg})
        close = difflib.get_close_matches(name, known, n=5)
        raise KeyError(f"no component {name!r} in any registry"
                       + (f" (did you mean {', '.join(close)}?)" if close else "")
                       + "; `fedarena list` shows every name")
    return found


def describe(category: str, registry: Registry, name: str) -> Component:
    """``registry[name]`` with its parameters, types, defaults and the docstring notes on them."""
    factory = registry.get(name)
    own, modules = _docs(factory)
    own_sentences = [s for doc in own for s in _sentences(doc)]
    module_sentences = [s for doc in modules for s in _sentences(doc)]
    description = registry.descriptions()[name]
    candidates = [s for s in own_sentences + module_sentences if s not in description]  # not said twice
    reserved = RESERVED.get(_RESERVED_KIND.get(category, ""), ())
    parameters = [dataclasses.replace(p, notes=_notes(p.name, candidates), harness=p.name in reserved)
                  for p in _parameters(factory)]
    # Where defaults come from: any sentence of the component's own docstrings that speaks of
    # defaults; of a module docstring, only one about defaults ("Defaults follow the reference code …").
    defaults = _unique(s for s in candidates
                       if (re.search(r"\bdefaults?\b", s, re.IGNORECASE) if s in own_sentences
                           else re.match(r"defaults?\b", s, re.IGNORECASE))
                       and not any(s in p.notes for p in parameters))
    weight = getattr(factory, "weight", None)  # a regulariser: an attack's setting weighs it
    if isinstance(weight, str):
        defaults.insert(0, f"Weighted by the attack setting ``{weight}`` (0 leaves the term out).")
    return Component(category, name, description, _qualname(factory), parameters,
                     defaults[:MAX_NOTES])


def format_component(c: Component) -> str:
    """The plain-text ``fedarena list NAME`` answer."""
    lines = [f"{c.name} ({registries()[c.category].kind}; {c.factory})", f"  {c.description}"]
    if c.parameters:
        lines.append("parameters:")
        width = max(len(p.name) for p in c.parameters)
        for p in c.parameters:
            default = "set by the harness" if p.harness else "required" if p.required else f"default {_show(p.default)}"
            lines.append(f"  {p.name:<{width}}  {p.type or 'any'}, {default}  [{p.defined_in}]")
            lines += [f"  {'':<{width}}    {note}" for note in p.notes]
    else:
        lines.append("parameters: none")
    if c.defaults_notes:
        lines.append("defaults:")
        lines += [f"  {note}" for note in c.defaults_notes]
    return "\n".join(lines)


# --------------------------------------------------------------------- introspection


def _parameters(factory: Any) -> list[Parameter]:
    """The keyword parameters a suite may set (``params._accepted``), with type and default."""
    if not callable(factory):
        return []
    sig = _signature(factory)
    if sig is None:
        return []
    names, _, hints = _accepted(factory, sig)
    settings = getattr(factory, "settings_class", None)
    fields = {f.name: f for f in dataclasses.fields(settings)} if dataclasses.is_dataclass(settings) else {}
    out = []
    for name in names:
        hint = hints.get(name, inspect.Parameter.empty)
        type_ = "" if hint is inspect.Parameter.empty else describe_hint(hint)
        if name in sig.parameters:
            p = sig.parameters[name]
            required, default = p.default is p.empty, p.default
            where = f"signature of {_qualname(factory)}"
            if name in fields:  # a signature generated from the settings dataclass: name where it is written
                overrides = getattr(factory, "defaults", None) or {}
                where = (f"defaults of {_qualname(factory)}" if name in overrides
                         else _defining_class(settings, name))
        else:
            f = fields[name]
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            default = f.default if f.default is not dataclasses.MISSING else (
                None if required else f.default_factory())
            where = _defining_class(settings, name)
        out.append(Parameter(name, type_, required, None if required else default, where))
    return out


def _defining_class(settings: type, name: str) -> str:
    """The class in ``settings``' MRO that last (re)declares field ``name``: where its default is written."""
    for cls in settings.__mro__:
        if name in getattr(cls, "__annotations__", {}):
            return cls.__qualname__
    return settings.__qualname__


def _docs(factory: Any) -> tuple[list[str], list[str]]:
    """(own docstrings, module docstrings) that document ``factory``, nearest first: the function,
    or the class and the class whose ``__init__`` it uses; its settings dataclass and that
    dataclass's bases; then the modules defining them. A factory's other bases (``Aggregator``,
    ``OptimizationAttack``) document the contract, not this component's parameters."""
    target = factory if inspect.isclass(factory) or inspect.isroutine(factory) else type(factory)
    classes: list[type] = []
    if inspect.isclass(target):
        classes.append(target)
        owner = next((c for c in target.__mro__ if "__init__" in c.__dict__), object)
        if owner is not object and owner not in classes:
            classes.append(owner)
    settings = getattr(factory, "settings_class", None)
    if inspect.isclass(settings):
        classes += [c for c in settings.__mro__ if c is not object and c not in classes]
    own = [] if inspect.isclass(target) else [target.__doc__ or ""]
    for cls in classes:
        own.append(cls.__dict__.get("__doc__") or "")
        own.append(getattr(cls.__dict__.get("__init__"), "__doc__", None) or "")
    modules = dict.fromkeys([target.__module__, *(c.__module__ for c in classes)])
    module_docs = [getattr(sys.modules.get(m), "__doc__", None) or "" for m in modules]

    def clean(docs: list[str]) -> list[str]:
        return [d for d in _unique(inspect.cleandoc(d) for d in docs if d) if d]

    return clean(own), clean(module_docs)


_SENTENCE_END = re.compile(r"(?<=[.])\s+(?=[A-Z`(\"])")
_ABBREVIATIONS = ("et al.", "e.g.", "i.e.", "Sec.", "Eq.", "Fig.", "vs.", "cf.", "Def.", "Alg.", "resp.")


def _sentences(doc: str) -> list[str]:
    """``doc``'s sentences, each on one line (indented blocks such as formulas are dropped)."""
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", doc):
        if paragraph.startswith((" ", "\t")):
            continue
        text = " ".join(paragraph.split())
        pieces = _SENTENCE_END.split(text)
        merged: list[str] = []
        for piece in pieces:  # re-join splits after an abbreviation ("et al. 2019" never splits; "Sec. 4" does)
            if merged and merged[-1].endswith(_ABBREVIATIONS):
                merged[-1] += " " + piece
            else:
                merged.append(piece)
        out += merged
    return out


def _notes(name: str, sentences: list[str]) -> list[str]:
    """Sentences naming parameter ``name`` as code (``name``, ``name=…``, `name`)."""
    pattern = re.compile(rf"`{re.escape(name)}(?![A-Za-z0-9_])[^`]*`")
    return _unique(s for s in sentences if pattern.search(s))[:MAX_NOTES]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _qualname(obj: Any) -> str:
    target = obj if inspect.isclass(obj) or inspect.isfunction(obj) else type(obj)
    return f"{target.__module__}.{target.__qualname__}"


def _show(value: Any) -> str:
    if isinstance(value, Callable) and not isinstance(value, type):  # type: ignore[arg-type]
        return getattr(value, "__name__", repr(value))
    return repr(value)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return _show(value)
