"""Safe YAML for policy files: plain data only, no duplicate keys, no alias bombs, and every key's line.

:func:`parse_yaml` returns the data and a map from each key's path (``("rules", 0, "action", "type")``)
to its 1-based line, so later layers can say where a problem is.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from forewarn.errors import PolicyError

MAX_ALIASES = 100
"""More aliases than this in one policy is refused (a policy needs a handful at most)."""

MAX_NODES = 20_000
"""Refused above this many nodes once every alias is expanded (the 'billion laughs' attack)."""

_CORE = "tag:yaml.org,2002:"
ALLOWED_TAGS = frozenset(
    f"{_CORE}{name}" for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "merge")
)

Path = tuple[str | int, ...]


def _short(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


def _field(index: Any) -> str | None:
    """The key (or list position) under which the node being composed sits."""
    if isinstance(index, ScalarNode):
        return str(index.value)
    return f"[{index}]" if isinstance(index, int) else None


class PolicyYamlLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys, object tags and runaway aliases, with readable errors."""

    def __init__(self, stream: str, source: str = "<string>") -> None:
        super().__init__(stream)
        self.source = source
        self.alias_count = 0

    def _fail(self, node_or_line: Node | int, message: str, field: str | None = None) -> PolicyError:
        line = node_or_line if isinstance(node_or_line, int) else node_or_line.start_mark.line + 1
        return PolicyError(message, file=self.source, row=line, field=field)

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            self.alias_count += 1
            if self.alias_count > MAX_ALIASES:
                event = self.peek_event()
                raise self._fail(
                    event.start_mark.line + 1,
                    f"more than {MAX_ALIASES} YAML aliases; refused as an alias bomb",
                    field=_field(index),
                )
        node: Node | None = super().compose_node(parent, index)
        if node is not None and node.tag not in ALLOWED_TAGS:
            raise self._fail(
                node,
                f"tag '{_short(node.tag)}' is not allowed: a policy holds plain data "
                "(strings, numbers, booleans, lists and mappings), never objects",
                field=_field(index),
            )
        return node

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == f"{_CORE}merge":
                continue
            line = key_node.start_mark.line + 1
            if key_node.value in seen:
                raise self._fail(
                    line,
                    f"duplicate key (first at line {seen[key_node.value]}); each key may appear once",
                    field=str(key_node.value),
                )
            seen[key_node.value] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: Node, sizes: dict[int, int], active: set[int], loader: PolicyYamlLoader, at: str) -> int:
    """Nodes under ``node`` with every alias expanded; ``at`` is its key, for the error message."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in active:
        raise loader._fail(node, "a YAML alias refers to itself; recursive structures are refused", field=at)
    active.add(key)
    total = 1
    if isinstance(node, MappingNode):
        for k, v in node.value:
            name = str(k.value) if isinstance(k, ScalarNode) else at
            total += 1 + _expanded_size(v, sizes, active, loader, name)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            total += _expanded_size(item, sizes, active, loader, at)
    active.discard(key)
    sizes[key] = total
    if total > MAX_NODES:
        raise loader._fail(
            node, f"expands to more than {MAX_NODES} YAML nodes; refused as an alias bomb", field=at or None
        )
    return total


def _record_lines(node: Node, path: Path, lines: dict[Path, int]) -> None:
    if isinstance(node, MappingNode):
        for key_node, value in node.value:
            if key_node.tag == f"{_CORE}merge":
                merged = value.value if isinstance(value, SequenceNode) else [value]
                for part in merged:
                    _record_lines(part, path, lines)
                continue
            key = key_node.value if isinstance(key_node, ScalarNode) else str(key_node.start_mark)
            lines.setdefault((*path, key), key_node.start_mark.line + 1)
            _record_lines(value, (*path, key), lines)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            lines.setdefault((*path, index), item.start_mark.line + 1)
            _record_lines(item, (*path, index), lines)


def parse_yaml(text: str, source: str = "<string>") -> tuple[Any, dict[Path, int]]:
    """Parse one YAML document safely.

    Returns:
        The data (plain dicts, lists and scalars) and the 1-based line of every key path.

    Raises:
        PolicyError: on a syntax error, a duplicate key, a tag that builds objects, or an alias bomb.
    """
    loader = PolicyYamlLoader(text, source)
    try:
        node = loader.get_single_node()
        if node is None:
            raise PolicyError("the file is empty; a policy needs at least a name", file=source, row=1)
        _expanded_size(node, {}, set(), loader, "")
        lines: dict[Path, int] = {(): node.start_mark.line + 1}
        _record_lines(node, (), lines)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        row = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise PolicyError(f"YAML syntax error: {problem}", file=source, row=row) from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"YAML error: {str(exc).splitlines()[0]}", file=source) from None
    finally:
        loader.dispose()
    return data, lines
