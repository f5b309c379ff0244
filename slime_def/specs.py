"""Spec strings: one text form that names a configured component everywhere.

A spec is ``name`` or ``name(key=value, ...)``; a chain joins specs with ``|`` and
is applied left to right, for example ``quantize(bits=4)|random_projection(dim=256)``.
Values are Python literals (numbers, strings, booleans, ``None``) read with
:func:`ast.literal_eval`, so parsing never executes code. The CLI, config files,
result records and plot legends all use the canonical form from :func:`format_spec`.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import re
from typing import Any

from slime_def.errors import SpecError

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class Spec:
    """One parsed component: a registry name and its keyword arguments."""

    name: str
    kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.kwargs)

    def __str__(self) -> str:
        return format_spec(self)


def _split_top_level(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside brackets and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_spec(text: str) -> Spec:
    """Parse one component spec such as ``gaussian(sigma=0.05)``.

    Raises:
      SpecError: the text is not ``name`` or ``name(key=literal, ...)``.
    """
    if not isinstance(text, str) or not text.strip():
        raise SpecError(f"empty spec {text!r}: expected 'name' or 'name(key=value, ...)'")
    source = text.strip()
    if "(" not in source:
        if not _NAME.match(source):
            raise SpecError(f"invalid spec {text!r}: a name uses letters, digits and '_' only")
        return Spec(source)

    try:
        node = ast.parse(source, mode="eval").body
    except SyntaxError as exc:
        raise SpecError(f"invalid spec {text!r}: {exc.msg}; expected 'name(key=value, ...)'") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise SpecError(f"invalid spec {text!r}: expected 'name(key=value, ...)'")
    if node.args:
        raise SpecError(
            f"invalid spec {text!r}: parameters must be named, for example "
            f"'{node.func.id}(sigma=0.05)'"
        )

    kwargs = []
    for keyword in node.keywords:
        if keyword.arg is None:
            raise SpecError(f"invalid spec {text!r}: '**' is not allowed in a spec")
        try:
            value = ast.literal_eval(keyword.value)
        except ValueError:
            written = ast.get_source_segment(source, keyword.value) or "..."
            raise SpecError(
                f"invalid value {written} for {keyword.arg!r} in spec {text!r}: use a number, "
                f"a quoted string such as {keyword.arg}='{written}', True, False or None"
            ) from None
        kwargs.append((keyword.arg, value))
    return Spec(node.func.id, tuple(kwargs))


def parse_chain(text: str) -> tuple[Spec, ...]:
    """Parse ``a(...)|b(...)`` into specs applied left to right."""
    if not isinstance(text, str) or not text.strip():
        raise SpecError(f"empty spec {text!r}: expected 'name(key=value, ...)' or 'a(...)|b(...)'")
    return tuple(parse_spec(part) for part in _split_top_level(text, "|"))


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
            return repr(float(value))
        return repr(value)
    return repr(value)


def format_spec(spec: Spec | tuple[Spec, ...]) -> str:
    """Return the canonical text of a spec or chain, keys in the given order."""
    if isinstance(spec, tuple):
        return "|".join(format_spec(part) for part in spec)
    if not spec.kwargs:
        return spec.name
    args = ", ".join(f"{key}={_format_value(value)}" for key, value in spec.kwargs)
    return f"{spec.name}({args})"
