"""The trainer:// resources (MCP resources; the cores and memory a task claims are specs/resources.py):
their URIs, what reading one returns, which are listed, and the digest a watcher compares.

| URI | MIME type | what it is |
|---|---|---|
| `trainer://queue` | application/json | the queue's status (`get_queue_status`) |
| `trainer://tasks/{task_id}` | application/json | a task's status (`get_task_status`) |
| `trainer://tasks/{task_id}/logs` | text/plain | the last `LOG_LINES` lines of its log |
| `trainer://models/{model_id}` | application/json | a model's metadata (`get_model_info`) |
| `trainer://models/{model_id}/plots/{+plot}` | image/png | a report plot (`<task_id>/<name>`: evaluation) |
| `trainer://pipelines/{pipeline_id}` | application/json | a pipeline's status (`get_pipeline_status`) |

Everything but a plot can be watched: a plot never changes once drawn (watch its model, whose `reports`
lists the plots drawn so far). Every refusal (an unknown URI, a malformed or unknown id, a plot the model
lacks) is an MCP error with code -32602 and a sentence saying what to change.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import mcp_types as types
from mcp.shared.exceptions import MCPError
from mcp.shared.uri_template import UriTemplate

from mcp_trainer.artifacts.model_dir import REPORT_PLOTS
from mcp_trainer.errors import InvalidStateError, TrainerError
from mcp_trainer.service.training import TrainingService

__all__ = [
    "LOG_LINES",
    "QUEUE_URI",
    "SCHEME",
    "digest",
    "is_trainer_uri",
    "listed",
    "read",
    "templates",
    "watchable",
]

SCHEME = "trainer://"
QUEUE_URI = "trainer://queue"
LOG_LINES = 200  # a log read as a resource: its last lines (get_task_logs reads up to 5,000)
LISTED_TASKS = 10  # resources/list names the queue and the newest of each of these
LISTED_MODELS = 10
LISTED_PIPELINES = 5
_JSON = "application/json"

Args = Mapping[str, str]
Reader = Callable[[TrainingService, Args], Awaitable[str | bytes]]
Digester = Callable[[TrainingService, Args], Awaitable[object]]


@dataclass(frozen=True)
class Kind:
    """One shape of trainer:// URI: how to read it, and (when it can change) its digest."""

    template: str
    name: str
    title: str
    description: str
    mime_type: str
    read: Reader
    digest: Digester | None  # None: never changes once there, so there is nothing to watch

    @property
    def parsed(self) -> UriTemplate:
        return UriTemplate.parse(self.template)


async def _queue(service: TrainingService, _: Args) -> str:
    return (await service.queue_status()).model_dump_json(indent=2)


async def _task(service: TrainingService, args: Args) -> str:
    return (await service.status(args["task_id"])).model_dump_json(indent=2)


async def _logs(service: TrainingService, args: Args) -> str:
    lines = await service.logs(args["task_id"], LOG_LINES)
    return "\n".join(lines) + ("\n" if lines else "")


async def _logs_digest(service: TrainingService, args: Args) -> object:
    await service.status(args["task_id"])  # an unknown task is an error, not an empty log
    return await service.log_stamp(args["task_id"])


async def _model(service: TrainingService, args: Args) -> str:
    return (await service.model_info(args["model_id"])).model_dump_json(indent=2)


async def _plot(service: TrainingService, args: Args) -> bytes:
    model_id, plot = args["model_id"], args["plot"].removesuffix(".png")
    report, images = await service.model_report(model_id, [plot])
    if plot in report.being_drawn:
        raise InvalidStateError(
            f"The {plot} plot of {model_id} is still being drawn (the model is saved; its plots follow).",
            "Read it again in a few seconds.",
        )
    if plot not in images:
        raise InvalidStateError(
            f"The {plot} plot of {model_id} is not a PNG file (was it changed after training?).",
            "Train the model again to draw it anew.",
        )
    return images[plot]


async def _pipeline(service: TrainingService, args: Args) -> str:
    return (await service.pipeline_status(args["pipeline_id"])).model_dump_json(indent=2)


