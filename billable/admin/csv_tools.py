"""CSV export/import plumbing shared by the Product and Offer admins.

The CSV logic itself lives in ``billable.services.catalog_io``; this mixin only turns it into an
admin action, two extra admin URLs (``export/`` and ``import/``) and an upload form.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import update_wrapper
from importlib import import_module
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path

from billable.services.catalog_io import ImportResult

#: Uploads above this size are refused before parsing (a catalog is small).
MAX_IMPORT_BYTES = 5 * 1024 * 1024
#: At most this many error lines become admin messages; the rest are counted.
MAX_ERROR_MESSAGES = 20


def _admin_reverse(viewname: str) -> str:
    """``reverse`` looked up on ``billable.admin`` at call time.

    The published 0.2 module exposed ``billable.admin.reverse`` and its tests patch that name to
    run the import view without admin URLs; resolving it late keeps such patches effective.
    """
    # A late lookup, not a dependency: the package imports this module.
    url: str = import_module("billable.admin").reverse(viewname)
    return url


class CsvAdminMixin:
    """Adds CSV export (action + changelist button) and import (upload form) to a ModelAdmin.

    Subclasses set ``csv_name`` (``"products"``), ``csv_headers`` and implement
    ``csv_export_text`` / ``csv_import_data`` by calling ``billable.services.catalog_io``.
    """

    csv_name: str = ""
    csv_headers: tuple[str, ...] = ()
    # Provided by ModelAdmin (annotations only, so nothing here shadows it).
    model: Any
    admin_site: Any
    message_user: Callable[..., None]
    has_view_permission: Callable[..., bool]
    has_add_permission: Callable[..., bool]
    has_change_permission: Callable[..., bool]

    def csv_export_text(self, queryset: QuerySet[Any]) -> str:
        raise NotImplementedError

    def csv_import_data(self, data: bytes, *, strict: bool) -> ImportResult:
        raise NotImplementedError

    def _csv_url_name(self, suffix: str) -> str:
        meta = self.model._meta
        return f"{meta.app_label}_{meta.model_name}_{suffix}"

    def csv_urls(self) -> list[Any]:
        """``export/`` (view permission) and ``import/`` (add + change permission)."""
        def guarded(view: Callable[..., HttpResponse],
                    allowed: Callable[[HttpRequest], bool]) -> Callable[..., HttpResponse]:
            def wrapper(request: HttpRequest) -> HttpResponse:
                if not allowed(request):
                    raise PermissionDenied
                return view(request)

            return self.admin_site.admin_view(update_wrapper(wrapper, view))

        def can_import(request: HttpRequest) -> bool:
            return self.has_add_permission(request) and self.has_change_permission(request)

        return [
            path("import/", guarded(self.csv_import_view, can_import),
                 name=self._csv_url_name("import")),
            path("export/", guarded(self.csv_export_view, self.has_view_permission),
                 name=self._csv_url_name("export")),
        ]

    def csv_response(self, queryset: QuerySet[Any]) -> HttpResponse:
        """The CSV download; an empty selection exports every row (published 0.2 behaviour)."""
        if not queryset.exists():
            queryset = self.model._default_manager.all()
        body = self.csv_export_text(queryset.order_by("pk"))
        response = HttpResponse(body, content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{self.csv_name}_export.csv"'
        return response

    def csv_export_view(self, request: HttpRequest) -> HttpResponse:
        """Export everything (the changelist's "Export CSV" button)."""
        return self.csv_response(self.model._default_manager.all())

    def csv_import_view(self, request: HttpRequest) -> HttpResponse:
        """GET: the upload form. POST with ``csv_file``: import, report, redirect."""
        upload = request.FILES.get("csv_file") if request.method == "POST" else None
        if upload is None:
            return self._csv_form(request)
        if upload.size is not None and upload.size > MAX_IMPORT_BYTES:
            result = ImportResult(header_error=True,
                                  errors=[f"The file is larger than {MAX_IMPORT_BYTES} bytes."])
        else:
            strict = request.POST.get("strict") in ("1", "on", "true")
            result = self.csv_import_data(upload.read(), strict=strict)
        self._report(request, result)
        target = "import" if result.header_error else "changelist"
        return HttpResponseRedirect(_admin_reverse(f"admin:{self._csv_url_name(target)}"))

    def _csv_form(self, request: HttpRequest) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": f"Import {self.csv_name} (CSV)",
            "opts": self.model._meta,
            "headers": self.csv_headers,
            "csv_name": self.csv_name,
            "max_bytes": MAX_IMPORT_BYTES,
        }
        return TemplateResponse(request, "admin/billable/csv_import_form.html", context)

    def _report(self, request: HttpRequest, result: ImportResult) -> None:
        for error in result.errors[:MAX_ERROR_MESSAGES]:
            self.message_user(request, error, level=messages.ERROR)
        if len(result.errors) > MAX_ERROR_MESSAGES:
            extra = len(result.errors) - MAX_ERROR_MESSAGES
            self.message_user(request, f"{extra} more errors.", level=messages.ERROR)
        if result.header_error:
            return
        level = messages.SUCCESS if result.applied else messages.ERROR
        self.message_user(request, result.summary(), level=level)
        self.message_user(request, result.progress_line(), level=messages.INFO)
        if result.links_overwritten:
            skus = ", ".join(result.links_overwritten)
            self.message_user(request, f"Links overwritten for offers: {skus}.",
                              level=messages.SUCCESS)
