"""The dashboard in a real headless browser (Debian's chromium, driven by Playwright): over HTTP, a running
search's progress bar moves and a cancel from the page ends it and its worker; a token-protected server
asks for its token; as an MCP App, the same page renders the queue and cancels through a host's bridge.
Screenshots go to test-artifacts/dashboard/ for a person to look at."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from dashboard_helpers import CHROMIUM_ARGS, browser_or_skip, http_server, screenshot
from mcp import Client

from mcp_trainer.server import ServerConfig, build_server
from mcp_trainer.server.dashboard.page import page as dashboard_page

pytestmark = pytest.mark.browser
ROW = 'tr[data-task-id="{}"]'
VISIBLE = """() => {{
  Object.defineProperty(document, 'hidden', {{value: {}, configurable: true}});
  document.dispatchEvent(new Event('visibilitychange'));
}}"""
BLOBS = {"task_type": "svm_classification", "target_column": "label"}


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_playwright, executable = browser_or_skip()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


class Console:
    """What a page said on its console, and any script error it raised (its frames' included)."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))


def row_status(page: Any, task_id: str) -> str:
    text: str = page.locator(ROW.format(task_id) + " .badge").inner_text()
    return text


def progress_of(page: Any, task_id: str) -> float:
    value: float = page.locator(ROW.format(task_id) + " progress").evaluate("bar => bar.value")
    return value


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_for(page: Any, condition: Any, timeout: float, what: str) -> None:
    """Wait for `condition()`, letting the page's events reach their listeners meanwhile (Playwright's
    sync API delivers them only while it is called: a plain sleep would hold them back)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        page.wait_for_timeout(100)


def test_the_dashboard_follows_a_running_search_and_cancels_it_from_the_page(
    browser: Any, tmp_path: Path, slow_csv: Path
) -> None:
    with http_server(tmp_path) as server:
        spec = {"task_type": "svm_classification", "data_source": str(slow_csv), "target_column": "label"}
        task_id = server.submit({**spec, "n_trials": 300, "n_parallel_trials": 1, "user_id": "ana"})
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        console = Console(page)
        page.goto(f"{server.url}/dashboard#token={server.token}")
        assert page.url == f"{server.url}/dashboard"  # the token left the address at once

        page.wait_for_function(
            "([row]) => (document.querySelector(row + ' progress') || {value: 0}).value > 0",
            arg=[ROW.format(task_id)],
            timeout=90_000,
        )
        assert row_status(page, task_id) == "running"
        first = progress_of(page, task_id)
        page.wait_for_function(
            "([row, v]) => document.querySelector(row + ' progress').value > v",
            arg=[ROW.format(task_id), first],
            timeout=60_000,
        )
        assert progress_of(page, task_id) > first
        page.wait_for_function("() => document.querySelector('#log').textContent.includes('Trial')")
        assert page.locator("#task-title").inner_text() == f"Task {task_id}"
        assert page.locator("#charts figure svg polyline").count() == 1  # the best score so far by trial
        screenshot(page, "web-running")

        pid = server.record(task_id)["worker_pid"]
        assert pid is not None and not gone(pid)
        page.get_by_role("button", name=f"Cancel task {task_id}", exact=True).click()
        assert page.locator("#confirm").is_visible()
        screenshot(page, "web-confirm-cancel")
        page.locator("#confirm-yes").click()
        page.wait_for_function(
            "([row]) => document.querySelector(row + ' .badge').textContent === 'cancelled'",
            arg=[ROW.format(task_id)],
            timeout=30_000,
        )
        assert server.record(task_id)["status"] == "cancelled"
        wait_for(page, lambda: gone(pid), 15, "the worker ended")
        assert "is cancelled" in page.locator("#toast").inner_text()
        assert page.get_by_role("button", name=f"Retry task {task_id}", exact=True).is_enabled()
        screenshot(page, "web-cancelled")
    assert console.errors == []


def test_a_token_protected_dashboard_asks_for_its_token_keeps_it_for_the_tab_and_pauses_when_hidden(
    browser: Any, tmp_path: Path, blobs_csv: Path
) -> None:
    with http_server(tmp_path, "--no-execute") as server:
        task_id = server.submit({**BLOBS, "data_source": str(blobs_csv)})
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        refused: list[int] = []
        page.on("response", lambda r: refused.append(r.status) if "/dashboard/api/" in r.url else None)
        page.goto(f"{server.url}/dashboard")
        page.locator("#token-panel").wait_for(state="visible", timeout=30_000)
        assert 401 in refused and page.locator("#main").is_hidden()
        screenshot(page, "web-token")

        page.locator("#token-input").fill("not-the-token")
        page.locator("#token-panel button[type=submit]").click()
        wait_for(page, lambda: refused.count(401) >= 2, 30, "the wrong token refused")
        page.locator("#token-error").wait_for(state="visible", timeout=30_000)
        assert "refused that token" in page.locator("#token-error").inner_text()
        page.locator("#token-input").fill(server.token)
        page.locator("#token-panel button[type=submit]").click()
        page.locator(ROW.format(task_id)).wait_for(timeout=30_000)
        assert row_status(page, task_id) == "queued"

        page.reload()  # the token stays in this tab (sessionStorage), not in a cookie or the address
        page.locator(ROW.format(task_id)).wait_for(timeout=30_000)
        assert page.locator("#token-panel").is_hidden()
        assert page.context.cookies() == []

        page.evaluate(VISIBLE.format("true"))  # the tab is hidden: no more requests until it shows again
        page.wait_for_timeout(1000)  # a refresh in flight lands
        quiet = len(refused)
        page.wait_for_timeout(3000)
        assert len(refused) == quiet
        page.evaluate(VISIBLE.format("false"))
        wait_for(page, lambda: len(refused) > quiet, 10, "updates resumed")


# A host's side of the MCP Apps bridge, as Claude Desktop and others implement it: the app's page in a
# sandboxed iframe, JSON-RPC over postMessage, tools/call answered here with views the real tools gave.
HOST = """
([html, answers, taskId]) => {
  const frame = document.getElementById('app');
  window.calls = [];
  let cancelled = false;
  let asked = 0;
  const running = () => {  // answers.steps: a fine-tune's progress, one step further at each status call
    const t = answers.steps[Math.min(asked++, answers.steps.length - 1)];
    return {...answers.status, status: 'running', phase: 'training', progress: 100 * t.step / t.total_steps,
      training: t};
  };
  const answer = (name) => {
    if (name === 'cancel_training_task') { cancelled = true; return answers.cancelled; }
    if (name === 'get_task_status' && answers.steps) return running();
    if (name === 'get_task_status') return cancelled ? answers.cancelled : answers.status;
    if (name === 'list_training_tasks') return cancelled ? answers.listAfter : answers.list;
    return {get_queue_status: answers.queue, get_task_logs: answers.logs}[name];
  };
  const send = (message) => frame.contentWindow.postMessage({jsonrpc: '2.0', ...message}, '*');
  window.addEventListener('message', (event) => {
    if (event.source !== frame.contentWindow) return;
    const m = event.data;
    const p = m.params || {};
    const what = m.method === 'tools/call' ? ` ${p.name} ${JSON.stringify(p.arguments)}` : '';
    window.calls.push(m.method + what);
    if (m.method === 'ui/initialize') {
      send({id: m.id, result: {protocolVersion: '2026-01-26', hostInfo: {name: 'fake-host', version: '0'},
        hostCapabilities: {serverTools: {}}, hostContext: {theme: 'light', displayMode: 'inline'}}});
    } else if (m.method === 'ui/notifications/initialized') {
      send({method: 'ui/notifications/tool-input', params: {arguments: {task_id: taskId}}});
    } else if (m.method === 'tools/call') {
      const data = answer(m.params.name);
      const text = JSON.stringify(data);
      send({id: m.id, result: {content: [{type: 'text', text}], structuredContent: data}});
    }
  });
  frame.srcdoc = html;
}
"""


def tool_answers(queue_dir: Path, models_dir: Path, data: Path) -> tuple[str, str, dict[str, Any]]:
    """The app page's HTML as the server serves it, a task's id, and what the real tools answered about
    that task before and after its cancel."""

    async def collect() -> tuple[str, str, dict[str, Any]]:
        server = build_server(ServerConfig(queue_dir=queue_dir, models_dir=models_dir, execute=False))
        async with Client(server, mode="legacy") as client:
            html = (await client.read_resource("ui://mcp-trainer/dashboard")).contents[0].text  # type: ignore[union-attr]

            async def call(tool: str, **args: Any) -> Any:
                result = await client.call_tool(tool, args)
                assert not result.is_error, result.content
                return result.structured_content

            spec = {**BLOBS, "data_source": str(data), "name": "from the app"}
            task_id = (await call("submit_training_task", **spec))["task_id"]
            answers = {
                "queue": await call("get_queue_status"),
                "list": await call("list_training_tasks", limit=50),
                "status": await call("get_task_status", task_id=task_id),
                "logs": await call("get_task_logs", task_id=task_id, tail=200),
                "cancelled": await call("cancel_training_task", task_id=task_id),
                "listAfter": await call("list_training_tasks", limit=50),
            }
            return html, task_id, answers

    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API holds an event loop in this thread
        return thread.submit(anyio.run, collect).result()


def test_the_mcp_app_renders_the_queue_and_cancels_through_the_host_bridge(
    browser: Any, queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    html, task_id, answers = tool_answers(queue_dir, models_dir, blobs_csv)
    assert html == dashboard_page("mcp-app").html
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    console = Console(page)
    page.set_content('<iframe id="app" sandbox="allow-scripts" style="width:100%;height:880px"></iframe>')
    page.evaluate(HOST, [html, answers, task_id])
    app = page.frame_locator("#app")
    app.locator(ROW.format(task_id)).wait_for(timeout=30_000)
    assert app.locator(ROW.format(task_id) + " .badge").inner_text() == "queued"
    app.locator("#task-title").filter(has_text=task_id).wait_for(timeout=30_000)  # the tool's task_id
    assert "from the app" in app.locator("#task-facts").inner_text()
    calls: list[str] = page.evaluate("window.calls")
    assert calls[:2] == ["ui/initialize", "ui/notifications/initialized"]
    assert {"tools/call get_queue_status {}", 'tools/call list_training_tasks {"limit":50}'} <= set(calls)
    assert f'tools/call get_task_logs {{"task_id":"{task_id}","tail":200}}' in calls
    assert "ui/notifications/size-changed" in calls
    screenshot(page, "mcp-app")

    app.get_by_role("button", name=f"Cancel task {task_id}", exact=True).click()
    app.locator("#confirm-yes").click()
    app.locator(ROW.format(task_id) + " .badge").filter(has_text="cancelled").wait_for(timeout=30_000)
    assert f'tools/call cancel_training_task {{"task_id":"{task_id}"}}' in page.evaluate("window.calls")
    screenshot(page, "mcp-app-cancelled")
    assert console.errors == []


def test_a_fine_tune_in_the_app_shows_loss_and_learning_rate_curves_as_its_steps_arrive(
    browser: Any, queue_dir: Path, models_dir: Path, blobs_csv: Path
) -> None:
    html, task_id, answers = tool_answers(queue_dir, models_dir, blobs_csv)
    answers["steps"] = [
        {"epoch": step / 40, "n_epochs": 1, "step": step, "total_steps": 40, "loss": 2.0 / step,
         "learning_rate": 5e-5 * (1 - step / 40), "samples_per_s": 31.5, "device": "cpu"}
        for step in range(1, 41)
    ]  # fmt: skip
    page = browser.new_page(viewport={"width": 1200, "height": 1000})
    console = Console(page)
    page.set_content('<iframe id="app" sandbox="allow-scripts" style="width:100%;height:980px"></iframe>')
    page.evaluate(HOST, [html, answers, task_id])
    app = page.frame_locator("#app")
    loss = app.locator("#charts figure").filter(has_text="Loss by step").locator("polyline")
    loss.wait_for(timeout=30_000)
    wait_for(page, lambda: len(loss.get_attribute("points").split()) >= 4, 30, "four steps drawn")
    rate = app.locator("#charts figure").filter(has_text="Learning rate by step").locator("polyline")
    assert len(rate.get_attribute("points").split()) >= 4
    facts = app.locator("#task-facts").inner_text()
    assert "Loss" in facts and "Learning rate" in facts and "of 40" in facts
    screenshot(page, "mcp-app-finetune")
    assert console.errors == []
