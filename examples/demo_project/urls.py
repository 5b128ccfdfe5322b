"""URLs of the demo project: the admin, the billable REST API (with its readiness endpoint
``api/v1/billing/health``) and the Telegram webhook (``telegram/webhook/``, drained by
``manage.py runbot --workers-only``)."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/billing/", include("billable.urls")),
    path("", include("bot_kit.urls")),
]
