"""Run the web view in a background thread (beside the capture loop) or in the foreground.

Served by waitress, a production WSGI server: a fixed pool of worker threads (however many
connections are open, no thread is made per connection), a cap on open connections (beyond
it new ones wait in the kernel's backlog), idle connections closed after a timeout, every
request's headers and body due within a deadline (a client that trickles bytes is
dropped), and limits on header and body size. The socket is bound here so that a port in
use is a one-line :class:`~edge_app.errors.CytoEdgeError`, not an exit.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from cytoedge.edge_app.errors import CytoEdgeError
from cytoedge.edge_app.web.app import WebConfig, create_app
from cytoedge.edge_app.web.security import is_local


@dataclass(frozen=True)
class ServerLimits:
    """What one client (or four hundred half-open connections) may cost the device."""

    threads: int = 8  # worker threads: requests served at once (a live-page frame request holds one <= 2 s)
    connection_limit: int = 256  # open connections (a descriptor each, no thread); beyond it new ones wait in the backlog
    idle_timeout_s: int = 30  # a connection with no request in progress and no traffic is closed after this
    request_timeout_s: float = 10.0  # a request's headers and body must arrive whole within this
    max_header_bytes: int = 16 * 1024  # larger request headers: 431 from waitress
    max_body_bytes: int = 64 * 1024  # larger bodies: 413 (the app's own limit is the same)
    sweep_interval_s: int = 2  # how often the timeouts are enforced


def _waitress_server(app: Any, sock: socket.socket, limits: ServerLimits) -> Any:
    """A waitress server on ``sock`` whose maintenance also drops requests that arrive too slowly."""
    from waitress import create_server
    from waitress.channel import HTTPChannel
    from waitress.parser import HTTPRequestParser

    class TimedParser(HTTPRequestParser):
        def __init__(self, adj: Any) -> None:
            super().__init__(adj)
            self.started = time.monotonic()

    class TimedChannel(HTTPChannel):
        parser_class = TimedParser

    srv = create_server(app, sockets=[sock], threads=limits.threads, connection_limit=limits.connection_limit,
                        channel_timeout=limits.idle_timeout_s, cleanup_interval=limits.sweep_interval_s,
                        max_request_header_size=limits.max_header_bytes,
                        max_request_body_size=limits.max_body_bytes, asyncore_use_poll=True, ident="CytoEdge",
                        expose_tracebacks=False)
    srv.channel_class = TimedChannel
    idle_sweep = srv.maintenance

    def maintenance(now: float) -> None:
        idle_sweep(now)
        late = time.monotonic() - limits.request_timeout_s
        for channel in list(srv.active_channels.values()):
            req = channel.request  # the request still arriving (None between requests)
            if req is not None and not req.completed and getattr(req, "started", late) < late:
                channel.will_close = True

    srv.maintenance = maintenance
    return srv


def _bind(host: str, port: int) -> socket.socket:
    if not 0 <= port <= 65535:
        raise CytoEdgeError(f"--port must be in 0-65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise CytoEdgeError(f"--host {host!r} is not an address of this machine ({exc.strerror}): "
                            "use 127.0.0.1, 0.0.0.0 or one of its IP addresses") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        raise CytoEdgeError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another --port, "
                            "or stop the program that uses it") from None
    return sock


def lan_address() -> str | None:
    """This machine's address on its network (for the printed URL when bound to 0.0.0.0); no packet is sent."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.254.254.254", 9))
            return s.getsockname()[0]
    except OSError:
        return None


class WebServer:
    """``with WebServer(cfg, host, port) as web: print(web.url)`` serves until the block ends."""

    def __init__(self, cfg: WebConfig, host: str = "127.0.0.1", port: int = 8080,
                 limits: ServerLimits | None = None, app: Any = None) -> None:
        """``app``: a WSGI app made from ``cfg`` with extra routes (a benchmark's); default ``create_app(cfg)``."""
        self.cfg, self.host, self.limits = cfg, host, limits or ServerLimits()
        sock = _bind(host, port)
        try:
            self._srv = _waitress_server(app or create_app(cfg), sock, self.limits)
        except BaseException:
            sock.close()
            raise
        self.port = int(sock.getsockname()[1])
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The address to open (with the token when one is needed)."""
        shown = self.host
        if self.host in ("0.0.0.0", "::", ""):
            shown = lan_address() or socket.gethostname()
        if ":" in shown:
            shown = f"[{shown}]"
        return f"http://{shown}:{self.port}/" + (f"?token={self.cfg.token}" if self.cfg.token else "")

    def describe(self) -> str:
        where = "this machine only" if is_local(self.host) else f"listening on {self.host}:{self.port}"
        return f"web view: {self.url} ({where})"

    def start(self) -> "WebServer":
        self._thread = threading.Thread(target=self._srv.run, name="edge-app-web", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket in the server's own loop, then stop its workers."""
        srv = self._srv

        def close_all() -> None:
            for dispatcher in list(srv._map.values()):
                if dispatcher is not srv and dispatcher is not srv.trigger:
                    dispatcher.handle_close()  # a connection: its pending task is dropped too
            srv.close()  # the listening socket and the wake-up pipe: the loop ends with an empty map

        if self._thread is not None:
            srv.trigger.pull_trigger(close_all)
            self._thread.join(timeout=5)
            self._thread = None
        else:
            close_all()
        srv.task_dispatcher.shutdown(timeout=5)

    def __enter__(self) -> "WebServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self) -> str:
        """Block until Ctrl-C or SIGTERM (main thread); returns which ended it."""
        done = threading.Event()
        why = {"by": ""}

        def on_signal(signum: int, _frame: object) -> None:
            why["by"] = signal.Signals(signum).name
            done.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not done.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return why["by"]
