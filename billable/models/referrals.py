"""Referrals: who brought whom, and whether the bonus was granted."""

from __future__ import annotations

from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone


class Referral(models.Model):
    """``referrer`` invited ``referee``; a user has at most one referrer and never themselves."""

    referrer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                 related_name="referrals_made")
    referee = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="referrals_received")
    bonus_granted = models.BooleanField(default=False)
    bonus_granted_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billable_referrals"
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["referrer", "referee"],
                                    name="billable_referral_unique_pair"),
            models.UniqueConstraint(fields=["referee"], name="billable_referral_one_referrer"),
            models.CheckConstraint(condition=~Q(referrer=F("referee")),
                                   name="billable_referral_not_self"),
        ]

    def __str__(self) -> str:
        mark = "✓" if self.bonus_granted else "✗"
        return f"Referral {self.referrer_id} → {self.referee_id} {mark}"

    def claim_bonus(self) -> bool:
        """Flip ``bonus_granted`` atomically; True only for the first caller."""
        now = timezone.now()
        with transaction.atomic():
            updated = Referral.objects.filter(pk=self.pk, bonus_granted=False).update(
                bonus_granted=True, bonus_granted_at=now
            )
        if updated:
            self.bonus_granted = True
            self.bonus_granted_at = now
            return True
        return False
