"""A URLconf with the kit's webhook view next to the API (the one-uvicorn setup)."""

from django.urls import include, path

urlpatterns = [
    path("api/v1/billing/", include("billable.urls")),
    path("", include("bot_kit.urls")),
]
