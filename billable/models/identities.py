"""External identities (Telegram ids, emails, CRM ids …) linked to billing accounts."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from asgiref.sync import sync_to_async
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone


class ExternalIdentity(models.Model):
    """Links ``(provider, external_id)`` to one billing user."""

    provider = models.CharField(max_length=50, default="default")
    external_id = models.CharField(max_length=255)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True,
                             blank=True, related_name="billable_external_identities")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "billable_external_identities"
        ordering = ["created_at", "id"]
        verbose_name_plural = "external identities"
        constraints = [
            models.UniqueConstraint(fields=["provider", "external_id"],
                                    name="billable_identity_unique"),
        ]
        indexes = [models.Index(fields=["user", "provider"], name="billable_identity_user_idx")]

    def __str__(self) -> str:
        return f"{self.provider}:{self.external_id}"

    @classmethod
    def get_user_by_identity(cls, external_id: Any, provider: str = "default") -> Any:
        """The user linked to ``(provider, external_id)``, or ``None``."""
        if external_id is None or str(external_id).strip() == "":
            return None
        if not isinstance(provider, str) or "\x00" in provider or "\x00" in str(external_id):
            return None  # no identity can hold these (and PostgreSQL refuses NUL in a query)
        identity = (
            cls.objects.select_related("user")
            .filter(provider=provider, external_id=str(external_id).strip())
            .first()
        )
        return identity.user if identity else None

    @classmethod
    async def aget_user_by_identity(cls, external_id: Any, provider: str = "default") -> Any:
        return await sync_to_async(cls.get_user_by_identity)(external_id, provider)

    @classmethod
    def get_external_id_for_user(cls, user: Any, provider: str = "default") -> str | None:
        """The oldest external id of ``user`` for ``provider`` (deterministic), or ``None``."""
        user_id = getattr(user, "pk", user)
        if user_id is None or isinstance(user_id, (bool, float)) or not isinstance(provider, str):
            return None
        try:  # a value the user key cannot hold names nobody (and must not reach the database)
            user_id = get_user_model()._meta.pk.to_python(user_id)  # type: ignore[union-attr]
        except (ValidationError, TypeError, ValueError):
            return None
        if "\x00" in provider or (isinstance(user_id, int) and not 0 < user_id < 2**63):
            return None
        return (
            cls.objects.filter(user_id=user_id, provider=provider)
            .order_by("created_at", "id")
            .values_list("external_id", flat=True)
            .first()
        )

    @classmethod
    async def aget_external_id_for_user(cls, user: Any, provider: str = "default") -> str | None:
        return await sync_to_async(cls.get_external_id_for_user)(user, provider)


#: Identity metadata keys the display name is built from (``bot_kit`` stores the Telegram
#: profile there; ``POST /identify`` merges its ``profile`` there).
DISPLAY_FIELDS = ("username", "first_name", "last_name")


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def customer_display_name(user: Any) -> str:
    """How support sees an account: ``"Alice Smith (@alice)"``, ``"@alice"``, ``"Alice"``.

    Built from the oldest identity whose metadata has a profile (``username``, ``first_name``,
    ``last_name``; Telegram identities first), then the user model's own names. Without any
    name the login name is shown, unless it is one the identity service generated
    (``billable_<provider>_<id>``): then ``provider:external_id`` of the oldest identity.
    Uses prefetched identities when present (no query per row).
    """
    if user is None:
        return "—"
    identities = sorted(
        user.billable_external_identities.all(),
        key=lambda i: (i.provider != "telegram", i.created_at, i.pk or 0))
    handle = name = ""
    for identity in identities:
        meta = identity.metadata if isinstance(identity.metadata, dict) else {}
        handle = handle or _text(meta.get("username")).lstrip("@")
        name = name or " ".join(
            part for part in (_text(meta.get("first_name")), _text(meta.get("last_name")))
            if part)
    if not name and hasattr(user, "get_full_name"):
        name = _text(user.get_full_name())
    if name and handle:
        return f"{name} (@{handle})"
    if name or handle:
        return name or f"@{handle}"
    get_username = getattr(user, "get_username", None)
    login = str(get_username() if callable(get_username) else user.pk)
    generated = any(login.startswith(f"billable_{i.provider}_") for i in identities)
    if identities and (generated or not login):
        return str(identities[0])
    return login


def _account_model() -> Any:
    """The user model, importing its app's models first if billable is listed before it."""
    app_label = str(settings.AUTH_USER_MODEL).split(".")[0]
    try:
        config = apps.get_app_config(app_label)
    except LookupError:
        return get_user_model()
    if config.models_module is None:
        import_module(f"{config.name}.models")
    return get_user_model()


class Customer(_account_model()):  # type: ignore[misc]
    """Admin-facing proxy of the billing account model (reports, merges)."""

    class Meta:
        proxy = True
        verbose_name = "customer"
        verbose_name_plural = "customers"

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        """See :func:`customer_display_name`."""
        return customer_display_name(self)
