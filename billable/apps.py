from django.apps import AppConfig


class BillableConfig(AppConfig):
    """Django app config: registers system checks and, with ``prometheus-client``, metrics."""

    name = "billable"
    verbose_name = "Billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from billable import (
            checks,  # noqa: F401  (registers the checks)
            metrics,
        )

        metrics.install()
