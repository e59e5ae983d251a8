// The dashboard: the queue, one task followed live, the machine and its alerts; cancel and retry.
// It reads through `transport` (transports.js), the same calls over HTTP or through an MCP host.
// Everything it shows comes from the server's views; the curves are drawn from what this page has
// seen since it opened (the server keeps the latest progress of a task, not its history).
"use strict";

(function () {
  const transport = window.mcpTrainerTransport(document.documentElement.dataset.transport);
  const LIST_LIMIT = 50;
  const LOG_TAIL = 200;
  const MAX_POINTS = 2000;
  const ENDED = new Set(["completed", "failed", "cancelled"]);
  const $ = (id) => document.getElementById(id);

  const state = {
    selected: null, // task id followed in the task panel
    chosen: false, // a person (or the tool's task_id) chose it: no automatic choice after that
    views: new Map(), // task id -> its latest status view (TaskStatusView)
    series: new Map(), // task id -> {trials: [[trial, best]], steps: [[step, loss, lr]]}
    rows: new Map(), // task id -> its table row
    paused: false,
    timer: null,
    busy: false,
    again: false,
    needsToken: false,
    triedToken: false, // a token was just entered: a refusal now means it was the wrong one
  };

  // -- small helpers ---------------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function pct(value) {
    return value === null || value === undefined ? "–" : (Math.round(value * 10) / 10).toString() + "%";
  }

  function num(value, digits) {
    if (value === null || value === undefined) return "–";
    if (Math.abs(value) >= 1000 || (Math.abs(value) < 0.001 && value !== 0)) return value.toExponential(2);
    return Number(value.toFixed(digits === undefined ? 4 : digits)).toString();
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
  }

  function mb(value) {
    return value >= 1024 ? num(value / 1024, 1) + " GB" : Math.round(value) + " MB";
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function claimed(view) {
    const r = view && view.resources;
    if (!r) return "";
    const parts = [r.cpu_cores === null ? "a fair share of cores" : plural(r.cpu_cores, "core"), num(r.memory_gb, 2) + " GB"];
    if (r.gpu_count) parts.push(num(r.gpu_count, 2) + " GPU");
    return parts.join(" · ");
  }

  function granted(view) {
    const g = view && view.granted;
    if (!g) return "";
    let text = "granted " + plural(g.cpu_cores, "core");
    if (g.gpus && g.gpus.length) text += ", GPU " + g.gpus.join(",");
    return text;
  }

  function phaseText(item) {
    let text = item.phase || "";
    if (item.trial !== null && item.trial !== undefined && item.n_trials) {
      text += " · trial " + item.trial + "/" + item.n_trials;
    }
    return text;
  }

  function toast(message, bad) {
    const node = $("toast");
    node.className = "toast" + (bad ? " bad" : "");
    node.textContent = message;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { node.textContent = ""; }, 6000);
  }

  function connection(message, bad) {
    const node = $("connection");
    setText(node, message);
    node.classList.toggle("bad", Boolean(bad));
  }

  // -- what the page has seen of each task: the curves ----------------------------------------

  function observe(view) {
    let s = state.series.get(view.task_id);
    if (!s) {
      s = { trials: [], steps: [] };
      state.series.set(view.task_id, s);
    }
    if (view.trial !== null && view.trial !== undefined && view.best_score !== null && view.best_score !== undefined) {
      const last = s.trials[s.trials.length - 1];
      if (!last || view.trial > last[0]) s.trials.push([view.trial, view.best_score]);
      else if (view.trial < last[0]) s.trials = [[view.trial, view.best_score]]; // a retry started over
    }
    const t = view.training;
    if (t && t.step !== null && t.step !== undefined) {
      const last = s.steps[s.steps.length - 1];
      if (!last || t.step > last[0]) s.steps.push([t.step, t.loss, t.learning_rate]);
      else if (t.step < last[0]) s.steps = [[t.step, t.loss, t.learning_rate]];
    }
    for (const key of ["trials", "steps"]) if (s[key].length > MAX_POINTS) s[key] = s[key].slice(-MAX_POINTS);
  }

  // -- charts: inline SVG -----------------------------------------------------------------------

  const SVG = "http://www.w3.org/2000/svg";

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    return node;
  }

  // series: [{name, points: [[x, y], ...]}]; options: {xMin, xMax, yMin, yMax, step, xFormat, label}
  function chart(title, series, options) {
    const W = 420, H = 150, L = 60, R = 12, T = 10, B = 22;
    const xText = options.xFormat || ((x) => num(x, 0));
    const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null && Number.isFinite(p[1])));
    const figure = el("figure", { class: "chart" });
    figure.append(el("figcaption", { text: title }));
    const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": options.label || title });
    figure.append(box);
    if (!all.length) {
      const empty = svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "tick" });
      empty.textContent = "no points yet";
      box.append(empty);
      return figure;
    }
    const xs = all.map((p) => p[0]);
    const ys = all.map((p) => p[1]);
    let x0 = options.xMin !== undefined ? Math.min(options.xMin, ...xs) : Math.min(...xs), x1 = options.xMax !== undefined ? Math.max(options.xMax, ...xs) : Math.max(...xs);
    let y0 = options.yMin !== undefined ? options.yMin : Math.min(...ys);
    let y1 = options.yMax !== undefined ? options.yMax : Math.max(...ys);
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y0 -= Math.abs(y0) * 0.05 || 0.5; y1 += Math.abs(y1) * 0.05 || 0.5; }
    const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
    const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
    box.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }));
    box.append(svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
    for (const [value, y] of [[y1, T + 8], [y0, H - B]]) {
      const tick = svg("text", { x: L - 4, y, "text-anchor": "end", class: "tick" });
      tick.textContent = num(value, 3);
      box.append(tick);
    }
    for (const [value, anchor, x] of [[x0, "start", L], [x1, "end", W - R]]) {
      const tick = svg("text", { x, y: H - 6, "text-anchor": anchor, class: "tick" });
      tick.textContent = xText(value);
      box.append(tick);
    }
    series.forEach((s, i) => {
      const pts = s.points.filter((p) => p[1] !== null && Number.isFinite(p[1]));
      if (!pts.length) return;
      let shown = pts;
      if (options.step) shown = pts.flatMap((p, j) => (j ? [[p[0], pts[j - 1][1]], p] : [p]));
      if (shown.length === 1) shown = [shown[0], [shown[0][0] + (x1 - x0) * 0.01, shown[0][1]]];
      box.append(svg("polyline", { class: "s" + i, points: shown.map((p) => sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join(" ") }));
      const last = pts[pts.length - 1]; // the latest value, marked: a lone point shows too
      box.append(svg("circle", { class: "s" + i, cx: sx(last[0]).toFixed(1), cy: sy(last[1]).toFixed(1), r: 3 }));
    });
    if (series.length > 1) {
      const legend = el("div", { class: "legend" });
      series.forEach((s, i) => legend.append(el("span", {}, el("span", { class: "key k" + i }), s.name)));
      figure.append(legend);
    }
    return figure;
  }

  // -- the queue --------------------------------------------------------------------------------

  function renderSummary(queue) {
    const c = queue.counts || {};
    const parts = [
      queue.running + " running of " + queue.concurrency_limit,
      queue.queued + " waiting",
      (c.completed || 0) + " completed",
      (c.failed || 0) + " failed",
      (c.cancelled || 0) + " cancelled",
    ];
    let text = parts.join(" · ");
    if (queue.next_waiting_for) text += ". Next waits: " + queue.next_waiting_for;
    if (queue.owner_responding === false) text += ". The process that runs tasks is not responding.";
    if (queue.owner_pid === null) text += ". No process runs tasks now.";
    setText($("queue-summary"), text);
  }

  function makeRow(id) {
    const cells = {};
    const row = el("tr", { "data-task-id": id });
    cells.id = el("button", { type: "button", class: "link", text: id, "aria-label": "Show task " + id });
    cells.id.addEventListener("click", () => select(id, true));
    cells.name = el("span", { class: "name" });
    cells.status = el("span", { class: "badge" });
    cells.type = el("td");
    cells.user = el("td");
    cells.resources = el("td");
    cells.bar = el("progress", { max: "100", value: "0", "aria-label": "Progress of task " + id });
    cells.pct = el("span");
    cells.phase = el("td");
    cells.eta = el("td", { class: "num" });
    cells.cancel = el("button", { type: "button", class: "danger", text: "Cancel", "aria-label": "Cancel task " + id });
    cells.retry = el("button", { type: "button", text: "Retry", "aria-label": "Retry task " + id });
    cells.cancel.addEventListener("click", () => act("cancel", id));
    cells.retry.addEventListener("click", () => act("retry", id));
    row.append(
      el("th", { scope: "row" }, cells.id, cells.name),
      el("td", {}, cells.status),
      cells.type,
      cells.user,
      cells.resources,
      el("td", { class: "progress" }, cells.bar, " ", cells.pct),
      cells.phase,
      cells.eta,
      el("td", {}, el("div", { class: "row-actions" }, cells.cancel, cells.retry)),
    );
    row.cells_ = cells;
    return row;
  }

  function updateRow(row, item) {
    const c = row.cells_;
    const view = state.views.get(item.task_id);
    setText(c.name, item.name || "");
    setText(c.status, item.status);
    c.status.className = "badge status-" + item.status;
    setText(c.type, item.task_type);
    setText(c.user, item.user_id || "–");
    setText(c.resources, [claimed(view), granted(view)].filter(Boolean).join(" — ") || "–");
    c.bar.value = item.progress;
    setText(c.pct, pct(item.progress));
    setText(c.phase, phaseText(item));
    setText(c.eta, item.status === "running" && view ? duration(view.eta_s) : "–");
    c.cancel.disabled = ENDED.has(item.status);
    c.retry.disabled = !(item.status === "failed" || item.status === "cancelled");
    row.classList.toggle("selected", item.task_id === state.selected);
  }

  function renderTable(page) {
    const body = document.querySelector("#tasks tbody");
    const seen = new Set();
    page.tasks.forEach((item, i) => {
      seen.add(item.task_id);
      let row = state.rows.get(item.task_id);
      if (!row) {
        row = makeRow(item.task_id);
        state.rows.set(item.task_id, row);
      }
      updateRow(row, item);
      if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);
    });
    for (const [id, row] of state.rows) {
      if (!seen.has(id)) {
        row.remove();
        state.rows.delete(id);
      }
    }
    $("tasks-empty").hidden = page.tasks.length > 0;
  }

  // -- one task ---------------------------------------------------------------------------------

  function fact(list, term, value) {
    if (value === null || value === undefined || value === "") return;
    list.append(el("dt", { text: term }), el("dd", { text: String(value) }));
  }

  function renderFacts(view) {
    const list = el("dl", { id: "task-facts", class: "facts" });
    fact(list, "Name", view.name);
    fact(list, "Type", view.task_type);
    fact(list, "User", view.user_id);
    fact(list, "Phase", view.message ? view.phase + " — " + view.message : view.phase);
    if (view.n_trials) fact(list, "Trials", (view.trial || 0) + " of " + view.n_trials);
    if (view.best_score !== null) fact(list, "Best score so far", num(view.best_score));
    const t = view.training;
    if (t) {
      fact(list, "Step", t.step + " of " + t.total_steps + " (epoch " + num(t.epoch, 2) + " of " + num(t.n_epochs, 2) + ")");
      fact(list, "Loss", num(t.loss));
      fact(list, "Learning rate", num(t.learning_rate, 8));
      if (t.samples_per_s) fact(list, "Throughput", num(t.samples_per_s, 1) + " samples/s");
      if (t.device) fact(list, "Device", t.device + (t.gpu_memory_mb ? ", peak " + mb(t.gpu_memory_mb) : ""));
    }
    fact(list, "Elapsed", view.elapsed_s === null ? null : duration(view.elapsed_s));
    if (view.status === "running") fact(list, "Time left", duration(view.eta_s));
    fact(list, "Waiting for", view.waiting_for);
    fact(list, "Queue position", view.queue_position);
    fact(list, "Claims", claimed(view));
    fact(list, "Granted", granted(view).replace(/^granted /, ""));
    fact(list, "Attempts", view.attempts + " of " + view.max_attempts);
    fact(list, "Retry plan", view.retry_plan);
    fact(list, "Model", view.model_id ? view.model_id + (view.model_deleted ? " (deleted)" : "") : null);
    if (view.metrics) {
      fact(list, "Metrics", Object.entries(view.metrics).map(([k, v]) => k + " " + num(v)).join(", "));
    }
    fact(list, "Created", view.created_at);
    fact(list, "Finished", view.finished_at);
    $("task-facts").replaceWith(list);
  }

  function renderCharts(view) {
    const s = state.series.get(view.task_id) || { trials: [], steps: [] };
    const box = el("div", { id: "charts", class: "charts" });
    let note = "";
    if (view.training || s.steps.length) {
      const last = s.steps[s.steps.length - 1];
      box.append(chart("Loss by step", [{ name: "loss", points: s.steps.map((p) => [p[0], p[1]]) }], {
        xMin: 0,
        xMax: view.training ? view.training.total_steps : undefined,
        label: "Training loss by optimizer step" + (last && last[1] !== null ? ", latest " + num(last[1]) : ""),
      }));
      box.append(chart("Learning rate by step", [{ name: "learning rate", points: s.steps.map((p) => [p[0], p[2]]) }], {
        xMin: 0,
        xMax: view.training ? view.training.total_steps : undefined,
        yMin: 0,
        label: "Learning rate by optimizer step",
      }));
      note = "Curves: what this page has seen since it opened.";
    } else if (view.n_trials) {
      const last = s.trials[s.trials.length - 1];
      box.append(chart("Best score so far by trial", [{ name: "best score", points: s.trials }], {
        xMin: 0,
        xMax: view.n_trials,
        step: true,
        label: "Best cross-validated score by trial" + (last ? ", " + num(last[1]) + " after trial " + last[0] : ""),
      }));
      note = "Curve: what this page has seen since it opened.";
    }
    $("charts").replaceWith(box);
    setText($("charts-note"), note);
  }

  function renderTask(view, logs) {
    $("task-empty").hidden = true;
    $("task-detail").hidden = false;
    setText($("task-title"), "Task " + view.task_id);
    const badge = $("task-status");
    setText(badge, view.status + (view.cancel_requested && !ENDED.has(view.status) ? " (cancelling)" : ""));
    badge.className = "badge status-" + view.status;
    $("task-progress").value = view.progress;
    setText($("task-progress-label"), pct(view.progress));
    renderFacts(view);
    const error = $("task-error");
    error.hidden = !view.error;
    if (view.error) setText(error, view.error.kind + ": " + view.error.message + (view.error.hint ? " " + view.error.hint : ""));
    const warnings = el("ul", { id: "task-warnings", class: "warnings" });
    for (const w of view.warnings || []) warnings.append(el("li", { text: w }));
    for (const a of view.alerts || []) warnings.append(el("li", { text: a.severity + ": " + a.message }));
    $("task-warnings").replaceWith(warnings);
    $("task-cancel").disabled = ENDED.has(view.status);
    $("task-retry").disabled = !(view.status === "failed" || view.status === "cancelled");
    renderCharts(view);
    if (logs) {
      const log = $("log");
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      const text = logs.lines.length ? logs.lines.join("\n") : "(nothing logged yet)";
      if (log.textContent !== text) {
        log.textContent = text;
        if (atEnd) log.scrollTop = log.scrollHeight;
      }
    }
  }

  function select(id, byPerson) {
    state.selected = id;
    if (byPerson) state.chosen = true;
    for (const [rowId, row] of state.rows) row.classList.toggle("selected", rowId === id);
    if (transport.name === "http") history.replaceState(null, "", "#task=" + encodeURIComponent(id));
    refresh();
  }

  // -- the machine ------------------------------------------------------------------------------

  function meter(list, term, value, detail) {
    const id = "m-" + term.toLowerCase().replace(/[^a-z0-9]+/g, "-");
    list.append(
      el("dt", { id }, term),
      el("dd", {}, el("meter", { min: "0", max: "100", low: "70", high: "90", optimum: "0", value: String(value), "aria-labelledby": id }), " " + pct(value) + (detail ? " · " + detail : "")),
    );
  }

  function renderMachine(queue) {
    const m = queue.machine;
    const list = el("dl", { id: "machine", class: "meters" });
    const cl = queue.claimed;
    meter(list, "CPU", m.cpu_percent, m.cpu_count + " cores" + (cl ? ", " + cl.cores + " claimed" : ""));
    meter(list, "Memory", m.memory_used_percent, mb(m.memory_available_mb) + " free" + (cl ? ", " + num(cl.memory_gb, 1) + " GB claimed" : ""));
    meter(list, "Disk", m.disk_used_percent, mb(m.disk_free_mb) + " free");
    for (const g of m.gpus || []) {
      const used = (100 * g.memory_used_mb) / Math.max(1, g.memory_total_mb);
      meter(list, "GPU " + g.index, g.utilization_percent === null ? used : g.utilization_percent,
        g.name + ", memory " + mb(g.memory_used_mb) + " of " + mb(g.memory_total_mb));
    }
    if (!(m.gpus || []).length) list.append(el("dt", { text: "GPU" }), el("dd", { text: "none seen" }));
    $("machine").replaceWith(list);
    const past = queue.history || [];
    const box = el("div", { id: "machine-chart", class: "charts" });
    const series = [
      { name: "CPU", points: past.map((p) => [-p.ago_s, p.cpu]) },
      { name: "memory", points: past.map((p) => [-p.ago_s, p.memory]) },
      { name: "disk", points: past.map((p) => [-p.ago_s, p.disk]) },
    ];
    if (past.some((p) => p.gpu !== null)) series.push({ name: "GPU", points: past.map((p) => [-p.ago_s, p.gpu]) });
    box.append(chart("Use over the last minutes (%)", series, {
      yMin: 0,
      yMax: 100,
      xFormat: (x) => (x >= -0.5 ? "now" : duration(-x) + " ago"),
      label: "Machine use history: CPU, memory, disk" + (series.length > 3 ? ", GPU" : ""),
    }));
    $("machine-chart").replaceWith(box);
    const alerts = el("ul", { id: "alerts", class: "alerts", "aria-labelledby": "alerts-title" });
    for (const a of queue.alerts || []) {
      const who = a.task_id ? " (" + a.task_id + ")" : "";
      alerts.append(el("li", { class: a.severity, text: a.severity + ": " + a.message + who }));
    }
    if (!(queue.alerts || []).length) alerts.append(el("li", { text: "No alerts." }));
    $("alerts").replaceWith(alerts);
  }

  // -- cancel and retry, each confirmed first ---------------------------------------------------

  function confirmDialog(title, text, yes) {
    const dialog = $("confirm");
    setText($("confirm-title"), title);
    setText($("confirm-text"), text);
    setText($("confirm-yes"), yes);
    return new Promise((resolve) => {
      const done = (answer) => {
        $("confirm-yes").onclick = null;
        $("confirm-no").onclick = null;
        dialog.onclose = null;
        if (dialog.open) dialog.close();
        resolve(answer);
      };
      $("confirm-yes").onclick = () => done(true);
      $("confirm-no").onclick = () => done(false);
      dialog.onclose = () => done(false);
      dialog.showModal();
    });
  }

  async function act(kind, id) {
    const cancel = kind === "cancel";
    const ok = await confirmDialog(
      (cancel ? "Cancel " : "Retry ") + id + "?",
      cancel
        ? "A waiting task never starts; a running one is stopped and its work is discarded."
        : "It is queued again with a fresh budget of attempts; a search resumes from its finished trials.",
      cancel ? "Cancel task" : "Retry task",
    );
    if (!ok) return;
    try {
      const view = await (cancel ? transport.cancel(id) : transport.retry(id));
      state.views.set(view.task_id, view);
      toast("Task " + id + " is " + view.status + ".");
    } catch (exc) {
      toast(exc.message, true);
    }
    refresh();
  }

  // -- the live loop ----------------------------------------------------------------------------

  async function refreshViews(page) {
    // Live tasks' full views every time (resources, grant, ETA), ended ones once: they never change.
    const live = page.tasks.filter((t) => !ENDED.has(t.status) && t.task_id !== state.selected).slice(0, 20);
    const fresh = page.tasks.filter((t) => ENDED.has(t.status) && !state.views.has(t.task_id)).slice(0, 5);
    const views = await Promise.all([...live, ...fresh].map((t) => transport.task(t.task_id).catch(() => null)));
    for (const view of views) {
      if (view) {
        state.views.set(view.task_id, view);
        observe(view);
      }
    }
  }

  async function refreshTask(id) {
    let view;
    try {
      view = await transport.task(id);
    } catch (exc) {
      if (exc.kind === "auth") throw exc;
      $("task-detail").hidden = true;
      $("task-empty").hidden = false;
      setText($("task-empty"), "Task " + id + ": " + exc.message);
      return;
    }
    const logs = await transport.logs(id, LOG_TAIL).catch(() => null);
    state.views.set(view.task_id, view);
    observe(view);
    if (state.selected === id) renderTask(view, logs);
  }

  async function refresh() {
    if (state.busy) {
      state.again = true; // asked while a refresh runs: one more right after it
      return;
    }
    state.again = false;
    state.busy = true;
    clearTimeout(state.timer);
    try {
      const [queue, page] = await Promise.all([transport.queue(), transport.tasks(LIST_LIMIT)]);
      if (!state.chosen && !state.selected) {
        const first = page.tasks.find((t) => t.status === "running") || page.tasks[0];
        if (first) state.selected = first.task_id;
      }
      await Promise.all([refreshViews(page), state.selected ? refreshTask(state.selected) : null]);
      renderSummary(queue);
      renderMachine(queue);
      renderTable(page);
      state.triedToken = false;
      connection((state.paused ? "Paused" : "Live") + " · updated " + new Date().toLocaleTimeString());
    } catch (exc) {
      if (exc.kind === "auth") {
        askForToken();
        return;
      }
      connection("Cannot update: " + exc.message + " Retrying…", true);
    } finally {
      state.busy = false;
      if (state.again) setTimeout(refresh, 0);
      else schedule();
    }
  }

  function schedule() {
    clearTimeout(state.timer);
    if (state.paused || state.needsToken || document.hidden) return;
    state.timer = setTimeout(refresh, transport.pollMs);
  }

  function askForToken() {
    const refusedOne = state.triedToken;
    state.needsToken = true;
    $("token-panel").hidden = false;
    $("main").hidden = true;
    $("pause").hidden = true;
    $("token-error").hidden = !refusedOne;
    connection("Waiting for the token", true);
    $("token-input").focus();
  }

  function applyHostContext(context) {
    const vars = context && context.styles && context.styles.variables;
    if (vars) for (const [k, v] of Object.entries(vars)) if (v) document.documentElement.style.setProperty(k, v);
    if (context && context.theme) document.documentElement.style.colorScheme = context.theme;
  }

  function wire() {
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      transport.setToken($("token-input").value);
      $("token-input").value = "";
      state.needsToken = false;
      state.triedToken = true;
      $("token-panel").hidden = true;
      $("main").hidden = false;
      $("pause").hidden = false;
      refresh();
    });
    $("pause").addEventListener("click", () => {
      state.paused = !state.paused;
      $("pause").setAttribute("aria-pressed", String(state.paused));
      setText($("pause"), state.paused ? "Resume updates" : "Pause updates");
      if (state.paused) connection("Paused");
      else refresh();
    });
    $("task-cancel").addEventListener("click", () => state.selected && act("cancel", state.selected));
    $("task-retry").addEventListener("click", () => state.selected && act("retry", state.selected));
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) clearTimeout(state.timer);
      else if (!state.paused) refresh();
    });
    const wanted = /(?:^|&)task=([^&]+)/.exec(location.hash.slice(1));
    if (wanted) {
      state.selected = decodeURIComponent(wanted[1]);
      state.chosen = true;
    }
    if (transport.onToolInput) {
      transport.onToolInput((args) => {
        if (args.task_id) select(String(args.task_id), true);
      });
    }
    if (transport.onHostContext) transport.onHostContext(applyHostContext);
  }

  async function main() {
    wire();
    try {
      applyHostContext(await transport.start());
    } catch (exc) {
      connection("Cannot start: " + exc.message, true);
      return;
    }
    refresh();
  }

  main();
})();
