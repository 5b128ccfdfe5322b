"""URLconf of bot_kit: ``path("", include("bot_kit.urls"))`` serves ``telegram/webhook/``."""

from django.urls import path

from bot_kit.views import telegram_webhook

urlpatterns = [path("telegram/webhook/", telegram_webhook, name="bot_kit_webhook")]

__all__ = ["urlpatterns"]