KINDS: tuple[Kind, ...] = (
    Kind(
        QUEUE_URI,
        "queue",
        "The queue",
        "Running and waiting counts, the next tasks and why they wait, claims, the machine's load, alerts.",
        _JSON,
        _queue,
        lambda service, _: service.queue_digest(),
    ),
    Kind(
        "trainer://tasks/{task_id}",
        "task",
        "A task's status",
        "Status, progress percent, phase, trial i of n with the best score, loss and learning rate, ETA; "
        "the model and metrics once completed; the classified error if failed.",
        _JSON,
        _task,
        lambda service, args: service.task_digest(args["task_id"]),
    ),
    Kind(
        "trainer://tasks/{task_id}/logs",
        "task_logs",
        "A task's log",
        f"The last {LOG_LINES} lines its worker logged (all attempts).",
        "text/plain",
        _logs,
        _logs_digest,
    ),
    Kind(
        "trainer://models/{model_id}",
        "model",
        "A model's metadata",
        "Best parameters, CV and held-out metrics, features, target and classes, versions, timings, "
        "and the report files drawn so far.",
        _JSON,
        _model,
        lambda service, args: service.model_digest(args["model_id"]),
    ),
    Kind(
        "trainer://models/{model_id}/plots/{+plot}",
        "model_plot",
        "A model's report plot",
        f"One PNG, by name: {', '.join(REPORT_PLOTS)} (those the model has); an evaluation's is "
        "<task_id>/<name>.",
        "image/png",
        _plot,
        None,
    ),
    Kind(
        "trainer://pipelines/{pipeline_id}",
        "pipeline",
        "A pipeline's status",
        "The pipeline's status and progress, each stage's status, task and outputs, and the graph.",
        _JSON,
        _pipeline,
        lambda service, args: service.pipeline_digest(args["pipeline_id"]),
    ),
)
_PARSED = [(kind, kind.parsed) for kind in KINDS]


def is_trainer_uri(uri: str) -> bool:
    return uri.startswith(SCHEME)


def _refused(uri: str, message: str) -> MCPError:
    return MCPError(code=types.INVALID_PARAMS, message=message, data={"uri": uri[:1000]})


def _match(uri: str) -> tuple[Kind, dict[str, str]]:
    """The kind of `uri` and its arguments; an MCP error naming the URIs there are when none matches."""
    for kind, parsed in _PARSED:
        found = parsed.match(uri)
        if found is not None and all(isinstance(v, str) and v and ".." not in v for v in found.values()):
            return kind, {k: str(v) for k, v in found.items()}
    shapes = ", ".join(kind.template for kind in KINDS)
    raise _refused(uri, f"Unknown resource {uri[:200]!r}. The resources here are: {shapes}.")


async def read(service: TrainingService, uri: str) -> types.ReadResourceResult:
    """What reading `uri` returns: JSON or text, or a PNG as a base64 blob."""
    kind, args = _match(uri)
    try:
        content = await kind.read(service, args)
    except TrainerError as exc:
        raise _refused(uri, str(exc)) from None
    if isinstance(content, bytes):
        blob = base64.b64encode(content).decode("ascii")
        return types.ReadResourceResult(
            contents=[types.BlobResourceContents(uri=uri, blob=blob, mime_type=kind.mime_type)]
        )
    return types.ReadResourceResult(
        contents=[types.TextResourceContents(uri=uri, text=content, mime_type=kind.mime_type)]
    )


def watchable(uri: str) -> None:
    """Nothing when `uri` names a kind of resource that can change; an MCP error saying why not."""
    if not is_trainer_uri(uri):
        raise _refused(uri, f"{uri[:200]!r} is not watched here: only trainer:// resources are.")
    kind, _ = _match(uri)
    if kind.digest is None:
        raise _refused(
            uri,
            f"{uri[:200]!r} never changes once drawn: watch its model (trainer://models/<model_id>), "
            "whose reports list the plots drawn so far.",
        )


async def digest(service: TrainingService, uri: str) -> object:
    """What `uri` shows now, for comparison with what it showed before (not for display); an MCP error
    for a URI that cannot be watched or names nothing."""
    watchable(uri)
    kind, args = _match(uri)
    assert kind.digest is not None
    try:
        return await kind.digest(service, args)
    except TrainerError as exc:
        raise _refused(uri, str(exc)) from None


def templates() -> list[types.ResourceTemplate]:
    """The templated kinds, for resources/templates/list."""
    return [
        types.ResourceTemplate(
            uri_template=kind.template,
            name=kind.name,
            title=kind.title,
            description=kind.description,
            mime_type=kind.mime_type,
        )
        for kind in KINDS
        if kind.template != QUEUE_URI
    ]


async def listed(service: TrainingService) -> list[types.Resource]:
    """resources/list's share of trainer:// resources, kept small: the queue and the newest tasks, models
    and pipelines (the templates reach every other one)."""
    found = [types.Resource(uri=QUEUE_URI, name="queue", title="The queue", mime_type=_JSON)]
    for task in (await service.list_tasks(limit=LISTED_TASKS)).tasks:
        found.append(
            types.Resource(
                uri=f"trainer://tasks/{task.task_id}",
                name=task.task_id,
                title=task.name or task.task_type,
                description=f"{task.task_type}, {task.status.value}, {task.progress:.0f}%",
                mime_type=_JSON,
            )
        )
    for model_id in await service.model_ids(limit=LISTED_MODELS):
        found.append(types.Resource(uri=f"trainer://models/{model_id}", name=model_id, mime_type=_JSON))
    for pipeline_id in await service.pipeline_ids(limit=LISTED_PIPELINES):
        found.append(
            types.Resource(uri=f"trainer://pipelines/{pipeline_id}", name=pipeline_id, mime_type=_JSON)
        )
    return found
