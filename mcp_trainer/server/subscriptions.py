"""Subscriptions to trainer:// resources: a client is told when a task, its log, the queue, a model or a
pipeline it watches changes, on both protocol revisions the SDK speaks.

- 2025-11-25: `resources/subscribe` and `resources/unsubscribe`. MCPServer has no handlers for them (nor
  advertises `resources.subscribe`): these are added on its low-level server, which then advertises it.
  Updates go out as `notifications/resources/updated` on the session's own channel; a session's
  subscriptions end with it.
- 2026-07-28: `subscriptions/listen`, whose response is the stream of updates. The SDK's `ListenHandler`
  serves the stream from the server's `SubscriptionBus`; it is wrapped here so that the URIs a stream
  asks for are watched while it is open, and a URI that cannot be watched is refused before the stream
  is acknowledged.

One `Watcher` per running service (one per server lifespan) polls, every `WATCH_INTERVAL_S`, the digest
(resources.digest) of each URI some client watches, and nothing else; a URI whose digest differs from
the last is announced to the clients that watch it. So a URI is announced at most once per interval (4
times a second), however often it changes in between, and a task's ending is always announced (its
status changes). The watcher stops with the lifespan.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.session import ServerSession
from mcp.server.subscriptions import ListenHandler, ResourceUpdated, SubscriptionBus
from mcp.shared.exceptions import MCPError

from mcp_trainer.server import resources
from mcp_trainer.service.training import TrainingService

__all__ = ["WATCH_INTERVAL_S", "Subscriptions", "Watcher"]

log = logging.getLogger(__name__)

WATCH_INTERVAL_S = 0.25
_SEND_TIMEOUT_S = 5.0  # a client that does not read its notifications holds the others back no longer
_GONE = ("gone",)  # the digest of a resource that no longer exists (a task file removed by maintenance)

Ctx = ServerRequestContext[TrainingService, Any]


@dataclass
class _Subscriber:
    """A 2025-11-25 session's subscriptions, and the session to notify."""

    session: ServerSession
    uris: set[str] = field(default_factory=set)


class Watcher:
    """The URIs the clients of one service watch, their last digests, and who to tell of a change."""

    def __init__(self, service: TrainingService, bus: SubscriptionBus, interval_s: float) -> None:
        self.service = service
        self.bus = bus
        self.interval_s = interval_s
        self.held: Counter[str] = Counter()  # URI -> subscriptions and listen streams that watch it
        self.listened: Counter[str] = Counter()  # URI -> listen streams that watch it
        self.subscribers: dict[object, _Subscriber] = {}  # a 2025-11-25 session's connection -> it
        self.digests: dict[str, object] = {}
        self.ticks = 0

    async def hold(self, uri: str, *, listen: bool) -> None:
        """Watch `uri` (once more); its digest now is what later ones are compared with. An MCP error,
        and nothing held, when it cannot be watched or names nothing."""
        if not self.held[uri]:
            self.digests[uri] = await resources.digest(self.service, uri)
        self.held[uri] += 1
        if listen:
            self.listened[uri] += 1

    def release(self, uri: str, *, listen: bool) -> None:
        if listen:
            self.listened[uri] -= 1
            if self.listened[uri] <= 0:
                del self.listened[uri]
        self.held[uri] -= 1
        if self.held[uri] <= 0:
            del self.held[uri]
            self.digests.pop(uri, None)

    def forget(self, connection: object) -> None:
        """A session ended: drop its subscriptions."""
        subscriber = self.subscribers.pop(connection, None)
        for uri in subscriber.uris if subscriber else ():
            self.release(uri, listen=False)

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.interval_s)
            try:
                await self.tick()
            except Exception:  # a watcher's fault must not end the server: log it, go on watching
                log.exception("watching the subscribed resources failed")

    async def tick(self) -> None:
        """Compare each watched URI's digest with its last; announce those that changed."""
        for uri in list(self.held):
            try:
                now = await resources.digest(self.service, uri)
            except MCPError:
                now = _GONE
            except Exception:  # a disk error, say: try again next time, keep watching the others
                log.exception("watching %s failed", uri)
                continue
            if uri in self.held and now != self.digests.get(uri):
                self.digests[uri] = now
                await self._announce(uri)
        self.ticks += 1

    async def _announce(self, uri: str) -> None:
        if self.listened[uri]:
            await self.bus.publish(ResourceUpdated(uri=uri))
        for subscriber in list(self.subscribers.values()):
            if uri in subscriber.uris:
                with anyio.move_on_after(_SEND_TIMEOUT_S):
                    await subscriber.session.send_resource_updated(uri)


