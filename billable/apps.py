from django.apps import AppConfig


class BillableConfig(AppConfig):
    """Django app config: registers system checks when the app registry is ready."""

    name = "billable"
    verbose_name = "Billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from billable import checks  # noqa: F401  (registers the checks)
