"""Safe YAML for policy files: plain data only, no duplicate keys, no alias bombs, and where every key is.

:func:`parse_yaml` returns the data and a map from each key's path (``("rules", 0, "action", "type")``)
to its :class:`Position`: the 1-based line and column of the key and of its value, so later layers can say
exactly where a problem is.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import yaml
from yaml.error import Mark
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from forewarn.errors import PolicyError

MAX_ALIASES = 100
"""More aliases than this in one policy is refused (a policy needs a handful at most)."""

MAX_NODES = 20_000
"""Refused above this many nodes once every alias is expanded (the 'billion laughs' attack)."""

MAX_DEPTH = 64
"""Refused when mappings and lists nest deeper than this (a policy nests five levels at most)."""

_CORE = "tag:yaml.org,2002:"
ALLOWED_TAGS = frozenset(
    f"{_CORE}{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "merge")
)

Path = tuple[str | int, ...]


class Position(NamedTuple):
    """Where a key and its value start, 1-based. For a list item, key and value are the item itself."""

    line: int
    column: int
    value_line: int
    value_column: int


def _position(key: Mark, value: Mark) -> Position:
    return Position(key.line + 1, key.column + 1, value.line + 1, value.column + 1)


def _short(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


def dotted(path: Path) -> str:
    """A key path as written in messages: ``rules[0].action.type``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


class PolicyYamlLoader(yaml.SafeLoader):
    """A SafeLoader that refuses object tags and runaway aliases, naming the key path of the offending node."""

    def __init__(self, stream: str, source: str = "<string>") -> None:
        super().__init__(stream)
        self.source = source
        self.alias_count = 0
        self.path: list[str | int] = []

    def fail(self, where: Node | Mark, message: str, path: Path | None = None) -> PolicyError:
        mark = where.start_mark if isinstance(where, Node) else where
        field = dotted(tuple(self.path) if path is None else path) or None
        return PolicyError(message, file=self.source, row=mark.line + 1, column=mark.column + 1, field=field)

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        part = str(index.value) if isinstance(index, ScalarNode) else index if isinstance(index, int) else None
        if part is not None:
            self.path.append(part)
        if len(self.path) > MAX_DEPTH:
            mark = self.peek_event().start_mark
            message = f"nested more than {MAX_DEPTH} levels deep; a policy nests a few levels at most"
            raise self.fail(mark, message, tuple(self.path[:3]))
        try:
            return self._compose(parent, index)
        finally:
            if part is not None:
                self.path.pop()

    def _compose(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            self.alias_count += 1
            if self.alias_count > MAX_ALIASES:
                raise self.fail(
                    self.peek_event().start_mark, f"more than {MAX_ALIASES} YAML aliases; refused as an alias bomb"
                )
        node: Node | None = super().compose_node(parent, index)
        if node is not None and node.tag not in ALLOWED_TAGS:
            raise self.fail(
                node,
                f"tag '{_short(node.tag)}' is not allowed: a policy holds plain data "
                "(strings, numbers, booleans, lists and mappings), never objects",
            )
        return node


def _expanded_size(node: Node, sizes: dict[int, int], active: set[int], loader: PolicyYamlLoader, at: Path) -> int:
    """Nodes under ``node`` with every alias expanded; ``at`` is its key path, for the error message."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in active:
        raise loader.fail(node, "a YAML alias refers to itself; recursive structures are refused", at)
    active.add(key)
    total = 1
    if isinstance(node, MappingNode):
        for k, v in node.value:
            name = (*at, str(k.value)) if isinstance(k, ScalarNode) else at
            total += 1 + _expanded_size(v, sizes, active, loader, name)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            total += _expanded_size(item, sizes, active, loader, (*at, index))
    active.discard(key)
    sizes[key] = total
    if total > MAX_NODES:
        raise loader.fail(node, f"expands to more than {MAX_NODES} YAML nodes; refused as an alias bomb", at)
    return total


def _record(node: Node, path: Path, positions: dict[Path, Position], loader: PolicyYamlLoader) -> None:
    """Note where every key path is; refuse a key given twice in one mapping (merged keys may be overridden)."""
    if isinstance(node, MappingNode):
        seen: dict[str, int] = {}
        for key_node, value in node.value:
            if key_node.tag == f"{_CORE}merge":
                merged = value.value if isinstance(value, SequenceNode) else [value]
                for part in merged:
                    _record(part, path, positions, loader)
                continue
            key = key_node.value if isinstance(key_node, ScalarNode) else str(key_node.start_mark)
            if key in seen:
                message = f"duplicate key (first at line {seen[key]}); each key may appear once"
                raise loader.fail(key_node, message, (*path, key))
            seen[key] = key_node.start_mark.line + 1
            positions.setdefault((*path, key), _position(key_node.start_mark, value.start_mark))
            _record(value, (*path, key), positions, loader)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            positions.setdefault((*path, index), _position(item.start_mark, item.start_mark))
            _record(item, (*path, index), positions, loader)


def parse_yaml(text: str, source: str = "<string>") -> tuple[Any, dict[Path, Position]]:
    """Parse one YAML document safely.

    Returns:
        The data (plain dicts, lists and scalars) and the :class:`Position` of every key path.

    Raises:
        PolicyError: on a syntax error, a duplicate key, a tag that builds objects, or an alias bomb.
    """
    loader: PolicyYamlLoader | None = None
    try:
        loader = PolicyYamlLoader(text, source)  # the reader refuses NUL and other control characters here
        node = loader.get_single_node()
        if node is None:
            raise PolicyError("the file is empty; a policy needs at least a name", file=source, row=1, column=1)
        _expanded_size(node, {}, set(), loader, ())
        positions: dict[Path, Position] = {(): _position(node.start_mark, node.start_mark)}
        _record(node, (), positions, loader)
        data = loader.construct_document(node)
    except yaml.reader.ReaderError as exc:
        at_line, at_column = _line_column(text, exc.position)
        character = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise PolicyError(
            f"the character {character} is not allowed in a policy file (control characters and NUL are not text)",
            file=source,
            row=at_line,
            column=at_column,
        ) from None
    except RecursionError:
        raise PolicyError(f"nested too deeply to read (at most {MAX_DEPTH} levels)", file=source) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        row, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        problem = exc.problem or exc.context or "invalid YAML"
        raise PolicyError(f"YAML syntax error: {problem}", file=source, row=row, column=column) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"YAML error: {str(exc).splitlines()[0]}", file=source) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, positions


def _line_column(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of character ``position`` of ``text``."""
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1