def _connection_of(session: ServerSession) -> Connection:
    """The connection a request came on. The SDK gives a handler no public handle on it; its exit stack
    is where the SDK has per-connection teardown go."""
    return session._connection


class Subscriptions:
    """The server's subscriptions: a watcher for each running service, and the request handlers."""

    def __init__(self, bus: SubscriptionBus, interval_s: float = WATCH_INTERVAL_S) -> None:
        self.bus = bus
        self.interval_s = interval_s
        self._listen = ListenHandler(bus)
        self._watchers: dict[int, Watcher] = {}  # id(service) -> its watcher

    @contextlib.asynccontextmanager
    async def watching(self, service: TrainingService) -> AsyncIterator[Watcher]:
        """Run the watcher of `service` while the context is open (the server's lifespan)."""
        watcher = Watcher(service, self.bus, self.interval_s)
        self._watchers[id(service)] = watcher
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(watcher.run)
                yield watcher
                tg.cancel_scope.cancel()
        finally:
            self._watchers.pop(id(service), None)

    def watchers(self) -> list[Watcher]:
        """The watchers running now: one per server lifespan."""
        return list(self._watchers.values())

    def watched(self) -> set[str]:
        """Every URI some client watches now, over every running service."""
        return {uri for watcher in self._watchers.values() for uri in watcher.held}

    def install(self, server: Server[TrainingService]) -> None:
        """Serve resources/subscribe and resources/unsubscribe (2025-11-25), and subscriptions/listen
        (2026-07-28) in place of the SDK's own listen handler."""
        server.add_request_handler("resources/subscribe", types.SubscribeRequestParams, self.subscribe)
        server.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, self.unsubscribe)
        server.add_request_handler(
            "subscriptions/listen", types.SubscriptionsListenRequestParams, self.listen
        )

    def _watcher(self, ctx: Ctx) -> Watcher:
        watcher = self._watchers.get(id(ctx.lifespan_context))
        if watcher is None:  # the lifespan that starts it did not run: a server built without build_server
            raise MCPError(code=types.INTERNAL_ERROR, message="Subscriptions are not running on this server.")
        return watcher

    async def subscribe(self, ctx: Ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
        """Watch a URI for this session until it unsubscribes or ends."""
        watcher, uri = self._watcher(ctx), str(params.uri)
        connection = _connection_of(ctx.session)
        subscriber = watcher.subscribers.get(connection)
        if subscriber is not None and uri in subscriber.uris:
            return types.EmptyResult()  # already watched for this session
        await watcher.hold(uri, listen=False)
        if subscriber is None:
            subscriber = watcher.subscribers[connection] = _Subscriber(ctx.session)
            connection.exit_stack.callback(watcher.forget, connection)
        subscriber.uris.add(uri)
        return types.EmptyResult()

    async def unsubscribe(self, ctx: Ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        """Stop watching a URI for this session (a URI it does not watch: nothing to stop)."""
        watcher, uri = self._watcher(ctx), str(params.uri)
        subscriber = watcher.subscribers.get(_connection_of(ctx.session))
        if subscriber is not None and uri in subscriber.uris:
            subscriber.uris.discard(uri)
            watcher.release(uri, listen=False)
        return types.EmptyResult()

    async def listen(
        self, ctx: Ctx, params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        """One listen stream: watch the resources it names while it is open."""
        watcher = self._watcher(ctx)
        uris = list(dict.fromkeys(params.notifications.resource_subscriptions or ()))
        held: list[str] = []
        try:
            for uri in uris:
                await watcher.hold(uri, listen=True)
                held.append(uri)
            return await self._listen(ctx, params)
        finally:
            for uri in held:
                watcher.release(uri, listen=True)
