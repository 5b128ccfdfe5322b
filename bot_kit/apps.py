"""Django app config of bot_kit (its models hold the purchase-flow state)."""

from django.apps import AppConfig


class BotKitConfig(AppConfig):
    """Registers ``bot_kit`` as a Django app with the label ``bot_kit``."""

    name = "bot_kit"
    label = "bot_kit"
    verbose_name = "Billing bot kit"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from bot_kit import checks, health, metrics

        health.register()
        checks.register_all()
        metrics.register()
        from bot_kit import dashboard  # the revenue dashboard's subscription figures
        dashboard.register()
        from billable.models.catalog import OFFER_VALIDATORS
        from bot_kit.payments.subscriptions import validate_subscription_offer

        if validate_subscription_offer not in OFFER_VALIDATORS:  # the Stars price cap
            OFFER_VALIDATORS.append(validate_subscription_offer)
