"""Name → factory registries, so suites and the CLI refer to components by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """A registry lookup failed; the message lists every known name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    factory: T
    description: str


def summary(doc: str | None) -> str:
    """The first paragraph of a docstring on one line: a docstring's first *line* often stops
    mid-sentence (the sentence wraps), so ``fedarena list`` shows the whole paragraph."""
    paragraph = (doc or "").strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split())


class Registry(Generic[T]):
    """Maps names used in suites (``"krum"``, ``"lenet5"``) to factories.

    One registry per kind of component; ``get`` on an unknown name raises an
    error that lists the known ones, so a typo in a suite is self-explaining.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, description: str = "") -> Callable[[T], T]:
        def decorator(factory: T) -> T:
            self.add(name, factory, description)
            return factory

        return decorator

    def add(self, name: str, factory: T, description: str = "") -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, factory, description or summary(getattr(factory, "__doc__", None)))

    def get(self, name: str) -> T:
        try:
            return self._entries[name].factory
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "(none registered)"
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def build(self, name: str, /, **kwargs: Any) -> Any:
        return self.get(name)(**kwargs)  # type: ignore[operator]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def descriptions(self) -> dict[str, str]:
        return {name: self._entries[name].description for name in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)
