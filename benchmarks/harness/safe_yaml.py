"""Reading a suite file safely: UTF-8 text, ``yaml.safe_load`` with bounded aliases, no duplicate keys.

``yaml.safe_load`` builds no arbitrary objects, but it still lets a small file describe a
huge document: aliases (``*name``) share one node, so ten nested lists of ten aliases
(the "billion laughs") are a few hundred bytes that expand to 10^10 values the moment
anything walks them (the suite validator did, for minutes). It also keeps the last of two
equal keys without a word, and parses ``.inf``, which no run id (canonical JSON) can hold.

``load_yaml`` is ``yaml.safe_load`` plus checks on the composed node graph before any
Python object is built: the document, with every alias expanded, may hold at most
``MAX_NODES`` nodes and nest ``MAX_DEPTH`` deep; an alias may not contain itself; a mapping
may not name a key twice (keys merged in with ``<<: *name`` may still be overridden, as YAML
intends). The loader is a ``yaml.SafeLoader`` subclass, so the tags it accepts are exactly
``safe_load``'s. ``non_finite`` then lists every ``inf``/``nan`` in the built document.
Problems are ``(field path, message)`` pairs, the form ``SuiteError`` reports.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# A suite is a few hundred nodes (the shipped ones: at most 551 expanded); a million still
# leaves room for long explicit index lists while bounding what validation has to walk.
MAX_NODES = 1_000_000
# Suites nest about ten levels (the shipped ones: at most 10); the validator and the grid
# expansion recurse per level.
MAX_DEPTH = 64
MERGE_TAG = "tag:yaml.org,2002:merge"
_FLOAT_MAX = int(sys.float_info.max)

Problem = tuple[str, str]


class YamlInputError(ValueError):
    """The text is not a document the suite validator should see; ``problems`` say where and why."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path or '(top level)'}: {msg}" for path, msg in problems))


def read_utf8(path: Path) -> str:
    """The text of ``path`` as UTF-8; a non-UTF-8 file is a ``YamlInputError`` saying where it breaks."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YamlInputError([("", f"is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
                                   f"(line {line}) is not valid UTF-8; save the file as UTF-8")]) from None


def load_yaml(text: str, *, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> Any:
    """``yaml.safe_load(text)``, refusing alias bombs, recursive aliases, deep nesting and duplicate keys.

    Raises ``yaml.YAMLError`` for text that is not YAML and ``YamlInputError`` for the rest.
    """
    loader = _BoundedSafeLoader(text, max_nodes=max_nodes, max_depth=max_depth)
    try:
        return loader.get_single_data()
    except RecursionError:  # the composer recurses per nesting level, before our depth check
        raise YamlInputError([("", f"nests too deeply (more than {max_depth} levels)")]) from None
    finally:
        loader.dispose()


def non_finite(doc: Any, skip: tuple[str, ...] = ()) -> list[Problem]:
    """``(path, message)`` for every ``inf``/``-inf``/``nan`` in ``doc``, and every integer too large to
    become a float (``float(10**400)`` raises); top-level keys in ``skip`` are not walked."""
    problems: list[Problem] = []
    for path, value in _leaves(doc, "", skip):
        if isinstance(value, float) and not math.isfinite(value):
            problems.append((path, f"must be a finite number; got {value!r} (a run's configuration is "
                                   "stored as JSON, which has no inf or nan)"))
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > _FLOAT_MAX:
            problems.append((path, f"must be a finite number; got an integer of {len(str(abs(value)))} digits, "
                                   "beyond the range of a float"))
    return problems


def _leaves(value: Any, path: str, skip: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if not path and key in skip:
                continue
            yield from _leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, f"{path}[{i}]")
    else:
        yield path, value


class _BoundedSafeLoader(yaml.SafeLoader):
    """``SafeLoader`` that checks the composed node graph before constructing anything."""

    def __init__(self, stream: str, *, max_nodes: int, max_depth: int) -> None:
        super().__init__(stream)
        self.max_nodes = max_nodes
        self.max_depth = max_depth

    def compose_document(self) -> Node | None:
        node = super().compose_document()
        if node is not None:
            _GraphCheck(self.max_nodes, self.max_depth).run(node)
        return node


class _GraphCheck:
    """One depth-first pass over the node graph (each node once): expanded size, depth, cycles, duplicates."""

    def __init__(self, max_nodes: int, max_depth: int) -> None:
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self.sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, height)
        self.open: set[int] = set()
        self.problems: list[Problem] = []
        self.keys = SafeConstructor()  # builds scalar keys for comparison; never sees the document

    def run(self, root: Node) -> None:
        size, _ = self.visit(root, "", 1)
        if size > self.max_nodes:
            self.problems.insert(0, ("", f"expands to more than {self.max_nodes} YAML nodes once its aliases "
                                         "(*name) are resolved (an alias bomb?)"))
        if self.problems:
            raise YamlInputError(self.problems)

    def visit(self, node: Node, path: str, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in self.open:
            raise YamlInputError([(path, f"an alias refers to a node that contains it (line {_line(node)}); "
                                         "a suite must be a finite tree")])
        if key in self.sizes:
            size, height = self.sizes[key]
            if depth + height - 1 > self.max_depth:
                raise YamlInputError([(path, f"nests more than {self.max_depth} levels deep once aliases "
                                             "are resolved")])
            return size, height
        if depth > self.max_depth:
            raise YamlInputError([(path, f"nests more than {self.max_depth} levels deep")])
        self.open.add(key)
        size, height = 1, 1
        for child, child_path in self.children(node, path):
            s, h = self.visit(child, child_path, depth + 1)
            size += s
            height = max(height, h + 1)
            if size > self.max_nodes:  # stop early: the exact total does not matter past the limit
                break
        self.open.discard(key)
        self.sizes[key] = (size, height)
        return size, height

    def children(self, node: Node, path: str) -> Iterator[tuple[Node, str]]:
        if isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                yield item, f"{path}[{i}]"
        elif isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == MERGE_TAG:  # merged keys land in this mapping: same path
                    yield value_node, path
                    continue
                child = path
                if isinstance(key_node, ScalarNode):
                    name = self.keys.construct_object(key_node)
                    child = f"{path}.{name}" if path else str(name)
                    try:
                        first = seen.get(name)
                        if first is None:
                            seen[name] = _line(key_node)
                    except TypeError:  # an unhashable key; the constructor reports it
                        first = None
                    if first is not None:
                        self.problems.append((child, f"duplicate key (first at line {first}, again at line "
                                                     f"{_line(key_node)}); YAML would silently keep the last value"))
                yield key_node, child
                yield value_node, child


def _line(node: Node) -> int:
    return node.start_mark.line + 1
