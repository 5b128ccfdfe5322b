"""Django app config of bot_kit (its models hold the purchase-flow state)."""

from django.apps import AppConfig


class BotKitConfig(AppConfig):
    """Registers ``bot_kit`` as a Django app with the label ``bot_kit``."""

    name = "bot_kit"
    label = "bot_kit"
    verbose_name = "Billing bot kit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from bot_kit import checks, health, metrics  # app registry: ready() runs once it is

        health.register()
        checks.register_all()
        metrics.register()
        from bot_kit import dashboard  # app registry: the dashboard's figures (ready() only)
        dashboard.register()
        # app registry: ready() runs once it is; the Stars price cap runs in Offer.clean
        from bot_kit import billing
        from bot_kit.payments.subscriptions import validate_subscription_offer

        billing.register_offer_validator(validate_subscription_offer)
