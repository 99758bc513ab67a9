// aq dashboard: draws each page from the JSON API and keeps it current from the
// live stream (/api/stream, server-sent events). No library, nothing fetched
// from another host; every value reaches the page as text, never as HTML.
"use strict";
(function () {
  const body = document.body;
  const BASE = body.dataset.base || "";
  const PAGE = body.dataset.page;
  const CSRF = body.dataset.csrf;
  const READ_ONLY = body.dataset.readOnly === "1";
  const ARG = body.dataset.arg || "";
  const content = document.getElementById("content");
  const FINAL = new Set(["succeeded", "failed", "dead-lettered", "cancelled", "expired"]);
  const STATES = ["queued", "scheduled", "received", "running", "retrying", "succeeded",
    "failed", "dead-lettered", "cancelled", "expired"];

  // -- small helpers -------------------------------------------------------------------
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const num = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString());
  const rate = (r) => (r === null || r === undefined ? "–" : r < 10 ? r.toFixed(1) : Math.round(r).toLocaleString());
  function clock(ts) {
    if (!ts) return "–";
    const d = new Date(ts * 1000);
    const today = new Date().toDateString() === d.toDateString();
    return today ? d.toLocaleTimeString() : d.toLocaleString();
  }
  function span(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }
  const ago = (ts) => (ts ? span(Date.now() / 1000 - ts) + " ago" : "–");
  const until = (ts) => (ts ? (ts > Date.now() / 1000 ? "in " + span(ts - Date.now() / 1000) : ago(ts)) : "–");
  function ms(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    return seconds < 1 ? (seconds * 1000).toFixed(1) + " ms" : seconds.toFixed(2) + " s";
  }
  const json = (value) => JSON.stringify(value, null, 2);
  const badge = (state) => h("span", { class: "state state-" + state, text: state });
  const taskLink = (id, short) => h("a", { href: BASE + "/tasks/" + encodeURIComponent(id), class: "mono", title: id,
    text: short && id.length > 14 ? id.slice(0, 12) + "…" : id });

  function table(columns, rows, emptyText) {
    const head = h("tr", {}, columns.map((c) => h("th", { class: c.cls || "", text: c.label })));
    const lines = rows.map((row) => h("tr", { dataset: row.id ? { id: row.id } : {} },
      columns.map((c) => {
        const value = c.get(row);
        const clipped = (c.cls || "").includes("clip") && !(value instanceof Node);
        return h("td", { class: c.cls || "", title: clipped ? String(value ?? "") : null },
          value instanceof Node ? value : String(value ?? "–"));
      })));
    if (!rows.length) lines.push(h("tr", {}, h("td", { colspan: columns.length, class: "empty", text: emptyText || "Nothing here yet." })));
    return h("div", { class: "scroll" }, h("table", {}, h("thead", {}, head), h("tbody", {}, lines)));
  }
  const panel = (title, ...children) => h("section", { class: "panel" }, title ? h("h2", { text: title }) : null, children);
  function replace(node, ...children) { node.replaceChildren(...children.flat().filter((c) => c)); }

  function toast(text, isError) {
    const box = h("div", { class: isError ? "error" : "", text });
    document.getElementById("toast").append(box);
    setTimeout(() => box.remove(), isError ? 8000 : 4000);
  }

  function confirmed(text) {
    const dialog = document.getElementById("confirm");
    document.getElementById("confirm-text").textContent = text;
    dialog.returnValue = "";  // Escape closes it without setting one: that is no
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.showModal();
    });
  }

  async function api(path) {
    const response = await fetch(BASE + path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (response.status === 401) { location.href = BASE + "/login"; throw new Error("signed out"); }
    const data = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
    if (!response.ok) throw new Error(data.error || response.statusText);
    return data;
  }

  async function act(action, payload, question) {
    if (question && !(await confirmed(question))) return false;
    try {
      const response = await fetch(BASE + "/api/actions/" + action, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-AQ-CSRF": CSRF },
        body: JSON.stringify(payload),
      });
      const data = await response.json().catch(() => ({ error: response.statusText }));
      if (!response.ok) { toast(data.error || "refused", true); return false; }
      toast(data.message || "done");
      return true;
    } catch (error) {
      toast(String(error), true);
      return false;
    }
  }
  const actionButton = (label, onclick, cls) =>
    READ_ONLY ? null : h("button", { type: "button", class: cls || "", onclick, text: label });

  // -- the live stream -----------------------------------------------------------------
  const listeners = [];
  let latest = null;
  let retryIn = 1000;
  function connect() {
    const indicator = document.getElementById("live");
    const source = new EventSource(BASE + "/api/stream");
    source.addEventListener("tick", (message) => {
      retryIn = 1000;
      latest = JSON.parse(message.data);
      indicator.textContent = "live";
      indicator.className = "live on";
      const problem = document.getElementById("problem");
      problem.hidden = !latest.problem;
      problem.textContent = latest.problem ? "The dashboard cannot read everything: " + latest.problem : "";
      for (const listener of listeners) listener(latest);
    });
    source.addEventListener("error", () => {
      indicator.textContent = "reconnecting";
      indicator.className = "live off";
      // The browser retries by itself after a dropped connection, but gives up for
      // good after an error answer (a busy dashboard, a proxy's 502): start over.
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(connect, retryIn);
        retryIn = Math.min(30000, retryIn * 2);
      }
    });
  }
  const onTick = (listener) => listeners.push(listener);

  // A refresh that runs at most once per `every` ms, the last call winning.
  function throttled(fn, every) {
    let waiting = false, again = false;
    return async function run() {
      if (waiting) { again = true; return; }
      waiting = true;
      try { await fn(); } catch (error) { /* shown on the next success */ }
      setTimeout(() => { waiting = false; if (again) { again = false; run(); } }, every);
    };
  }

  // -- overview ------------------------------------------------------------------------
  function chart(points) {
    const ns = "http://www.w3.org/2000/svg";
    const s = (tag, attrs) => { const n = document.createElementNS(ns, tag); for (const k in attrs) n.setAttribute(k, attrs[k]); return n; };
    const W = 900, H = 220, L = 44, R = 8, T = 10, B = 24;
    const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "tasks finished and failed per second" });
    // The window: the last hour, or less while the dashboard has not seen one
    // (at least 10 minutes), so a fresh dashboard's chart is not a sliver.
    const now = Date.now() / 1000;
    const minutes = points.length ? Math.min(60, Math.max(10, Math.ceil((now - points[0][0]) / 600) * 10)) : 10;
    const span = minutes * 60, start = now - span;
    // Buckets with no finished task are not sent: fill them with zeros up to now.
    const perSecond = [];
    const kept = new Map(points.map((p) => [p[0], p]));
    if (points.length) {
      for (let t = points[0][0]; t <= now; t += 10) {
        const p = kept.get(t) || [t, 0, 0];
        perSecond.push([t, p[1] / 10, p[2] / 10]);
      }
    }
    const top = Math.max(1, ...perSecond.map((p) => p[1]));
    // Four steps of a round size (1, 2, 2.5 or 5 times a power of ten).
    const rough = top / 4, power = Math.pow(10, Math.floor(Math.log10(rough)));
    const stepSize = [1, 2, 2.5, 5, 10].map((m) => m * power).find((v) => v >= rough);
    const ymax = stepSize * 4;
    const x = (t) => L + ((t - start) / span) * (W - L - R);
    const y = (v) => H - B - (v / ymax) * (H - T - B);
    for (let i = 0; i <= 4; i++) {
      const v = (ymax * i) / 4;
      svg.append(s("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "axis" }));
      const label = s("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" });
      label.textContent = v >= 100 ? Math.round(v).toLocaleString() : String(+v.toFixed(2));
      svg.append(label);
    }
    const step = minutes === 60 ? 15 : minutes <= 20 ? 5 : 10;
    for (let m = minutes; m >= 0; m -= step) {
      const label = s("text", { x: x(now - m * 60), y: H - 6, "text-anchor": m === minutes ? "start" : m === 0 ? "end" : "middle", class: "tick" });
      label.textContent = m === 0 ? "now" : "-" + m + " min";
      svg.append(label);
    }
    if (perSecond.length) {
      const path = (i) => perSecond.map((p, k) => (k ? "L" : "M") + x(p[0] + 5).toFixed(1) + " " + y(p[i]).toFixed(1)).join(" ");
      const first = x(perSecond[0][0] + 5).toFixed(1), last = x(perSecond[perSecond.length - 1][0] + 5).toFixed(1);
      svg.append(s("path", { d: path(1) + ` L${last} ${y(0)} L${first} ${y(0)} Z`, class: "done-area" }));
      svg.append(s("path", { d: path(1), class: "done" }));
      svg.append(s("path", { d: path(2), class: "failed" }));
    }
    return h("div", { class: "chart" }, svg, h("div", { class: "legend" },
      h("span", {}, h("i", { class: "swatch-done" }), "finished / s"),
      h("span", {}, h("i", { class: "swatch-failed" }), "failed / s"),
      h("span", { text: `10-second buckets, last ${minutes} min` })));
  }

  function card(label, value, sub, cls) {
    return h("div", { class: "panel card" }, h("div", { class: "label", text: label }),
      h("div", { class: "value " + (cls || ""), text: value }), sub ? h("div", { class: "sub", text: sub }) : null);
  }

  function queuesTable(queues, withActions) {
    const columns = [
      { label: "queue", get: (q) => q.queue, cls: "mono" },
      { label: "ready", get: (q) => num(q.ready), cls: "num" },
      { label: "delayed", get: (q) => num(q.delayed), cls: "num" },
      { label: "unacked", get: (q) => num(q.unacked), cls: "num" },
      { label: "dead", get: (q) => (q.dead ? h("a", { href: BASE + "/dead?queue=" + encodeURIComponent(q.queue), text: num(q.dead) }) : num(q.dead)), cls: "num" },
      withActions ? { label: "consumers", get: (q) => num(q.consumers), cls: "num" } : null,
      { label: "taken/s", get: (q) => rate(q.taken_rate), cls: "num" },
      { label: "done/s", get: (q) => rate(q.done_rate), cls: "num" },
    ].filter((c) => c);
    if (withActions && !READ_ONLY) {
      columns.push({ label: "", get: (q) => actionButton("Purge", async () => {
        const count = (q.ready || 0) + (q.delayed || 0);
        if (await act("purge", { queue: q.queue }, `Delete the ${num(count)} ready and delayed messages of ${q.queue}? This cannot be undone.`)) refreshSoon();
      }, "danger") });
    }
    return table(columns, queues, "No queue known yet.");
  }

  function tasksTable(tasks) {
    return table([
      { label: "task", get: (t) => taskLink(t.id) },
      { label: "name", get: (t) => t.name || "?", cls: "mono" },
      { label: "state", get: (t) => badge(t.state) },
      { label: "queue", get: (t) => t.queue, cls: "mono" },
      { label: "attempt", get: (t) => t.attempt, cls: "num" },
      { label: "worker", get: (t) => t.worker, cls: "mono" },
      { label: "runtime", get: (t) => ms(t.runtime), cls: "num" },
      { label: "updated", get: (t) => clock(t.updated) },
    ], tasks, "No task seen yet. Tasks show here as workers started with --events report them.");
  }

  let refreshSoon = () => {};

  function overviewPage() {
    let recent = [];
    function draw(data) {
      const failedShare = data.timeline.reduce((a, p) => a + p[2], 0);
      const finished = data.timeline.reduce((a, p) => a + p[1], 0);
      const changed = data.changed || [];  // newest first
      const ids = new Set(changed.map((t) => t.id));
      recent = [...changed, ...recent.filter((r) => !ids.has(r.id))];
      recent = recent.slice(0, 10);
      replace(content,
        h("div", { class: "grid cards" },
          card("workers online", num(data.online), `${num(data.workers.length)} known`),
          card("finished / s", rate(data.rate), "over the last 10 s"),
          card("failed (last hour)", num(failedShare), finished ? (100 * failedShare / finished).toFixed(1) + "% of " + num(finished) : "no task finished", failedShare ? "bad" : ""),
          card("tasks remembered", num(data.remembered), `newest ${num(data.limit)} kept`)),
        panel("Throughput", chart(data.timeline)),
        h("div", { class: "grid two section" },
          panel("Queues", queuesTable(data.queues, false)),
          panel("Latest tasks", table([
            { label: "task", get: (t) => taskLink(t.id, true) },
            { label: "name", get: (t) => t.name || "?", cls: "mono" },
            { label: "state", get: (t) => badge(t.state) },
            { label: "runtime", get: (t) => ms(t.runtime), cls: "num" },
            { label: "updated", get: (t) => clock(t.updated) },
          ], recent, "No task seen yet. Tasks show here as workers started with --events report them."))));
    }
    api("/api/overview").then((data) => { data.changed = []; draw(data); });
    onTick(draw);
  }

  // -- workers -------------------------------------------------------------------------
  function workersPage() {
    const list = h("div");
    const limitForm = READ_ONLY ? null : h("form", { class: "toolbar", id: "rate-limit" },
      h("strong", { text: "Rate limit" }),
      h("select", { name: "task", required: true, "aria-label": "task" }),
      h("input", { name: "rate", placeholder: "10/s, 100/m, or none", required: true, "aria-label": "rate", size: 18 }),
      h("button", { type: "submit", class: "primary", text: "Apply to all workers" }),
      h("span", { class: "muted", text: "Holds until the workers restart." }));
    if (limitForm) {
      limitForm.addEventListener("submit", async (e) => {
        e.preventDefault();
        const form = new FormData(limitForm);
        await act("rate-limit", { task: form.get("task"), rate: form.get("rate") },
          `Set the rate limit of ${form.get("task")} to ${form.get("rate")} on every live worker?`);
      });
    }
    replace(content, panel(null, list), limitForm ? h("div", { class: "panel section" }, limitForm) : null);
    function draw(data) {
      replace(list, table([
        { label: "worker", get: (w) => w.worker, cls: "mono" },
        { label: "host", get: (w) => w.host },
        { label: "pid", get: (w) => w.pid, cls: "num" },
        { label: "state", get: (w) => badge(w.state) },
        { label: "concurrency", get: (w) => num(w.concurrency), cls: "num" },
        { label: "in flight", get: (w) => num(w.active), cls: "num" },
        { label: "processed", get: (w) => num(w.processed), cls: "num" },
        { label: "uptime", get: (w) => (w.started_at && w.state === "online" ? span(data.now - w.started_at) : "–") },
        { label: "version", get: (w) => w.version || "–" },
        { label: "last heartbeat", get: (w) => ago(w.seen) },
        { label: "", get: (w) => (w.state === "online" ? actionButton("Shut down", () =>
            act("shutdown", { worker: w.worker }, `Shut down worker ${w.worker} on ${w.host}? It finishes its tasks in flight and is not restarted.`), "danger") : "") },
      ], data.workers, "No worker has answered yet."));
      if (limitForm) {
        const select = limitForm.querySelector("select");
        const names = data.tasks.map((t) => t.name);
        if ([...select.options].map((o) => o.value).join("\n") !== names.join("\n")) {
          const chosen = select.value;
          replace(select, names.map((n) => h("option", { value: n, text: n })));
          if (names.includes(chosen)) select.value = chosen;
        }
      }
    }
    api("/api/overview").then(draw);
    onTick(draw);
  }

  // -- tasks ---------------------------------------------------------------------------
  function tasksPage() {
    const params = new URLSearchParams(location.search);
    let offset = Number(params.get("offset") || 0);
    const search = h("input", { type: "search", name: "q", placeholder: "Task id, or part of a name", value: params.get("q") || "", "aria-label": "search" });
    const wantedName = params.get("name") || "";
    const name = h("select", { name: "name", "aria-label": "task name" }, h("option", { value: "", text: "any task" }),
      wantedName ? h("option", { value: wantedName, text: wantedName }) : null);
    name.value = wantedName;
    const state = h("select", { name: "state", "aria-label": "state" }, h("option", { value: "", text: "any state" }),
      STATES.map((s) => h("option", { value: s, text: s })));
    state.value = params.get("state") || "";
    const form = h("form", { class: "toolbar", role: "search" }, search, name, state,
      h("button", { type: "submit", class: "primary", text: "Search" }), h("span", { class: "grow" }),
      h("span", { class: "muted", id: "count" }));
    const list = h("div");
    const pager = h("div", { class: "pager" });
    replace(content, panel(null, form, list, pager));
    async function load() {
      const query = new URLSearchParams({ q: search.value, name: name.value, state: state.value, offset: String(offset), limit: "50" });
      const data = await api("/api/tasks?" + query);
      if ([...name.options].slice(1).map((o) => o.value).join("\n") !== data.names.join("\n")) {
        const chosen = name.value;
        const names = data.names.includes(chosen) || !chosen ? data.names : [chosen, ...data.names];
        replace(name, h("option", { value: "", text: "any task" }), names.map((n) => h("option", { value: n, text: n })));
        name.value = chosen;
      }
      document.getElementById("count").textContent = `${num(data.total)} matching of those remembered`;
      const text = search.value.trim();
      const lookUp = !data.total && text && /^[\w.:@-]+$/.test(text)
        ? h("p", { class: "muted" }, "Not among the tasks remembered: ",
          h("a", { href: BASE + "/tasks/" + encodeURIComponent(text), text: "look " + text + " up by its id" }),
          " (through the store).")
        : null;
      replace(list, lookUp, tasksTable(data.tasks));
      replace(pager,
        h("button", { type: "button", disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - 50); load(); }, text: "Newer" }),
        h("span", { text: data.total ? `${offset + 1}–${Math.min(offset + 50, data.total)}` : "" }),
        h("button", { type: "button", disabled: offset + 50 >= data.total, onclick: () => { offset += 50; load(); }, text: "Older" }));
    }
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      offset = 0;
      const text = search.value.trim();
      const query = new URLSearchParams({ q: text, name: name.value, state: state.value });
      history.replaceState(null, "", "?" + query);
      load();
    });
    const reload = throttled(load, 1000);
    load();
    onTick((data) => { if (data.changed.length && offset === 0) reload(); });
  }

  function taskPage() {
    async function load() {
      const data = await api("/api/tasks/" + encodeURIComponent(ARG));
      const task = data.task;
      const stored = data.status || null;
      const outcome = data.outcome || null;
      const state = task ? task.state : stored ? stored.state : "unknown";
      document.querySelector("h1").textContent = "Task " + (task?.name || stored?.name || "");
      const facts = h("dl", { class: "facts" },
        h("dt", { text: "id" }), h("dd", { class: "mono", text: ARG }),
        h("dt", { text: "state" }), h("dd", {}, badge(state)),
        h("dt", { text: "task" }), h("dd", { class: "mono", text: task?.name || stored?.name || "–" }),
        h("dt", { text: "queue" }), h("dd", { class: "mono", text: task?.queue || stored?.queue || "–" }),
        h("dt", { text: "attempt" }), h("dd", { text: task?.attempt ?? stored?.attempt ?? "–" }),
        h("dt", { text: "worker" }), h("dd", { class: "mono", text: task?.worker || stored?.worker || "–" }),
        h("dt", { text: "sent" }), h("dd", { text: clock(task?.sent) }),
        task?.eta ? [h("dt", { text: "due" }), h("dd", { text: until(task.eta) })] : null,
        task?.reason ? [h("dt", { text: "dead-letter reason" }), h("dd", { text: task.reason })] : null);
      const actions = h("div", { class: "toolbar section" },
        !FINAL.has(state) ? actionButton("Cancel", async () => {
          if (await act("cancel", { task_id: ARG }, `Cancel task ${ARG}? If it is running it is stopped.`)) load();
        }, "danger") : null,
        state === "failed" || state === "dead-lettered" ? actionButton("Retry", async () => {
          if (await act("retry", { task_id: ARG }, `Send task ${ARG} back to its queue from the dead letters?`)) load();
        }, "primary") : null);
      const sections = [h("div", { class: "grid two" }, panel("Summary", facts, actions), panel("Data",
        task && (task.args !== null || task.kwargs !== null)
          ? [h("h2", { text: "Arguments" }), h("pre", { text: json({ args: task.args, kwargs: task.kwargs }) })]
          : h("p", { class: "muted", text: "Arguments are shown for tasks declared with event_data=True." }),
        task?.has_result ? [h("h2", { class: "section", text: "Result" }), h("pre", { text: json(task.result) })]
          : outcome && outcome.kind !== "error" ? [h("h2", { class: "section", text: "Result" }), h("pre", { text: json(outcome.value) })] : null))];
      const error = outcome?.kind === "error" ? outcome : task?.error;
      if (error) {
        sections.push(h("div", { class: "section" }, panel("Error",
          h("p", {}, h("strong", { class: "mono", text: error.type || "error" }), ": ", error.message || ""),
          outcome?.traceback ? h("pre", { text: outcome.traceback }) : h("p", { class: "muted", text: "The traceback is kept with the result, by brokers with result_ttl." }))));
      }
      if (task && task.attempts.length) {
        sections.push(h("div", { class: "section" }, panel("Attempts", table([
          { label: "attempt", get: (a) => a.attempt, cls: "num" },
          { label: "worker", get: (a) => a.worker, cls: "mono" },
          { label: "received", get: (a) => clock(a.received) },
          { label: "started", get: (a) => clock(a.started) },
          { label: "ended", get: (a) => clock(a.ended) },
          { label: "runtime", get: (a) => ms(a.runtime), cls: "num" },
          { label: "outcome", get: (a) => (a.outcome ? badge(a.outcome) : "–") },
          { label: "error", get: (a) => (a.error ? `${a.error.type}: ${a.error.message}` : "–"), cls: "clip" },
        ], task.attempts))));
      }
      if (data.workflow && data.workflow.length) {
        sections.push(h("div", { class: "section" }, panel("Workflow", h("p", {}, "Part of workflow ", taskLink(task.root)),
          table([
            { label: "step", get: (s) => (s.step === null || s.step === undefined ? "–" : JSON.stringify(s.step)), cls: "mono" },
            { label: "task", get: (s) => (s.id === ARG ? h("strong", { class: "mono", text: s.id }) : taskLink(s.id)) },
            { label: "name", get: (s) => s.name, cls: "mono" },
            { label: "state", get: (s) => badge(s.state) },
          ], data.workflow))));
      }
      if (!task && !stored && !outcome) {
        sections.unshift(h("p", { class: "muted", text: data.store_error || "This task is not among those remembered, and the store knows nothing of it (it may be older than result_ttl)." }));
      }
      replace(content, sections);
    }
    const reload = throttled(load, 1000);
    load().catch((error) => replace(content, h("p", { class: "muted", text: String(error) })));
    onTick((data) => { if (data.more || data.changed.some((t) => t.id === ARG)) reload(); });
  }

  // -- queues --------------------------------------------------------------------------
  function queuesPage() {
    const list = h("div");
    replace(content, panel(null, list, h("p", { class: "muted section", text: "Purge deletes ready and delayed messages; dead letters are handled on their own page." })));
    const draw = (data) => replace(list, queuesTable(data.queues, true));
    refreshSoon = () => api("/api/overview").then(draw);
    refreshSoon();
    onTick(draw);
  }

  // -- dead letters --------------------------------------------------------------------
  function deadPage() {
    const params = new URLSearchParams(location.search);
    const queue = h("select", { "aria-label": "queue" });
    const list = h("div");
    const selectedIds = () => [...list.querySelectorAll("input[type=checkbox][data-letter]:checked")].map((c) => c.dataset.letter);
    const shown = h("span", { class: "muted" });
    const bar = h("div", { class: "toolbar" }, h("label", {}, "Queue ", queue), shown, h("span", { class: "grow" }),
      actionButton("Select all", () => {
        const boxes = [...list.querySelectorAll("input[type=checkbox][data-letter]")];
        const all = boxes.every((b) => b.checked);
        for (const box of boxes) box.checked = !all;
      }),
      actionButton("Requeue selected", async () => {
        const ids = selectedIds();
        if (!ids.length) { toast("Select dead letters first.", true); return; }
        if (await act("requeue", { queue: queue.value, ids }, `Send ${ids.length} dead letter(s) back to ${queue.value}?`)) load();
      }),
      actionButton("Requeue all", async () => {
        if (await act("requeue", { queue: queue.value }, `Send every dead letter of ${queue.value} back to the queue?`)) load();
      }),
      actionButton("Purge", async () => {
        if (await act("purge-dead", { queue: queue.value }, `Delete every dead letter of ${queue.value}? This cannot be undone.`)) load();
      }, "danger"));
    replace(content, panel(null, bar, list));
    async function fillQueues() {
      const all = await api("/api/overview");
      const names = all.queues.map((q) => q.queue);
      replace(queue, names.map((n) => h("option", { value: n, text: n })));
      const wanted = params.get("queue");
      queue.value = wanted && names.includes(wanted) ? wanted : names[0] || "";
    }
    async function load() {
      if (!queue.value) { replace(list, h("p", { class: "empty", text: "No queue known yet." })); return; }
      const data = await api("/api/dead?queue=" + encodeURIComponent(queue.value));
      const count = data.letters.length;
      shown.textContent = lastDead > count ? `the oldest ${num(count)} of ${num(lastDead)}` : `${num(count)} dead letter(s)`;
      replace(list, table([
        { label: "", get: (l) => (READ_ONLY ? "" : h("input", { type: "checkbox", "aria-label": "select", dataset: { letter: l.id } })) },
        { label: "task", get: (l) => (l.task_id ? taskLink(l.task_id) : h("span", { class: "muted", text: l.problem || "unreadable" })) },
        { label: "name", get: (l) => l.name || "–", cls: "mono" },
        { label: "reason", get: (l) => l.reason, cls: "clip" },
        { label: "dead since", get: (l) => clock(l.dead_at) },
        { label: "attempt", get: (l) => l.attempt ?? "–", cls: "num" },
        { label: "arguments", get: (l) => (l.args !== undefined ? JSON.stringify(l.args) : "–"), cls: "mono clip" },
        { label: "", get: (l) => actionButton("Requeue", async () => {
          if (await act("requeue", { queue: l.queue, ids: [l.id] })) load();
        }) },
      ], data.letters, "No dead letters in this queue."));
    }
    queue.addEventListener("change", () => { history.replaceState(null, "", "?queue=" + encodeURIComponent(queue.value)); load(); });
    const reload = throttled(load, 2000);
    const refill = throttled(() => fillQueues().then(load), 5000);
    let lastDead;
    fillQueues().then(load);
    onTick((data) => {  // read the letters again when the queue's dead count changes
      if (!queue.value) { if (data.queues.length) refill(); return; }
      const q = data.queues.find((x) => x.queue === queue.value);
      const dead = q ? q.dead : null;
      if (dead !== lastDead) { lastDead = dead; reload(); }
    });
  }

  // -- schedules -----------------------------------------------------------------------
  function schedulesPage() {
    async function load() {
      const data = await api("/api/schedules");
      const leader = h("p", {}, "Active scheduler: ",
        data.scheduler ? h("strong", { class: "mono", text: data.scheduler }) : h("span", { class: "muted", text: data.store ? "none leads now (start aq scheduler APP, or aq worker --scheduler)" : "unknown without a store" }));
      replace(content, panel(null, leader, table([
        { label: "schedule", get: (s) => s.name, cls: "mono" },
        { label: "task", get: (s) => s.task, cls: "mono" },
        { label: "when", get: (s) => s.spec },
        { label: "next fire", get: (s) => (s.paused ? "–" : until(s.next_fire)) },
        { label: "last fire", get: (s) => (s.last_fire ? clock(s.last_fire) : "never") },
        { label: "state", get: (s) => badge(s.paused ? "paused" : "active") },
        { label: "", get: (s) => (data.store ? actionButton(s.paused ? "Resume" : "Pause", async () => {
          if (await act(s.paused ? "resume" : "pause", { name: s.name })) load();
        }) : "") },
      ], data.schedules, "No schedules.")));
    }
    load();
    setInterval(load, 5000);
  }

  // -- start ---------------------------------------------------------------------------
  document.getElementById("theme").addEventListener("click", () => {
    const root = document.documentElement;
    const dark = root.dataset.theme ? root.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
    root.dataset.theme = dark ? "light" : "dark";
    try { localStorage.setItem("aq-theme", root.dataset.theme); } catch (e) { /* not kept */ }
  });
  const pages = { overview: overviewPage, workers: workersPage, tasks: tasksPage, task: taskPage, queues: queuesPage, dead: deadPage, schedules: schedulesPage };
  pages[PAGE]();
  connect();
})();
