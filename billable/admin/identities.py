"""Identity-related admin: external identities, trial history and referrals."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from billable.admin.display import CustomerColumnMixin
from billable.admin.json_field import JSON_FIELD_OVERRIDES
from billable.models import ExternalIdentity, Referral, TrialHistory
from billable.models.identities import DISPLAY_FIELDS

_USERNAME = get_user_model().USERNAME_FIELD


@admin.register(ExternalIdentity)
class ExternalIdentityAdmin(CustomerColumnMixin, admin.ModelAdmin):
    """``(provider, external_id)`` → billing account links, with the profile kept in metadata
    (Telegram username and names, searchable)."""

    formfield_overrides = JSON_FIELD_OVERRIDES

    list_display = ("provider", "external_id", "profile_name", "customer", "created_at",
                    "updated_at")
    list_filter = ("provider",)
    list_select_related = ("user",)
    search_fields = ("external_id", f"user__{_USERNAME}",
                     *(f"metadata__{key}" for key in DISPLAY_FIELDS))
    search_help_text = "External id, Telegram username (without @), first or last name."
    raw_id_fields = ("user",)
    readonly_fields = ("created_at", "updated_at")

    @admin.display(description=_("Profile"))
    def profile_name(self, obj: ExternalIdentity) -> str:
        meta = obj.metadata if isinstance(obj.metadata, dict) else {}
        names = [str(meta[key]) for key in ("first_name", "last_name") if meta.get(key)]
        if meta.get("username"):
            names.append(f"@{meta['username']}")
        return " ".join(names) or "—"

    def get_search_results(self, request: HttpRequest, queryset: Any,
                           search_term: str) -> Any:
        term = " ".join(word.lstrip("@") for word in search_term.split())
        return super().get_search_results(request, queryset, term)


@admin.register(TrialHistory)
class TrialHistoryAdmin(admin.ModelAdmin):
    """Hashed identities that claimed a trial. Deleting a row lets that identity claim again."""

    list_display = ("identity_type", "short_hash", "trial_plan_name", "used_at")
    list_filter = ("identity_type", "trial_plan_name")
    search_fields = ("identity_hash", "trial_plan_name")
    date_hierarchy = "used_at"

    @admin.display(description=_("Identity hash"))
    def short_hash(self, obj: TrialHistory) -> str:
        return f"{obj.identity_hash[:12]}…"

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False,
                 **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if "identity_hash" in form.base_fields:
            form.base_fields["identity_hash"].help_text = (
                "SHA-256 hex of the lower-cased, stripped identity value "
                "(TrialHistory.generate_identity_hash)."
            )
        return form


@admin.register(Referral)
class ReferralAdmin(admin.ModelAdmin):
    """Who invited whom; the bonus flag is flipped only by ``Referral.claim_bonus``."""

    formfield_overrides = JSON_FIELD_OVERRIDES

    list_display = ("id", "referrer", "referee", "bonus_granted", "bonus_granted_at",
                    "created_at")
    list_filter = ("bonus_granted",)
    list_select_related = ("referrer", "referee")
    search_fields = (f"referrer__{_USERNAME}", f"referee__{_USERNAME}")
    raw_id_fields = ("referrer", "referee")
    readonly_fields = ("bonus_granted", "bonus_granted_at")
