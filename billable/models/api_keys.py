"""API keys of the REST API: several named keys, each with its scopes, stored hashed."""

from __future__ import annotations

from datetime import datetime

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from billable.scopes import SCOPES, UnknownScope, normalize_scopes


class ApiKey(models.Model):
    """One bearer key of the REST API.

    Only the SHA-256 of the key is stored (``key_hash``); the key itself is shown once, when it
    is created (``billable.services.api_keys.create_api_key`` or the admin). ``prefix`` — the
    key's first characters — tells keys apart in lists and logs without revealing them. A key
    works while it is not revoked and not past ``expires_at``.
    """

    name = models.CharField(max_length=100, help_text="Who or what uses this key.")
    prefix = models.CharField(max_length=16, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list, blank=True,
                              help_text="What the key may do; 'admin' is everything.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True,
                                      help_text="Optional: the key stops working then.")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "billable_api_keys"
        ordering = ["-created_at", "-id"]
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def clean(self) -> None:
        """At least one known scope (a key without any could do nothing)."""
        try:
            self.scopes = normalize_scopes(self.scopes or [])
        except UnknownScope as exc:
            raise ValidationError({"scopes": str(exc)}) from exc
        if not self.scopes:
            raise ValidationError({"scopes": "Choose at least one scope ('admin' for all)."})

    def is_active(self, now: datetime | None = None) -> bool:
        """Not revoked and not expired (at ``now``, default: the current time)."""
        moment = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > moment)


__all__ = ["SCOPES", "ApiKey"]
