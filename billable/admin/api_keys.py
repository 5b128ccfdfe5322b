"""API keys in the admin: create (the key is shown once), restrict, revoke.

The add page creates the key and answers with a page that shows it — no redirect, so the key is
never put in a message, the session or a URL. Afterwards only its prefix is visible. Keys are
revoked (an action), not edited into new secrets; a revoked key may then be deleted.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from billable.models import ApiKey
from billable.scopes import SCOPES
from billable.services.api_keys import assign_new_token, revoke_api_key

_TOKEN_ATTR = "_billable_new_token"


class ApiKeyForm(forms.ModelForm):
    """Name, scopes (checkboxes) and an optional expiry."""

    scopes = forms.MultipleChoiceField(
        choices=[(scope, f"{scope} — {text}") for scope, text in SCOPES.items()],
        widget=forms.CheckboxSelectMultiple,
        help_text="What the key may do. 'admin' is everything (like BILLABLE_API_TOKEN).")

    class Meta:
        model = ApiKey
        fields = ("name", "scopes", "expires_at")


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Several named keys with scopes; see ``docs/api-keys.md`` for rotation."""

    form = ApiKeyForm
    list_display = ("name", "prefix", "scope_list", "status", "created_at", "expires_at",
                    "last_used_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix")
    readonly_fields = ("prefix", "created_at", "revoked_at", "last_used_at")
    actions = ["revoke_keys"]

    @admin.display(description=_("Scopes"))
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes or [])

    @admin.display(description=_("Status"))
    def status(self, obj: ApiKey) -> str:
        if obj.revoked_at is not None:
            return "revoked"
        return "active" if obj.is_active() else "expired"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if not change:
            setattr(obj, _TOKEN_ATTR, assign_new_token(obj))
        super().save_model(request, obj, form, change)

    def response_add(self, request: HttpRequest, obj: ApiKey,
                     post_url_continue: str | None = None) -> HttpResponse:
        context = {**self.admin_site.each_context(request), "opts": self.opts, "key": obj,
                   "token": getattr(obj, _TOKEN_ATTR, ""), "title": "API key created"}
        # The admin marks its views never_cache, so the key is not kept by a browser cache.
        return TemplateResponse(request, "admin/billable/apikey/created.html", context)

    @admin.action(description=_("Revoke the selected API keys"))
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(1 for pk in queryset.values_list("pk", flat=True) if revoke_api_key(pk))
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        """No bulk delete: it would take active keys along."""
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        """Only revoked keys may be deleted (an active key is revoked first, on purpose)."""
        if obj is not None and obj.revoked_at is None:
            return False
        return super().has_delete_permission(request, obj)


__all__ = ["ApiKeyAdmin", "ApiKeyForm"]
