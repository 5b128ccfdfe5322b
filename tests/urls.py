from django.contrib import admin
from django.urls import include, path

from billable.metrics.views import metrics_view

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/billing/", include("billable.urls")),
    path("metrics", metrics_view),
]
