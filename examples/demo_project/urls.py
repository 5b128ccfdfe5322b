"""URLs of the demo project: the admin and the billable REST API."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/billing/", include("billable.urls")),
]
