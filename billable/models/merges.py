"""The audit record of customer merges."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class CustomerMerge(models.Model):
    """One merge of a source account into a target account, and what it moved.

    Ledger rows change owner during a merge (the one sanctioned exception to their
    immutability); this row records when and why they did. The account references survive the
    later deletion of an (emptied) source account as ``NULL``, the ids stay in ``source_id`` and
    ``target_id``.
    """

    target_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                    null=True, blank=True, related_name="billable_merges_into")
    source_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL,
                                    null=True, blank=True, related_name="billable_merges_from")
    target_id_value = models.CharField(max_length=64)
    source_id_value = models.CharField(max_length=64)
    stats = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "billable_customer_merges"
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"Merge {self.source_id_value} → {self.target_id_value}"
