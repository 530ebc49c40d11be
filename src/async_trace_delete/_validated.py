"""The base of every public model that takes the user's input: one error hierarchy.

pydantic refuses invalid input with its own ``ValidationError``, which is not a
:class:`~._exceptions.TraceDeleteError`. :class:`ValidatedModel` turns it, once for every
model, into a :class:`~._exceptions.SpecError` naming the field (a rule between fields keeps
its :class:`~._messages.FieldMessage`, so each front end names the fields its own way), with
pydantic's details kept (``errors()``, and the ``ValidationError`` as ``__cause__``).
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ValidationError

from ._exceptions import SpecError, TraceDeleteError
from ._messages import FieldMessage

__all__ = ["ValidatedModel", "spec_error"]


class ValidatedModel(BaseModel):
    """A pydantic model whose refusals are :class:`SpecError` (a ``TraceDeleteError``).

    Construction (``Model(...)``), ``model_validate``, ``model_validate_json``,
    ``model_validate_strings`` and assignment to a frozen model all raise it; nested models
    are validated by the outer one and reported once, by it.
    """

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as error:
            raise spec_error(type(self), error) from error

    # Not a custom __init__ to pydantic: it only renames the error, so a nested model (a
    # selector inside a spec) is still validated in place by the outer model, and its
    # problems keep their full location (``experiments.all_experiments``).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except ValidationError as error:  # a frozen model: assignment is refused too
            raise spec_error(type(self), error) from error

    @classmethod
    def model_validate(cls, obj: Any, **options: Any) -> Self:
        """``BaseModel.model_validate``, refusing with :class:`SpecError`."""
        try:
            return super().model_validate(obj, **options)
        except ValidationError as error:
            raise spec_error(cls, error) from error

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **options: Any) -> Self:
        """``BaseModel.model_validate_json``, refusing with :class:`SpecError`."""
        try:
            return super().model_validate_json(json_data, **options)
        except ValidationError as error:
            raise spec_error(cls, error) from error

    @classmethod
    def model_validate_strings(cls, obj: Any, **options: Any) -> Self:
        """``BaseModel.model_validate_strings``, refusing with :class:`SpecError`."""
        try:
            return super().model_validate_strings(obj, **options)
        except ValidationError as error:
            raise spec_error(cls, error) from error


def spec_error(model: type[BaseModel], error: ValidationError) -> SpecError:
    """The :class:`SpecError` for pydantic's refusal of ``model``'s input: the first problem,
    its field named (and how many more there are); the input shown only when the model does
    not hide it (``hide_input_in_errors``: a URI or a credential is never echoed)."""
    problems = error.errors(include_url=False)
    hide_input = bool(model.model_config.get("hide_input_in_errors"))
    first = _problem(problems[0], hide_input) if problems else FieldMessage(str(error))
    if len(problems) > 1:
        more = len(problems) - 1
        first = FieldMessage(
            first.template + " (and {more_problems} more problem{plural})",
            **first.values,
            more_problems=more,
            plural="" if more == 1 else "s",
        )
    return SpecError(first, model=model.__name__, validation_error=error, hide_input=hide_input)


def _problem(problem: Any, hide_input: bool) -> FieldMessage:
    """One of pydantic's problems as a message that names its field."""
    location = tuple(str(part) for part in problem.get("loc", ()))
    cause = problem.get("ctx", {}).get("error")
    if isinstance(cause, TraceDeleteError) and cause.message_fields is not None:
        if not location:  # a rule between fields: its message names them all
            return cause.message_fields
        inner = cause.message_fields
        if len(location) == 1 and "{" + location[0] in inner.template:
            return inner  # it names its own field already
        template, values = inner.template, dict(inner.values)
    else:
        text = str(problem.get("msg", "invalid")).removeprefix("Value error, ")
        given = problem.get("input")
        if (
            not hide_input
            and problem.get("type") != "missing"
            and isinstance(given, str | int | float)
        ):
            text = f"{text} (got {given!r})"
        template, values = "{problem_text}", {"problem_text": text}
    if not location:
        return FieldMessage(template, **values)
    if len(location) == 1 and location[0].isidentifier():
        return FieldMessage("{" + location[0] + "}: " + template, **values)
    return FieldMessage("{field_path}: " + template, field_path=".".join(location), **values)
