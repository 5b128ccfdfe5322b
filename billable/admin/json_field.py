"""The admin's JSON form field: what the database cannot store is a form error, not a 500.

Django's ``forms.JSONField`` lets through what ``json.loads`` accepts but PostgreSQL's ``jsonb``
refuses (``NaN``, ``Infinity``, ``\\u0000``) and lets a deeply nested value (``[[[[…``) raise
``RecursionError`` out of the view. ``SafeJSONField`` applies :func:`billable.validation.safe_json`
(the rule of the services and the CSV import) and reports both as field errors.
``JSON_FIELD_OVERRIDES`` is the ``formfield_overrides`` entry every billable admin with an
editable JSON column uses.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

from billable.exceptions import InvalidInput
from billable.validation import MAX_JSON_DEPTH, safe_json


class SafeJSONField(forms.JSONField):
    """``forms.JSONField`` that refuses JSON the database cannot store and read back."""

    def to_python(self, value: Any) -> Any:
        try:
            converted = super().to_python(value)
        except RecursionError:
            raise ValidationError(f"JSON must not be nested deeper than {MAX_JSON_DEPTH} levels.",
                                  code="invalid") from None
        try:
            safe_json(converted, field="JSON")
        except InvalidInput as exc:
            raise ValidationError(exc.message, code="invalid") from None
        return converted

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            return super().bound_data(data, initial)
        except RecursionError:  # redisplay what was typed, as Django does for invalid JSON
            return forms.fields.InvalidJSONInput(data)


JSON_FIELD_OVERRIDES: dict[type[models.Field], dict[str, Any]] = {
    models.JSONField: {"form_class": SafeJSONField},
}

__all__ = ["JSON_FIELD_OVERRIDES", "SafeJSONField"]
