"""``billable_refunds`` and ``billable_reconcile_stars``."""

__all__: list[str] = []
