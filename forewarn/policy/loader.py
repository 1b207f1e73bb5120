"""Load a policy file, validating it in layers; every problem is one :class:`PolicyError` naming
``file:line:column``, the key path and, where they are few, the allowed values.

Layers, in order: YAML syntax and safety (:mod:`forewarn.policy.yamlsafe`), structure (unknown keys and
action types, with the allowed ones), the pydantic schema, then semantics
(:func:`forewarn.policy.schema.semantic_problems`).
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path as FilePath
from typing import Any

from pydantic import BaseModel, BeforeValidator, ValidationError

from forewarn.errors import PolicyError
from forewarn.policy.schema import Policy, semantic_problems
from forewarn.policy.yamlsafe import Path, Position, dotted, parse_yaml


class _Context:
    """Where the policy came from, to turn a key path into file, line, column and field."""

    def __init__(self, source: str, lines: dict[Path, Position], name: str) -> None:
        self.source = source
        self.lines = lines
        self.name = name

    def where(self, path: Path, *, at_key: bool = False) -> tuple[int | None, int | None]:
        """Line and column of the value at ``path`` (of the key itself with ``at_key``).

        A key that is absent (a missing required field) points at the mapping that lacks it.
        """
        for end in range(len(path), -1, -1):
            position = self.lines.get(path[:end])
            if position is not None:
                if at_key and end == len(path):
                    return position.line, position.column
                return position.value_line, position.value_column
        return None, None

    def error(self, path: Path, message: str, allowed: list[str] | None = None, *, at_key: bool = False) -> PolicyError:
        row, column = self.where(path, at_key=at_key)
        return PolicyError(
            message, file=self.source, row=row, column=column, field=dotted(path) or None, allowed=allowed
        )


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _tagged(models: list[type[BaseModel]]) -> dict[str, type[BaseModel]]:
    tags: dict[str, type[BaseModel]] = {}
    for model in models:
        field = model.model_fields.get("type")
        if field is not None and typing.get_origin(field.annotation) is typing.Literal:
            tags[typing.get_args(field.annotation)[0]] = model
    return tags


def _before(metadata: list[Any], value: Any) -> Any:
    """``value`` as pydantic will see it after the field's before-validators (an older spelling made current)."""
    for meta in metadata:
        if isinstance(meta, BeforeValidator):
            try:
                value = meta.func(value)  # type: ignore[call-arg]
            except Exception:  # a bound refused: the schema layer reports it in its words
                return value
    return value


