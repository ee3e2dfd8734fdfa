"""What `gpt2-desktop serve` refuses before a request reaches its routes, and the limits on its connections.

- A web page must not be able to drive the server. A request must address the server by a name of its own
  (DNS rebinding: a page of attacker.example whose name is made to point at 127.0.0.1 still sends
  `Host: attacker.example`); a POST must be JSON (a page may send text/plain, a form or no type at all
  without CORS's preflight, never application/json) and come from no web page but those `--allow-origin`
  names. `Guard` is that ASGI middleware; the answers are in OpenAI's error shape.
- Connections are bounded: at most `max_connections` at once (fewer where the open-file limit is low), the
  one that has waited longest for its request's headers closed to make room for a new one, and a request's
  headers due within `timeout` seconds of the connection opening or of the previous answer
  (`connection_class`, uvicorn's HTTP/1.1 protocol with those two limits added).
- Whatever a client can make the server log (bad HTTP, a body it abandoned, accepts failing), `LogBudget`
  lets through at most a few lines a minute, so no client can fill the disk.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from engine.tooling.openai_api import ApiError, shown

WILDCARDS = ("0.0.0.0", "::", "")  # listening on every address of this computer
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def host_name(header: str) -> str:
    """The name in a Host header, lower-case and without its port: `[::1]:8080` → `::1`."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    if value.count(":") == 1:  # name:port (an IPv6 address without brackets has more colons)
        return value.partition(":")[0]
    return value


class HostRule:
    """Which names a request may address the server by: localhost and the loopback addresses, the `--host`
    it listens on, the names `--allow-host` gives (`*`: any), and, when it listens on every address, any
    IP address and this computer's own name. An IP address is never a DNS-rebinding name, but a page can
    only be served under a name."""

    def __init__(self, host: str, allow_hosts: tuple[str, ...] = ()):
        self.everywhere = host in WILDCARDS
        self.any = "*" in allow_hosts
        names = {*LOOPBACK_NAMES, host_name(host), *(host_name(h) for h in allow_hosts)}
        if self.everywhere:
            names.add(socket.gethostname().lower())
        self.names = names - {""}

    def allows(self, name: str) -> bool:
        if self.any or name in self.names:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False
        return address.is_loopback or self.everywhere


class Guard:
    """ASGI middleware: a request addressed to another name is refused (403), and so is a POST that is not
    JSON (415) or that comes from another origin than this server's own or one `allow_origins` names
    (403). GET answers (the model list, /health) are left to CORS, which keeps other pages from reading them."""

    def __init__(self, app, hosts: HostRule, allow_origins: tuple[str, ...] = ()):
        self.app = app
        self.hosts = hosts
        self.origins = set(allow_origins)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        refusal = self.refusal(scope["method"], Headers(scope=scope))
        if refusal is None:
            return await self.app(scope, receive, send)
        # The body is left unread: the connection is closed after the answer.
        response = JSONResponse(refusal.body(), status_code=refusal.status, headers={"Connection": "close"})
        await response(scope, receive, send)

    def refusal(self, method: str, headers: Headers) -> ApiError | None:
        host = headers.get("host")
        if host is not None and not self.hosts.allows(host_name(host)):  # HTTP/1.0 may send none; browsers always do
            name = shown(host_name(host))[:100]
            return ApiError(403, f"This server answers only requests addressed to it by its own name or address; "
                                 f"this one was addressed to '{name}'. If that name should reach it, start the "
                                 f"server with --allow-host {name}.", code="host_not_allowed",
                            kind="permission_error")
        if method != "POST":
            return None
        origin = headers.get("origin")
        if origin is not None and origin.lower() != f"http://{host}".lower() and origin not in self.origins \
                and "*" not in self.origins:
            origin = shown(origin)[:200]
            return ApiError(403, f"Requests from the web page of {origin} are refused. To let pages from there "
                                 f"use this server, start it with --allow-origin {origin}.",
                            code="origin_not_allowed", kind="permission_error")
        kind = headers.get("content-type", "")
        if kind.partition(";")[0].strip().lower() != "application/json":
            return ApiError(415, f"The body of a POST must be JSON, sent with 'Content-Type: application/json' "
                                 f"(this one came as {shown(kind)[:100] or 'no type at all'}).",
                            code="unsupported_media_type")
        return None


def connection_limit(wanted: int) -> int:
    """`wanted`, or a quarter of the open-file limit where that is lower: the rest stays for the model's
    files, the connections being accepted and everything else the process opens."""
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return wanted
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(4, min(wanted, soft // 4))


def connection_class(max_connections: int, timeout: float):
    """uvicorn's HTTP/1.1 protocol with two limits of its own (uvicorn has neither: it times out only a
    connection idle after an answer, and accepts until descriptors run out):

    - at most `max_connections` open at once: past that, the one that has waited longest for its request's
      headers is closed to make room, or, when every one has a request under way, the newcomer is answered
      503 and closed;
    - a request's headers must arrive within `timeout` seconds of the connection opening or of the previous
      answer, else the connection is closed.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Connection(H11Protocol):
        refused = False
        waiting_since: float | None = None  # when it started waiting for a request's headers
        deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport) -> None:
            if len(self.connections) >= max_connections and not self._make_room():
                self.refused = True
                transport.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
                                b"connection: close\r\ncontent-length: 38\r\n\r\nThe server has too many connections.\r\n")
                transport.close()
                return
            super().connection_made(transport)
            self._wait_for_headers()

        def connection_lost(self, exc) -> None:
            if self.refused:
                return
            self._stop_waiting()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            super().data_received(data)
            if self.cycle is not cycle:  # a request's headers are in
                self._stop_waiting()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete):
                self._wait_for_headers()  # a pipelined request may already be under way instead

        def _make_room(self) -> bool:
            idle = [c for c in self.connections if getattr(c, "waiting_since", None) is not None]
            if not idle:
                return False
            oldest = min(idle, key=lambda c: c.waiting_since)
            oldest._give_up()
            self.connections.discard(oldest)  # now, not when its connection_lost comes
            return True

        def _wait_for_headers(self) -> None:
            self._stop_waiting()
            self.waiting_since = time.monotonic()
            self.deadline = self.loop.call_later(timeout, self._give_up)

        def _stop_waiting(self) -> None:
            self.waiting_since = None
            if self.deadline is not None:
                self.deadline.cancel()
                self.deadline = None

        def _give_up(self) -> None:
            self.deadline = None
            self.waiting_since = None
            if not self.transport.is_closing():
                self.transport.close()

    return Connection


class LogBudget(logging.Filter):
    """At most `lines` log records every `period` seconds, then one saying the rest are held back until the
    period is over. Shared by the loggers a client can make speak."""

    def __init__(self, lines: int = 20, period: float = 60.0):
        super().__init__()
        self.lines, self.period = lines, period
        self.started, self.count = -period, 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self.started >= self.period:
            self.started, self.count = now, 0
        self.count += 1
        if self.count <= self.lines:
            return True
        if self.count == self.lines + 1:
            record.msg, record.args, record.exc_info, record.exc_text = (
                f"(more messages like these are held back for up to {self.period:g} s)", None, None, None)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            return True
        return False
