"""The dashboard as an MCP App, through an in-memory client: `show_dashboard` bound to the
`ui://mcp-trainer/dashboard` page, which reads as the same page as the web one, and a text summary for
clients without Apps. (The page's adapter for the host bridge runs in tests/test_dashboard_browser.py.)"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp import Client
from mcp.client import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID
from mcp.types import TextResourceContents
from mcp_calls import call_error

from mcp_trainer.server import ServerConfig, build_server
from mcp_trainer.server.dashboard import DASHBOARD_URI
from mcp_trainer.server.dashboard import page as page_module
from mcp_trainer.server.dashboard.page import page

pytestmark = pytest.mark.anyio
APPS = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})


@pytest.fixture(params=["legacy", "auto"])
def mode(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


@pytest.fixture
async def client(queue_dir: Path, models_dir: Path, mode: str) -> AsyncIterator[Client]:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    async with Client(server, mode=mode) as c:  # type: ignore[arg-type]
        yield c


async def test_show_dashboard_is_listed_bound_to_the_dashboard_page(client: Client) -> None:
    tools = {t.name: t for t in (await client.list_tools()).tools}
    tool = tools["show_dashboard"]
    assert tool.meta == {"ui": {"resourceUri": DASHBOARD_URI}}
    assert set(tool.input_schema["properties"]) == {"task_id"}
    assert tool.description and "dashboard" in tool.description


async def test_the_ui_resource_reads_as_an_mcp_app_and_is_the_web_page_with_the_host_adapter(
    client: Client,
) -> None:
    listed = {str(r.uri): r for r in (await client.list_resources()).resources}
    assert listed[DASHBOARD_URI].mime_type == APP_MIME_TYPE
    contents = (await client.read_resource(DASHBOARD_URI)).contents
    assert len(contents) == 1 and isinstance(contents[0], TextResourceContents)
    assert contents[0].mime_type == APP_MIME_TYPE
    web = page("http").html
    assert 'data-transport="http"' in web
    assert contents[0].text == web.replace('data-transport="http"', 'data-transport="mcp-app"')
    assert "<script src" not in web and '<link rel="stylesheet"' not in web  # all inline: no other fetch


async def test_without_apps_show_dashboard_answers_a_text_summary_and_says_where_the_page_is(
    client: Client,
) -> None:
    result = await client.call_tool("show_dashboard", {})
    assert not result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.startswith("Queue: 0 running of 3, 0 waiting")
    assert "does not show MCP Apps" in text and "/dashboard" in text
    assert result.structured_content is not None
    assert result.structured_content["task"] is None and result.structured_content["running"] == 0


async def test_with_apps_the_summary_names_the_task_followed_and_no_fallback_note(
    queue_dir: Path, models_dir: Path, blobs_csv: Path, mode: str
) -> None:
    server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
    async with Client(server, mode=mode, extensions=[APPS]) as client:  # type: ignore[arg-type]
        spec = {"task_type": "svm_classification", "data_source": str(blobs_csv), "target_column": "label"}
        submitted = await client.call_tool("submit_training_task", spec)
        task_id = submitted.structured_content["task_id"]  # type: ignore[index]
        result = await client.call_tool("show_dashboard", {"task_id": task_id})
    assert not result.is_error
    text = result.content[0].text  # type: ignore[union-attr]
    assert f"{task_id}: queued, 0% (queued)" in text
    assert "does not show MCP Apps" not in text
    assert result.structured_content is not None
    assert result.structured_content["task"]["task_id"] == task_id


async def test_show_dashboard_refuses_a_bad_task_id_and_an_unknown_argument_in_words(client: Client) -> None:
    assert "not a task id" in await call_error(client, "show_dashboard", {"task_id": "../etc"})
    message = await call_error(client, "show_dashboard", {"task": "task_20261122T143000_8f3a2c1d"})
    assert "unknown parameter 'task'" in message and "task_id" in message


def test_every_asset_is_package_data_and_fills_its_place_in_the_page() -> None:
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    globs = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]
    shipped = globs["mcp_trainer.server.dashboard"]
    assets = Path(page_module.__file__).parent / "assets"
    names = sorted(p.name for p in assets.iterdir())
    assert names == ["dashboard.css", "dashboard.js", "index.html", "transports.js"]
    assert all(any(fnmatch.fnmatch(f"assets/{name}", glob) for glob in shipped) for name in names)
    html = page("http").html
    assert "{{" not in html
    for name in names[:2] + names[3:]:
        assert (assets / name).read_text() in html