def _walk_value(tp: Any, value: Any, path: Path, ctx: _Context) -> None:
    """Check ``value`` against the annotation ``tp``, descending into models, lists, dicts and unions."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        inner, *metadata = typing.get_args(tp)
        _walk_value(inner, _before(metadata, value), path, ctx)
    elif origin in (typing.Union, types.UnionType):
        models = [arg for arg in typing.get_args(tp) if _is_model(arg)]
        if len(models) == 1:
            _walk_value(models[0], value, path, ctx)
        elif models and isinstance(value, dict):
            tags = _tagged(models)
            kind = value.get("type")
            if kind is None:
                raise ctx.error(path, f"policy '{ctx.name}': {path[-1]} needs a 'type'", allowed=sorted(tags))
            if not isinstance(kind, str) or kind not in tags:
                message = f"policy '{ctx.name}': unknown action type '{kind}'"
                raise ctx.error((*path, "type"), message, allowed=sorted(tags))
            _walk_model(tags[kind], value, path, ctx)
    elif origin is list and isinstance(value, list):
        for index, item in enumerate(value):
            _walk_value(typing.get_args(tp)[0], item, (*path, index), ctx)
    elif origin is dict and isinstance(value, dict):
        for key, item in value.items():
            _walk_value(typing.get_args(tp)[1], item, (*path, key), ctx)
    elif _is_model(tp):
        _walk_model(tp, value, path, ctx)


def _walk_model(model: type[BaseModel], data: Any, path: Path, ctx: _Context) -> None:
    if not isinstance(data, dict):
        return  # the schema layer reports the wrong type
    fields = {(info.alias or name): info for name, info in model.model_fields.items()}
    for key, value in data.items():
        if key not in fields:
            where = dotted(path) or "the top level"
            raise ctx.error(
                (*path, key),
                f"policy '{ctx.name}' has unknown key '{key}' in {where}",
                allowed=sorted(fields),
                at_key=True,
            )
        _walk_value(fields[key].annotation, _before(fields[key].metadata, value), (*path, key), ctx)


def _schema_error(exc: ValidationError, ctx: _Context) -> PolicyError:
    first = exc.errors()[0]
    path: list[str | int] = []
    loc = list(first["loc"])
    for part in loc:
        if (*path, part) in ctx.lines or not (part == "[key]" or _is_tag(path, part, ctx)):
            path.append(part)
    message, allowed = _explain(first)
    return ctx.error(tuple(path), f"policy '{ctx.name}': {message}", allowed=allowed, at_key="[key]" in loc)


def _explain(error: Any) -> tuple[str, list[str] | None]:
    """A pydantic error as a message and, for choices and booleans, the allowed values."""
    kind, value = error["type"], error.get("input")
    shown = repr(value) if isinstance(value, str | int | float | bool) else ""
    got = f", got {shown if len(shown) <= 60 else shown[:57] + '...'}" if shown else ""
    if kind == "missing":
        return f"required key '{error['loc'][-1]}' is missing", None
    if kind in ("enum", "literal_error"):
        return f"not one of the allowed values{got}", re.findall(r"'([^']*)'", error.get("ctx", {}).get("expected", ""))
    if kind in ("bool_parsing", "bool_type"):
        return f"must be a boolean{got}", ["true", "false"]
    return f"{error['msg']}{got}", None


def _is_tag(path: list[str | int], part: Any, ctx: _Context) -> bool:
    """Whether ``part`` is a union tag pydantic inserts (such as 'migrate' after 'action')."""
    return bool(path) and path[-1] == "action" and (*path, part) not in ctx.lines and (*path, "type") in ctx.lines


def load_policy_text(text: str, source: str = "<string>") -> Policy:
    """Parse and validate a policy from YAML text; ``source`` names it in errors.

    Raises:
        PolicyError: the first problem found, naming file, line and field.
    """
    data, lines = parse_yaml(text, source)
    if not isinstance(data, dict):
        row, column = lines[()].value_line, lines[()].value_column
        raise PolicyError(
            "a policy file must be a mapping of keys such as name, mode, bands, rules",
            file=source,
            row=row,
            column=column,
        )
    name = data.get("name") if isinstance(data.get("name"), str) else "<unnamed>"
    ctx = _Context(source, lines, str(name))
    _walk_model(Policy, data, (), ctx)
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise _schema_error(exc, ctx) from None
    problems = semantic_problems(policy)
    if problems:
        path, message = problems[0]
        raise ctx.error(path, f"policy '{ctx.name}': {message}")
    return policy


MAX_POLICY_BYTES = 1024 * 1024
"""A policy file larger than this (1 MiB) is refused unread; the largest shipped one is a few kB."""


def read_policy_text(path: str | FilePath, *, within: str | FilePath | None = None) -> str:
    """The text of the policy file at ``path``, read only if it is a regular UTF-8 file of at most
    :data:`MAX_POLICY_BYTES` and, given ``within``, resolves inside that folder: a symlink leading out of
    it is refused before it is read, so no message ever shows what it points at.

    Raises:
        PolicyError: naming the file, and the line and column of a byte that is not UTF-8.
    """
    file = FilePath(path)
    if not file.exists() and not file.is_symlink():
        raise PolicyError("policy file not found", file=file)
    try:
        target = file.resolve(strict=True)
    except (OSError, RuntimeError):
        raise PolicyError("a broken or looping symlink; refused", file=file) from None
    if within is not None and not target.is_relative_to(FilePath(within).resolve()):
        raise PolicyError(f"a symlink to a file outside {within}; refused unread", file=file)
    if target.is_dir():
        raise PolicyError("is a directory, not a policy file", file=file)
    if not target.is_file():
        raise PolicyError("not a regular file (a device, pipe or socket); refused unread", file=file)
    size = target.stat().st_size
    if size > MAX_POLICY_BYTES:
        raise PolicyError(f"is {size:,} bytes; a policy file is at most {MAX_POLICY_BYTES:,} bytes", file=file)
    try:
        data = target.read_bytes()[: MAX_POLICY_BYTES + 1]
    except OSError as exc:
        raise PolicyError(f"cannot be read: {exc.strerror or exc}", file=file) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        row, column = before.count(b"\n") + 1, exc.start - (before.rfind(b"\n") + 1) + 1
        raise PolicyError(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot start or continue a character",
            file=file,
            row=row,
            column=column,
        ) from None


def load_policy(path: str | FilePath, *, within: str | FilePath | None = None) -> Policy:
    """Read (see :func:`read_policy_text`) and validate the policy file at ``path``.

    Raises:
        PolicyError: the file is missing, unreadable or invalid; the message names file, line and field.
    """
    return load_policy_text(read_policy_text(path, within=within), source=str(path))
