"""Messages that name fields, so that each front end can name them its own way.

The library names a field as its Python name (``older_than``, ``pass force=True``); the CLI as
the flag or policy key the user typed (``--older-than``, ``pass --force``, ``set force =
true``). A :class:`FieldMessage` keeps the placeholders, and each renders it.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any

__all__ = ["FieldMessage"]


def _library_name(field: str, verb: str | None) -> str:
    return field if verb is None else f"{verb} {field}=True"


class FieldMessage:
    """A message that names the fields it is about, so a front end can name them its way.

    ``{older_than}`` names a field; ``{force:pass}`` asks to turn a switch on (the library
    says "pass force=True", the CLI "pass --force" or, in a policy file, "set force = true").
    Other placeholders are values given by keyword. The library's own rendering is
    ``str(message)``; :meth:`render` takes another namer.

    Args:
        template: The message, with placeholders.
        **values: The values its other placeholders show.
    """

    def __init__(self, template: str, **values: object) -> None:
        self.template = template
        self.values = values

    def render(self, name: Callable[[str, str | None], str] = _library_name) -> str:
        """The message with every field named by ``name(field, verb)``."""
        return _Fields(name, self.values).format(self.template)

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"FieldMessage({self.template!r})"


class _FieldRef:
    def __init__(self, field: str) -> None:
        self.field = field


class _Fields(string.Formatter):
    def __init__(self, name: Callable[[str, str | None], str], values: dict[str, object]) -> None:
        self._name = name
        self._values = values

    def format(self, template: str, /, *args: Any, **kwargs: Any) -> str:
        return self.vformat(template, args, kwargs)

    def get_value(self, key: int | str, args: Any, kwargs: Any) -> Any:
        if isinstance(key, str) and key not in self._values:
            return _FieldRef(key)
        return self._values[key] if isinstance(key, str) else args[key]

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, _FieldRef):
            return self._name(value.field, format_spec or None)
        return str(super().format_field(value, format_spec))
