"""Trial history: hashed identities that already claimed a trial (abuse protection)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from asgiref.sync import sync_to_async
from django.db import models
from django.utils import timezone

from billable.exceptions import InvalidInput
from billable.strings import safe_text

#: Keyword arguments of ``has_used_trial`` and the identity type each maps to.
IDENTITY_KWARGS = {"telegram_id": "telegram", "hh_id": "hh"}


#: The identity type recorded for the account itself (a trial is claimed once per account).
USER_IDENTITY_TYPE = "user"

class TrialHistory(models.Model):
    """One row per identity that claimed a trial; the unique pair is the race guard."""

    identity_type = models.CharField(max_length=50)
    identity_hash = models.CharField(max_length=64)
    trial_plan_name = models.CharField(max_length=100, blank=True, default="")
    used_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billable_trial_history"
        ordering = ["-used_at", "-id"]
        verbose_name_plural = "trial history"
        constraints = [
            models.UniqueConstraint(fields=["identity_type", "identity_hash"],
                                    name="billable_trial_identity_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.identity_type}:{self.identity_hash[:12]}… ({self.trial_plan_name})"

    @staticmethod
    def generate_identity_hash(value: Any) -> str:
        """SHA-256 hex of ``str(value).strip().lower()``; ``""`` for ``None``."""
        if value is None:
            return ""
        text = str(value).strip().lower()
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    @classmethod
    def identity_pairs(cls, identities: dict[str, Any] | None = None,
                       **kwargs: Any) -> list[tuple[str, str]]:
        """``(identity_type, identity_hash)`` pairs for the truthy identities given."""
        if identities is not None and not isinstance(identities, Mapping):
            raise InvalidInput("identities must be a mapping of identity type to value")
        merged: dict[str, Any] = dict(identities or {})
        for name, value in kwargs.items():
            merged[IDENTITY_KWARGS.get(name, name)] = value
        return [
            (safe_text(str(kind), field="identity type"), cls.generate_identity_hash(value))
            for kind, value in merged.items()
            if value not in (None, "") and str(value).strip()
        ]

    @classmethod
    def has_used_trial(cls, identities: dict[str, Any] | None = None, **kwargs: Any) -> bool:
        """True if any of the given identities already claimed a trial."""
        pairs = cls.identity_pairs(identities, **kwargs)
        if not pairs:
            return False
        query = models.Q()
        for kind, digest in pairs:
            query |= models.Q(identity_type=kind, identity_hash=digest)
        return cls.objects.filter(query).exists()

    @classmethod
    async def ahas_used_trial(cls, identities: dict[str, Any] | None = None,
                              **kwargs: Any) -> bool:
        return await sync_to_async(cls.has_used_trial)(identities, **kwargs)
