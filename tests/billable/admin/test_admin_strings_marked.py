"""The billable admin's user-visible prose is marked for Django's translation (lazy strings)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.utils.functional import Promise

from billable.admin.customers import CustomerAdmin, ManualGrantForm
from billable.admin.ledger import SpendableFilter


def _billable_admins() -> list[Any]:
    return [ma for model, ma in admin.site._registry.items()
            if type(ma).__module__.startswith("billable.admin")]


def test_column_and_action_descriptions_are_lazy_translations() -> None:
    found = 0
    for model_admin in _billable_admins():
        for name in dir(type(model_admin)):
            member = getattr(type(model_admin), name, None)
            description = getattr(member, "short_description", None)
            if callable(member) and description is not None:
                found += 1
                assert isinstance(description, Promise), f"{type(model_admin).__name__}.{name}"
    assert found > 30


def test_filters_search_help_and_form_labels_are_lazy_translations() -> None:
    assert isinstance(SpendableFilter.title, Promise)
    assert isinstance(CustomerAdmin.search_help_text, Promise)
    form = ManualGrantForm()
    assert all(isinstance(form.fields[name].label, Promise) for name in ("offer", "reason"))
