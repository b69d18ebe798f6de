"""Run the web view in a background thread (beside the capture loop) or in the foreground.

Werkzeug's threaded WSGI server (Flask's own): a thread per request, which is plenty
for the few people who look at one microscope. The socket is bound here so that a
port in use is a one-line :class:`~edge_app.errors.CytoEdgeError`, not an exit.
"""

from __future__ import annotations

import signal
import socket
import threading
from typing import Any

from edge_app.errors import CytoEdgeError
from edge_app.web.app import WebConfig, create_app
from edge_app.web.security import is_local


def _quiet_handler() -> type:
    from werkzeug.serving import WSGIRequestHandler

    class QuietHandler(WSGIRequestHandler):
        """No line per request (the live page asks several times a second); errors are still logged."""

        def version_string(self) -> str:  # no Werkzeug/Python versions in the Server header
            return "CytoEdge"

        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    return QuietHandler


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
        sock.listen(64)
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

    def __init__(self, cfg: WebConfig, host: str = "127.0.0.1", port: int = 8080) -> None:
        from werkzeug.serving import make_server

        self.cfg, self.host = cfg, host
        sock = _bind(host, port)
        try:
            self._srv = make_server(host, port, create_app(cfg), threaded=True, request_handler=_quiet_handler(),
                                    fd=sock.fileno())
        finally:
            sock.close()  # the server holds its own duplicate of the socket
        self.port = int(self._srv.port)
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
        self._thread = threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="edge-app-web", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._srv.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._srv.server_close()

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
