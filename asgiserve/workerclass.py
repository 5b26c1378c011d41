"""gunicorn's ``-k/--worker-class``, mapped onto asgiserve's own options.

asgiserve has one kind of worker: an event loop serving ASGI natively and WSGI through a
thread pool. Each gunicorn worker class a deployment names is therefore a choice of interface,
thread count and parser, and nothing else:

  sync       WSGI, 1 thread per worker: gunicorn's sync worker serves one request at a time,
             and apps deployed on it may not be thread-safe. With --threads N (N != the
             default) gunicorn switches sync to gthread; so does this mapping.
  gthread    WSGI, --threads threads per worker.
  asgi, uvicorn.workers.UvicornWorker, uvicorn_worker.UvicornWorker
             ASGI, served natively (the interface stays --interface; auto detects ASGI 3/2).
  uvicorn.workers.UvicornH11Worker, uvicorn_worker.UvicornH11Worker
             the same with the h11 parser.

gevent and eventlet monkey-patch the standard library to make blocking code cooperative; there is
no such thing here, so they are refused with what to use instead (as is tornado's worker).
gunicorn's own spellings are accepted too: ``gunicorn.workers.sync.SyncWorker``,
``egg:gunicorn#gthread``. Pure functions; Config calls ``resolve`` and the CLI logs ``describe``.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

from .errors import ConfigError

ASGI_NATIVE = "asgi"


class Mapping(NamedTuple):
    kind: str  # "sync" | "gthread" | "asgi"
    http: Optional[str]  # a parser the class implies, or None (keep --http)


CLASSES: dict[str, Mapping] = {
    "sync": Mapping("sync", None),
    "gthread": Mapping("gthread", None),
    "asgi": Mapping(ASGI_NATIVE, None),
    "gunicorn.workers.sync.syncworker": Mapping("sync", None),
    "gunicorn.workers.gthread.threadworker": Mapping("gthread", None),
    "gunicorn.workers.gasgi.asgiworker": Mapping(ASGI_NATIVE, None),
    "uvicorn.workers.uvicornworker": Mapping(ASGI_NATIVE, None),
    "uvicorn_worker.uvicornworker": Mapping(ASGI_NATIVE, None),
    "uvicorn.workers.uvicornh11worker": Mapping(ASGI_NATIVE, "h11"),
    "uvicorn_worker.uvicornh11worker": Mapping(ASGI_NATIVE, "h11"),
}

_THREADS_INSTEAD = (
    "serve the WSGI app with threads instead (-k gthread --threads 64: blocking calls each hold a "
    "thread, not the loop), or make the slow paths async (ASGI)"
)
REFUSED: dict[str, str] = {
    "gevent": "asgiserve does not monkey-patch with gevent; " + _THREADS_INSTEAD,
    "gevent_wsgi": "asgiserve does not monkey-patch with gevent; " + _THREADS_INSTEAD,
    "gevent_pywsgi": "asgiserve does not monkey-patch with gevent; " + _THREADS_INSTEAD,
    "eventlet": "asgiserve does not monkey-patch with eventlet (which gunicorn itself dropped); "
    + _THREADS_INSTEAD,
    "tornado": "asgiserve does not run Tornado's IOLoop; serve a Tornado WSGI app as WSGI (-k gthread), "
    "or run Tornado's own server",
}
for _name, _dotted in (("gevent", "gunicorn.workers.ggevent.geventworker"),
                       ("gevent_pywsgi", "gunicorn.workers.ggevent.geventpywsgiworker"),
                       ("eventlet", "gunicorn.workers.geventlet.eventletworker"),
                       ("tornado", "gunicorn.workers.gtornado.tornadoworker")):
    REFUSED[_dotted] = REFUSED[_name]

ACCEPTED = "sync, gthread, asgi, uvicorn.workers.UvicornWorker, uvicorn_worker.UvicornWorker, " \
    "uvicorn.workers.UvicornH11Worker"


def _key(worker_class: str) -> str:
    name = worker_class.strip()
    if name.lower().startswith("egg:gunicorn#"):
        name = name[len("egg:gunicorn#"):]
    return name.lower()


def lookup(worker_class: str) -> Mapping:
    """The mapping for a -k value; ConfigError (exit 2, one line) for refused or unknown ones."""
    key = _key(worker_class)
    if key in CLASSES:
        return CLASSES[key]
    if key in REFUSED:
        raise ConfigError(f"-k {worker_class}: {REFUSED[key]}")
    raise ConfigError(
        f"-k {worker_class}: not a worker class asgiserve knows; it takes {ACCEPTED} (a UvicornWorker "
        "subclass's CONFIG_KWARGS become asgiserve flags: --loop, --http, --lifespan...)"
    )


class Resolved(NamedTuple):
    interface: str
    threads: int
    http: str


def resolve(worker_class: str, interface: str, threads: int, http: str, default_threads: int) -> Resolved:
    """The interface, thread count and parser -k implies, given what the other options say."""
    mapping = lookup(worker_class)
    if mapping.kind in ("sync", "gthread"):
        if interface not in ("auto", "wsgi"):
            raise ConfigError(f"-k {worker_class} serves WSGI apps, but --interface is {interface}")
        interface = "wsgi"
        if mapping.kind == "sync" and threads == default_threads:
            threads = 1
    if mapping.http is not None:
        if http not in ("auto", mapping.http):
            raise ConfigError(f"-k {worker_class} means the {mapping.http} parser, but --http is {http}")
        http = mapping.http
    return Resolved(interface, threads, http)


def describe(worker_class: str, threads: int, http: str) -> str:
    """The one log line saying what -k became (for a config that resolve() already applied)."""
    mapping = lookup(worker_class)
    if mapping.kind == "sync":
        if threads == 1:
            return (f"-k {worker_class}: serving the app as WSGI with 1 thread per worker, one request at a "
                    "time as gunicorn's sync worker does (--threads N for more).")
        return (f"-k {worker_class} with --threads {threads}: serving the app as WSGI with {threads} threads per "
                "worker (gunicorn switches to gthread here too).")
    if mapping.kind == "gthread":
        return f"-k {worker_class}: serving the app as WSGI with {threads} threads per worker (--threads)."
    parser = ", h11 parser" if mapping.http else ""
    return (f"-k {worker_class}: serving the app on asgiserve's own event loop as uvicorn's worker would "
            f"(ASGI 3 or 2, detected{parser}); uvicorn is not needed.")
