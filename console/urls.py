from __future__ import annotations

from collections.abc import Callable
from functools import wraps

import django_rq.urls
from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.urls import URLPattern, include, path, reverse
from django.views.generic import RedirectView


def superusers_only(view: Callable) -> Callable:
    """The RQ dashboard can empty queues and requeue, stop or delete any job, and django-rq lets any
    staff user in: here only superusers (others get 403; anonymous visitors, the login page)."""

    @wraps(view)
    def guarded(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path(), reverse("admin:login"))
        if not (request.user.is_active and request.user.is_superuser):
            raise PermissionDenied("The queue dashboard is for superusers.")
        return view(request, *args, **kwargs)

    return guarded


rq_dashboard = [
    URLPattern(p.pattern, superusers_only(p.callback), p.default_args, p.name)
    for p in django_rq.urls.urlpatterns
    if isinstance(p, URLPattern)
]

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/rq/", include((rq_dashboard, django_rq.urls.app_name))),
    path("admin/", admin.site.urls),
    path("slack/", include("bots.slack.urls")),
    path("", include("console.conversations.urls")),
]
