// How the dashboard reaches the server: two small adapters with one interface. Each method resolves
// to the JSON of the same view the matching MCP tool returns (mcp_trainer/views/), or rejects with a
// TransportError whose message is the server's own sentence.
//
//   queue()          get_queue_status            tasks(limit)   list_training_tasks
//   task(id)         get_task_status             logs(id, tail) get_task_logs
//   cancel(id)       cancel_training_task        retry(id)      retry_task
//
// "http": the page served at /dashboard calls its JSON API (/dashboard/api/...), sending the token
// as `Authorization: Bearer` when the server asks for one. "mcp-app": the same page rendered by an
// MCP host in a sandboxed iframe calls the tools through the host bridge (JSON-RPC over postMessage,
// the MCP Apps extension, io.modelcontextprotocol/ui).
"use strict";

class TransportError extends Error {
  constructor(message, kind) {
    super(message);
    this.name = "TransportError";
    this.kind = kind || "error"; // "auth": the server wants the token; "error": anything else
  }
}

const TOKEN_KEY = "mcp-trainer.token";

function httpTransport() {
  const base = new URL("dashboard/api/", location.href).pathname; // beside the page: /dashboard/api/
  let token = null;
  try {
    token = sessionStorage.getItem(TOKEN_KEY);
  } catch (_) { /* storage off: the token is asked for each time the page loads */ }
  const fromHash = /(?:^|&)token=([^&]+)/.exec(location.hash.slice(1));
  if (fromHash) {
    // Taken once from the address, then out of it: not in the history, never sent to the server's log.
    token = decodeURIComponent(fromHash[1]);
    remember(token);
    history.replaceState(null, "", location.pathname + location.search);
  }

  function remember(value) {
    try {
      sessionStorage.setItem(TOKEN_KEY, value);
    } catch (_) { /* kept in memory only */ }
  }

  async function call(method, path, query) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    let body;
    if (method === "POST") {
      headers["Content-Type"] = "application/json";
      body = "{}";
    }
    const url = base + path + (query ? "?" + new URLSearchParams(query) : "");
    let response;
    try {
      response = await fetch(url, { method, headers, body, cache: "no-store", credentials: "omit" });
    } catch (exc) {
      throw new TransportError("The server does not answer (" + exc.message + ").");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) { /* a proxy's page, say: reported by status below */ }
    if (response.status === 401) {
      throw new TransportError((data && data.message) || "The server asks for its token.", "auth");
    }
    if (!response.ok) {
      const words = data && data.message ? data.message + (data.hint ? " " + data.hint : "") : "";
      throw new TransportError(words || "The server answered " + response.status + ".");
    }
    return data;
  }

  const id = (taskId) => "tasks/" + encodeURIComponent(taskId);
  return {
    name: "http",
    pollMs: 1000,
    setToken(value) {
      token = value.trim();
      remember(token);
    },
    start: async () => ({}),
    queue: () => call("GET", "queue"),
    tasks: (limit) => call("GET", "tasks", { limit: String(limit) }),
    task: (taskId) => call("GET", id(taskId)),
    logs: (taskId, tail) => call("GET", id(taskId) + "/logs", { tail: String(tail) }),
    cancel: (taskId) => call("POST", id(taskId) + "/cancel"),
    retry: (taskId) => call("POST", id(taskId) + "/retry"),
  };
}

function appTransport() {
  const pending = new Map();
  const listeners = { toolInput: [], context: [] };
  let nextId = 1;

  window.addEventListener("message", (event) => {
    if (event.source !== window.parent) return;
    const msg = event.data;
    if (!msg || msg.jsonrpc !== "2.0") return;
    if (msg.method === undefined && pending.has(msg.id)) {
      const waiter = pending.get(msg.id);
      pending.delete(msg.id);
      clearTimeout(waiter.timer);
      if (msg.error) waiter.reject(new TransportError(msg.error.message || "The host refused the call."));
      else waiter.resolve(msg.result);
      return;
    }
    if (msg.method === "ui/notifications/tool-input") {
      const args = (msg.params && msg.params.arguments) || {};
      listeners.toolInput.forEach((fn) => fn(args));
    } else if (msg.method === "ui/notifications/host-context-changed") {
      listeners.context.forEach((fn) => fn(msg.params || {}));
    } else if (msg.id !== undefined && (msg.method === "ping" || msg.method === "ui/resource-teardown")) {
      reply(msg.id, {});
    } else if (msg.id !== undefined && msg.method !== undefined) {
      window.parent.postMessage(
        { jsonrpc: "2.0", id: msg.id, error: { code: -32601, message: "Method not found: " + msg.method } },
        "*",
      );
    }
  });

  function reply(id, result) {
    window.parent.postMessage({ jsonrpc: "2.0", id, result }, "*");
  }

  function notify(method, params) {
    window.parent.postMessage({ jsonrpc: "2.0", method, params }, "*");
  }

  function request(method, params) {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new TransportError("The host did not answer " + method + " within 30 s."));
      }, 30000);
      pending.set(id, { resolve, reject, timer });
      window.parent.postMessage({ jsonrpc: "2.0", id, method, params }, "*");
    });
  }

  async function tool(name, args) {
    const result = await request("tools/call", { name, arguments: args || {} });
    const text = (result.content || []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
    if (result.isError) throw new TransportError(text || name + " failed.");
    if (result.structuredContent) return result.structuredContent;
    try {
      return JSON.parse(text);
    } catch (_) {
      throw new TransportError(name + " answered with no data the dashboard can read.");
    }
  }

  function watchSize() {
    let last = "";
    const send = () => {
      const el = document.documentElement;
      const size = { width: Math.ceil(el.scrollWidth), height: Math.ceil(el.scrollHeight) };
      const key = size.width + "x" + size.height;
      if (key !== last) {
        last = key;
        notify("ui/notifications/size-changed", size);
      }
    };
    new ResizeObserver(send).observe(document.body);
    send();
  }

  return {
    name: "mcp-app",
    pollMs: 2000, // each poll is a few tool calls through the host: half the web page's rate
    setToken() {},
    onToolInput: (fn) => listeners.toolInput.push(fn),
    onHostContext: (fn) => listeners.context.push(fn),
    async start() {
      const init = await request("ui/initialize", {
        protocolVersion: "2026-01-26",
        appInfo: { name: "mcp-trainer dashboard", version: "1" },
        appCapabilities: { availableDisplayModes: ["inline", "fullscreen"] },
      });
      notify("ui/notifications/initialized", {});
      watchSize();
      return (init && init.hostContext) || {};
    },
    queue: () => tool("get_queue_status"),
    tasks: (limit) => tool("list_training_tasks", { limit }),
    task: (taskId) => tool("get_task_status", { task_id: taskId }),
    logs: (taskId, tail) => tool("get_task_logs", { task_id: taskId, tail }),
    cancel: (taskId) => tool("cancel_training_task", { task_id: taskId }),
    retry: (taskId) => tool("retry_task", { task_id: taskId }),
  };
}

window.mcpTrainerTransport = function (kind) {
  return kind === "mcp-app" ? appTransport() : httpTransport();
};
window.TransportError = TransportError;
