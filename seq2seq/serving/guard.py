"""The guard in front of seq2seq-serve's app (an ASGI middleware): what it checks before the app sees a request.

- Every request: its ``Host`` header must name this server (the address it was reached on, the host it was
  started with, localhost's names when that is a loopback address, or one of ``allowed_hosts``); any other
  gets 421. A web page on another site can make a browser send requests here (DNS rebinding: its own name,
  made to point at 127.0.0.1), but not with this server's address as the Host.
- ``POST /translate``: ``Content-Type: application/json`` or 415 (a page on any site can make a browser
  send a "simple" POST, but not a JSON one without asking first); the body is read here, at most
  ``body_limit`` bytes (413, from ``Content-Length`` before reading a byte, or while counting what arrives),
  and only then handed to the app to parse. The request has ``request_timeout_s`` in all: a body not received
  by then gets 408, an answer not ready 504. A client that goes away cancels its request: work still
  queued is dropped.

Every refusal is JSON ``{"error": ...}`` like the app's, and closes the connection (the rest of a refused
body is not read).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from typing import Any

from seq2seq.serving.settings import ServeConfig, split_host

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
LOCALHOST = frozenset({"localhost", "127.0.0.1", "::1"})
UNSPECIFIED = frozenset({"0.0.0.0", "::", ""})  # every interface: not an address a client can name
HTTP_PORT = 80  # a Host header without a port


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


class Guard:
    """ASGI middleware: the Host check on every request; the content type, body size, time limit and
    cancellation on disconnect of ``POST /translate``."""

    def __init__(self, app: Any, cfg: ServeConfig) -> None:
        self.app = app
        self.cfg = cfg
        self.any_host = "*" in cfg.allowed_hosts
        self.allowed = [split_host(h) for h in cfg.allowed_hosts if h != "*"]

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self.host_problem(scope, headers.get("host"))
        if problem:
            await refuse(send, 421, problem)
        elif scope["path"] == "/translate" and scope["method"] == "POST":
            await self.translate(scope, receive, send, headers)
        else:
            await self.app(scope, receive, send)

    def host_problem(self, scope: Scope, host: str | None) -> str | None:
        """Why ``host`` (the Host header) does not name this server; None when it does."""
        if self.any_host:
            return None
        if not host:
            return "no Host header; send the server's address as Host (HTTP/1.1 clients do)"
        server_host, server_port = scope.get("server") or (self.cfg.host, self.cfg.port)
        own = {self.cfg.host.lower(), str(server_host).lower()} - UNSPECIFIED
        if any(is_loopback(h) for h in own):
            own |= LOCALHOST
        try:
            name, port = split_host(host)
        except ValueError:
            return f"Host {host!r} is not a host name"
        if name in own and (port or HTTP_PORT) == server_port:
            return None
        if any(name == n and p in (None, port) for n, p in self.allowed):
            return None
        return (f"Host {host!r} is not this server's address ({str(server_host)}:{server_port}); behind a "
                "reverse proxy, add the name clients use to the server's allowed_hosts")

    async def translate(self, scope: Scope, receive: Any, send: Any, headers: dict[str, str]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.request_timeout_s
        kind = headers.get("content-type")
        if kind is None or kind.split(";")[0].strip().lower() != "application/json":
            await refuse(send, 415, f"Content-Type must be application/json, got {kind or 'none'}; send a JSON "
                                    "object with the header Content-Type: application/json")
            return
        limit, length = self.cfg.body_limit, headers.get("content-length")
        if length is not None and not length.strip().isdigit():
            await refuse(send, 400, f"Content-Length {length!r} is not a number of bytes")
            return
        if length is not None and int(length) > limit:
            await refuse(send, 413, too_large(limit))
            return
        try:
            body = await asyncio.wait_for(read_body(receive, limit), deadline - loop.time())
        except _BodyTooLarge:
            await refuse(send, 413, too_large(limit))
            return
        except asyncio.TimeoutError:
            await refuse(send, 408, f"the request body did not arrive within the server's request_timeout_s="
                                    f"{self.cfg.request_timeout_s:g} s")
            return
        except _ClientGone:
            return
        await self.answer(scope, body, receive, send, deadline)

    async def answer(self, scope: Scope, body: bytes, receive: Any, send: Any, deadline: float) -> None:
        """The app's answer to a request whose ``body`` has been read; cancelled when the client goes away,
        504 when ``deadline`` (the loop's clock) passes first."""
        loop = asyncio.get_running_loop()
        gone = asyncio.ensure_future(wait_disconnect(receive))
        pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
        started = False

        async def app_receive() -> Message:
            if pending:
                return pending.pop()
            await asyncio.shield(gone)  # the one reader of the client's messages is ``gone``
            return {"type": "http.disconnect"}

        async def app_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        app = asyncio.ensure_future(self.app(scope, app_receive, app_send))
        try:
            done, _ = await asyncio.wait({app, gone}, timeout=max(0.0, deadline - loop.time()),
                                         return_when=asyncio.FIRST_COMPLETED)
            if app in done or started:  # answered, or answering: let it finish
                await app
                return
            app.cancel()
            await asyncio.gather(app, return_exceptions=True)
            if gone in done:
                log.info("client went away: its request is cancelled")
            else:
                log.warning("request not answered within request_timeout_s=%g s: cancelled", self.cfg.request_timeout_s)
                await refuse(send, 504, f"no answer within the server's request_timeout_s="
                                        f"{self.cfg.request_timeout_s:g} s (the server is busy); try again later, "
                                        "or send fewer sentences")
        finally:
            gone.cancel()
            app.cancel()


async def read_body(receive: Any, limit: int) -> bytes:
    """The whole request body, counted as it arrives: more than ``limit`` bytes raises _BodyTooLarge."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def wait_disconnect(receive: Any) -> None:
    """Returns when the client has gone away (or the server has answered)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def refuse(send: Any, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """A JSON error answer that closes the connection (the unread rest of a body is not read)."""
    body = json.dumps({"error": message}, ensure_ascii=False).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def too_large(limit: int) -> str:
    return (f"the request body is larger than the server's max_body_bytes={limit}; send fewer or shorter "
            "sentences")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
