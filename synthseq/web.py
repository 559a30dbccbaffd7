"""Local web pages: a registry (name -> app factory) and the one way every page is served.

Pages (the reader-study reading page, the outcome page, ...) register with :func:`register_page`; each is a Flask
app built by its own factory. Serving is shared so every page gets the same safety: loopback by default, a port
checked before anything binds, a busy port or bad address named in one line (:class:`~synthseq.errors.InputError`),
and an access log that never prints secrets (``redact``).

>>> sorted(p.name for p in list_pages())  # doctest: +SKIP
['outcome', 'reader-study']
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, InputError

DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Page:
    """A registered page: ``create_app(**kwargs) -> flask.Flask``, and the command that serves it."""

    name: str
    title: str
    create_app: Callable[..., Any]
    cli: str = ""


_PAGES: dict[str, Page] = {}


def register_page(name: str, title: str, create_app: Callable[..., Any], cli: str = "") -> Page:
    """Register a page under ``name`` (a second registration of the same factory is a no-op)."""
    page = Page(name, title, create_app, cli)
    old = _PAGES.get(name)
    if old is not None and old.create_app is not create_app:
        raise ValueError(f"web page {name!r} is already registered by {old.create_app.__qualname__}")
    _PAGES[name] = page
    return page


def list_pages() -> list[Page]:
    """Every registered page (importing :mod:`synthseq.reader_study.app` / :mod:`synthseq.downstream.web.app`
    registers the built-in ones)."""
    return sorted(_PAGES.values(), key=lambda p: p.name)


def get_page(name: str) -> Page:
    if name not in _PAGES:
        raise ConfigError(f"web page: unknown {name!r} (known: {', '.join(sorted(_PAGES)) or 'none'})")
    return _PAGES[name]


# ------------------------------------------------------------------------------------------------ serving
def check_port(port: object) -> int:
    """``port`` if it is an integer in 0..65535 (0 = any free port), else :class:`ConfigError`."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"--port: expected an integer from 0 to 65535, got {port!r}")
    return port


def check_can_listen(host: str, port: int) -> None:
    """InputError naming ``host:port`` if a server socket cannot be bound there (in use, no such address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InputError(f"{host}:{port}: cannot listen ({exc.strerror or exc})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is no conflict
        try:
            sock.bind(address)
        except OSError as exc:
            raise InputError(f"{host}:{port}: cannot listen ({exc.strerror or exc})") from None


def make_server(app: Any, host: str = DEFAULT_HOST, port: int = 0, request_handler: Any = None):
    """A threaded WSGI server for ``app``, bound but not yet serving (``port=0`` picks a free port)."""
    from werkzeug.serving import make_server as _make_server

    check_port(port)
    check_can_listen(host, port)  # werkzeug itself would print a paragraph and sys.exit(1)
    kw = {"request_handler": request_handler} if request_handler is not None else {}
    try:
        return _make_server(host, port, app, threaded=True, **kw)
    except (OSError, OverflowError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InputError(f"{host}:{port}: cannot listen ({reason})") from exc
    except SystemExit:  # werkzeug's own "port in use" exit, if the port was taken after the check
        raise InputError(f"{host}:{port}: cannot listen (address already in use)") from None


def base_url(server: Any) -> str:
    host = f"[{server.host}]" if ":" in server.host else server.host
    return f"http://{host}:{server.port}"


def serve_forever(server: Any, ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted; ``ready(base_url)`` is called once the socket listens."""
    if ready is not None:
        ready(base_url(server))
    try:
        server.serve_forever()
    finally:
        server.server_close()


class ServerThread:
    """A server run from a background thread (tests, notebooks): ``with ServerThread(server) as s: s.url``."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.url = base_url(server)
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


__all__ = ["DEFAULT_HOST", "Page", "ServerThread", "base_url", "check_can_listen", "check_port", "get_page",
           "list_pages", "make_server", "register_page", "serve_forever"]
