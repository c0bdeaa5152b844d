"""A limit on request bodies that holds however the body arrives: a pure ASGI middleware that counts the bytes of the
`http.request` messages as it receives them, and at the first byte past the limit answers 413 and reads no more.

A Content-Length header can be checked before reading (the server's guard does); a chunked body
(Transfer-Encoding: chunked) says nothing about its size until it ends. So the body is read here, message by message,
before the app sees any of it: a body within the limit is handed on whole; one over it never reaches the app, and
the rest of it is never read (the server closes the connection after the answer; uvicorn stops reading a socket
whose body nobody receives once it holds 64 KiB of it).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """Refuse (413, a one-line JSON reason) any HTTP request whose body is over `limit` bytes, having read at most the
    message that crossed the limit. `most_read_refused`: the most bytes read of a refused body (what tests check)."""

    def __init__(self, app: App, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.most_read_refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received: list[Message] = []
        size = 0
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                break  # the client went away: the app hears it as it would have
            size += len(message.get("body", b""))
            if size > self.limit:
                self.most_read_refused = max(self.most_read_refused, size)
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(received, receive), send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"error": f"request body over {self.limit} bytes"}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # the rest of the body is never read: this connection cannot carry another
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that gives back the messages already read, then whatever the server sends next (a disconnect)."""
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed
