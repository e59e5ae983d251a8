"""Subscriptions to trainer:// resources, on the 2025-11-25 revision (resources/subscribe) and on
2026-07-28 (subscriptions/listen): updates while a search runs and a final one when it completes, at most
one per URI per watch interval; none after unsubscribing, none for a client that never subscribed;
refusals of what cannot be watched; and the watcher's end with the session.

Several clients share one server lifespan here, as they do over HTTP: `shared_lifespan` serves each
client's streams with the SDK's own loop over one running service.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import time
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.subscriptions import ResourceUpdated
from mcp.server.runner import serve_dual_era_loop
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError
from mcp.shared.memory import create_client_server_memory_streams
from mcp_calls import call
from waiting import wait_until

from mcp_trainer.server import ServerConfig, build_server
from mcp_trainer.server.subscriptions import WATCH_INTERVAL_S, Subscriptions

pytestmark = pytest.mark.anyio

MakeCsv = Callable[[str, list[str], list[list[object]]], Path]


@pytest.fixture(params=["legacy", "auto"])
def mode(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


def subscriptions_of(server: Any) -> Subscriptions:
    """The server's subscriptions: what its resources/subscribe handler belongs to."""
    entry = server._lowlevel_server.get_request_handler("resources/subscribe")
    owner: Subscriptions = entry.handler.__self__
    return owner


@contextlib.asynccontextmanager
async def shared_lifespan(server: Any) -> AsyncIterator[Callable[[str], Client]]:
    """One lifespan of `server` (one service, one watcher) for every client made by the function given."""
    lowlevel = server._lowlevel_server
    async with lowlevel.lifespan(lowlevel) as state, anyio.create_task_group() as tg:

        @contextlib.asynccontextmanager
        async def streams() -> AsyncIterator[Any]:
            async with create_client_server_memory_streams() as (client_streams, server_streams):
                tg.start_soon(
                    lambda: serve_dual_era_loop(
                        lowlevel,
                        *server_streams,
                        lifespan_state=state,
                        init_options=lowlevel.create_initialization_options(),
                    )
                )
                yield client_streams

        def client(mode: str, **kwargs: Any) -> Client:
            return Client(streams(), mode=mode, **kwargs)  # type: ignore[arg-type]

        yield client
        tg.cancel_scope.cancel()


class Updates:
    """The resources/updated notifications one client received: URI and arrival time (time.time())."""

    def __init__(self) -> None:
        self.got: list[tuple[str, float]] = []
        self.arrived = anyio.Event()

    def add(self, uri: str) -> None:
        self.got.append((uri, time.time()))
        self.arrived.set()
        self.arrived = anyio.Event()

    def of(self, uri: str) -> list[float]:
        return [at for u, at in self.got if u == uri]

    async def handler(self, message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.add(message.params.uri)

    def handling(self, mode: str) -> dict[str, Any]:
        """A client's arguments: a 2025-11-25 client reads updates from its messages, a 2026-07-28 one
        from its listen stream (whose frames reach its message handler too)."""
        return {"message_handler": self.handler} if mode == "legacy" else {}


async def subscribe(client: Client, uri: str) -> None:
    with warnings.catch_warnings():  # what 2025-11-25 clients send; the SDK marks its method deprecated
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await client.subscribe_resource(uri)


async def unsubscribe(client: Client, uri: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MCPDeprecationWarning)
        await client.unsubscribe_resource(uri)


@contextlib.asynccontextmanager
async def watching(client: Client, mode: str, uris: list[str], updates: Updates) -> AsyncIterator[None]:
    """Watch `uris` the way a client of `mode` does, collecting updates, until the context ends."""
    if mode == "legacy":
        for uri in uris:
            await subscribe(client, uri)
        yield
        return
    async with client.listen(resource_subscriptions=uris) as stream, anyio.create_task_group() as tg:
        assert stream.honored.resource_subscriptions == uris

        async def drain() -> None:
            async for event in stream:
                if isinstance(event, ResourceUpdated):
                    updates.add(event.uri)

        tg.start_soon(drain)
        yield
        tg.cancel_scope.cancel()


def search(data: Path, **extra: Any) -> dict[str, Any]:
    base = {"task_type": "svm_classification", "data_source": str(data), "target_column": "label"}
    return base | {"n_trials": 10, "cv_folds": 3} | extra


@pytest.fixture
def many_rows(make_csv: MakeCsv) -> Path:
    """1,500 rows, three classes: a search of 10 SVC trials runs for about a second."""
    rng = random.Random(3)
    centers = {"a": 0.0, "b": 2.0, "c": 4.0}
    rows: list[list[object]] = []
    for i in range(1500):
        label = "abc"[i % 3]
        rows.append([round(centers[label] + rng.gauss(0, 1), 3), round(rng.gauss(0, 1), 3), label])
    return make_csv("many.csv", ["x1", "x2", "label"], rows)


async def read_status(client: Client, uri: str) -> dict[str, Any]:
    (content,) = (await client.read_resource(uri)).contents
    assert isinstance(content, types.TextResourceContents)
    status: dict[str, Any] = json.loads(content.text)
    return status


async def test_a_subscribed_client_is_told_while_a_search_runs_and_once_more_when_it_completes(
    queue_dir: Path, models_dir: Path, many_rows: Path, mode: str
) -> None:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, max_concurrent=1))
    updates = Updates()
    async with shared_lifespan(server) as connect, connect(mode, **updates.handling(mode)) as client:
        task_id = (await call(client, "submit_training_task", search(many_rows)))["task_id"]
        task, logs = f"trainer://tasks/{task_id}", f"trainer://tasks/{task_id}/logs"
        seen: list[tuple[str, float]] = []  # what the task's resource read after each of its updates
        async with watching(client, mode, [task, logs, "trainer://queue"], updates):
            started = time.time()
            with anyio.fail_after(120):
                while not seen or seen[-1][0] != "completed":
                    if len(updates.of(task)) == len(seen):
                        await updates.arrived.wait()
                        continue
                    status = await read_status(client, task)
                    seen += [(status["status"], status["progress"])] * (len(updates.of(task)) - len(seen))
            (watcher,) = subscriptions_of(server).watchers()
            finished = (await watcher.service.record(task_id)).finished_at
            assert finished is not None
            # The final update: one sent after the task's end was recorded.
            await wait_until(lambda: any(at > finished for at in updates.of(task)), timeout=10)
            ended = time.time()
            # The queue's counts changed as well, and the log grew.
            await wait_until(lambda: updates.of("trainer://queue") and updates.of(logs), timeout=10)
    assert "running" in [s for s, _ in seen], seen  # told while it ran
    progress = [p for _, p in seen]
    assert progress == sorted(progress)
    # Coalesced: one update per URI per watch interval at most, however often the task reported.
    assert len(updates.of(task)) <= (ended - started) / WATCH_INTERVAL_S + 2


def tiny(data: Path, **extra: Any) -> dict[str, Any]:
    return search(data, optimize_hyperparameters=False, cv_folds=2) | extra


async def test_unsubscribing_stops_the_updates_of_that_resource_only(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, mode: str
) -> None:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    subscriptions = subscriptions_of(server)
    updates = Updates()
    async with shared_lifespan(server) as connect, connect(mode, **updates.handling(mode)) as client:
        first, second = [
            (await call(client, "submit_training_task", tiny(blobs_csv)))["task_id"] for _ in "12"
        ]
        kept, dropped = f"trainer://tasks/{first}", f"trainer://tasks/{second}"
        async with watching(client, mode, [kept, "trainer://queue"], updates):
            async with watching(client, mode, [dropped], updates):
                assert subscriptions.watched() == {kept, dropped, "trainer://queue"}
                if mode == "legacy":
                    await unsubscribe(client, dropped)
            # No longer polled (a listen stream ends when the server hears of its cancellation).
            await wait_until(lambda: subscriptions.watched() == {kept, "trainer://queue"}, timeout=10)
            await call(client, "cancel_training_task", {"task_id": first})
            await wait_until(lambda: updates.of(kept) and updates.of("trainer://queue"))
            queue_updates = len(updates.of("trainer://queue"))
            await call(client, "cancel_training_task", {"task_id": second})
            await wait_until(lambda: len(updates.of("trainer://queue")) > queue_updates)
            (watcher,) = subscriptions.watchers()
            ticks = watcher.ticks
            await wait_until(lambda: watcher.ticks >= ticks + 2)  # every change seen by now is announced
    assert updates.of(dropped) == []


async def test_a_client_that_never_subscribes_is_told_nothing(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, mode: str
) -> None:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir))
    watched, unwatched = Updates(), Updates()
    messages: list[Any] = []

    async def everything(message: Any) -> None:
        messages.append(message)
        await unwatched.handler(message)

    async with (
        shared_lifespan(server) as connect,
        connect(mode, **watched.handling(mode)) as subscriber,
        connect("legacy", message_handler=everything) as bystander,
    ):
        task_id = (await call(bystander, "submit_training_task", tiny(blobs_csv)))["task_id"]
        uri = f"trainer://tasks/{task_id}"
        async with watching(subscriber, mode, [uri, "trainer://queue"], watched):
            done = await call(bystander, "wait_for_task", {"task_id": task_id, "timeout_s": 45})
            assert done["status"] == "completed"
            await wait_until(lambda: watched.of(uri))
            (watcher,) = subscriptions_of(server).watchers()
            ticks = watcher.ticks
            await wait_until(lambda: watcher.ticks >= ticks + 2)
    assert unwatched.got == []
    assert not any(getattr(m, "method", "").startswith("notifications/resources") for m in messages)


async def test_what_cannot_be_watched_is_refused_and_nothing_is_held(
    queue_dir: Path, models_dir: Path, mode: str
) -> None:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    refused = {
        "trainer://models/model_20990101T000000_00000000/plots/roc_curve": "never changes once drawn",
        "trainer://tasks/task_20990101T000000_00000000": "No task task_20990101T000000_00000000",
        "trainer://tasks/nonsense/logs": "is not a task id",
        "trainer://nothing": "Unknown resource",
        "file:///etc/passwd": "only trainer:// resources are",
    }
    async with shared_lifespan(server) as connect, connect(mode) as client:
        for uri, why in refused.items():
            with pytest.raises(MCPError) as caught:
                if mode == "legacy":
                    await subscribe(client, uri)
                else:
                    async with client.listen(resource_subscriptions=["trainer://queue", uri]):
                        pass
            assert caught.value.code == types.INVALID_PARAMS and why in caught.value.message, caught.value
            assert subscriptions_of(server).watched() == set()


async def test_a_session_s_subscriptions_end_with_it_and_the_watcher_with_the_lifespan(
    queue_dir: Path, models_dir: Path, mode: str
) -> None:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    subscriptions = subscriptions_of(server)
    updates = Updates()
    async with shared_lifespan(server) as connect:
        async with (
            connect(mode, **updates.handling(mode)) as client,
            watching(client, mode, ["trainer://queue"], updates),
        ):
            assert subscriptions.watched() == {"trainer://queue"}
            if mode == "legacy":
                await subscribe(client, "trainer://queue")  # twice: still one subscription
                await unsubscribe(client, "trainer://nothing")  # not subscribed: nothing to stop
                assert subscriptions.watchers()[0].held["trainer://queue"] == 1
        await wait_until(lambda: subscriptions.watched() == set(), timeout=10)
        assert len(subscriptions.watchers()) == 1
    assert subscriptions.watchers() == []


async def test_over_real_stdio_a_subscribed_client_is_told_of_a_change(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, mode: str
) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-m",
            "mcp_trainer",
            "--queue-dir",
            str(queue_dir),
            "--models-dir",
            str(models_dir),
            "--no-execute",
        ],
    )
    updates = Updates()
    async with Client(params, mode=mode, **updates.handling(mode)) as client:  # type: ignore[arg-type]
        assert client.server_capabilities.resources is not None
        assert client.server_capabilities.resources.subscribe is True
        async with watching(client, mode, ["trainer://queue"], updates):
            await call(client, "submit_training_task", tiny(blobs_csv))
            await wait_until(lambda: updates.of("trainer://queue"), timeout=30)
        queue = await read_status(client, "trainer://queue")
    assert queue["counts"]["queued"] == 1
