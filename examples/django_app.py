"""A one-file Django project (settings in code, one view) served as WSGI by asgiserve.

    asgiserve examples.django_app:application
"""
from __future__ import annotations

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="example-only-not-secret",
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()

from django.http import HttpRequest, HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402


def hello(request: HttpRequest, name: str = "world") -> HttpResponse:
    if request.method == "POST":
        return JsonResponse(
            {
                "method": request.method,
                "path": request.path,
                "script_name": request.META.get("SCRIPT_NAME", ""),
                "body_length": len(request.body),
                "fields": {k: request.POST.getlist(k) for k in request.POST},
            }
        )
    return HttpResponse(f"Hello, {name}! (Django {django.get_version()})", content_type="text/plain")


urlpatterns = [path("", hello), path("hello/<str:name>", hello)]

application = get_wsgi_application()
