"""URLconf mounting the API object directly (``api.urls``), the second style the docs show."""

from django.urls import path

from billable.urls import api

urlpatterns = [
    path("api/v1/billing/", api.urls),
]
