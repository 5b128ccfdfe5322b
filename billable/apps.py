from django.apps import AppConfig


class BillableConfig(AppConfig):
    """Django app config: registers system checks, event logs and, with ``prometheus-client``,
    metrics."""

    name = "billable"
    verbose_name = "Billing"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # reason: these import the models, so they run once the app registry is ready
        import billable.checks  # noqa: F401  (registers the checks)
        from billable import logs, metrics
        from billable.events import outbox as events_outbox

        logs.connect_event_logs()
        events_outbox.connect()
        metrics.install()
        # reason: the growth workflows import the models (app registry ready here)
        from billable.growth import receivers as growth_receivers

        growth_receivers.connect()
