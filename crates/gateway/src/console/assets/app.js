// The Portcullis console: a live request log over SSE, the routing tree with each target's
// health, and spend and limits. Plain DOM, no dependencies; text is only ever set with
// textContent, never parsed as HTML.
"use strict";

const MAX_ENTRIES = 1000;
const entries = []; // newest first
let selected = null;
let source = null;
let timers = [];

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

async function session() {
  const r = await fetch("/public/auth/session", { credentials: "same-origin" });
  return r.ok && (await r.json()).authenticated === true;
}

async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  const r = await fetch("/public/auth", {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ admin_token: $("token").value }),
  });
  if (r.ok) {
    $("token").value = "";
    start();
  } else {
    $("login-error").textContent = r.status === 401 ? "Wrong token." : "Login failed (" + r.status + ").";
  }
}

async function logout() {
  await fetch("/public/auth/logout", { method: "POST", credentials: "same-origin" });
  stop();
  showLogin();
}

function showLogin() {
  $("app").hidden = true;
  $("tabs").hidden = true;
  $("login").hidden = false;
  $("token").focus();
}

function stop() {
  if (source) source.close();
  source = null;
  timers.forEach(clearInterval);
  timers = [];
}

function start() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("tabs").hidden = false;
  source = new EventSource("/log/stream");
  source.addEventListener("connected", (e) => {
    $("conn").textContent = "live (client " + e.data + ")";
    $("conn").dataset.state = "live";
  });
  source.addEventListener("heartbeat", () => {
    $("conn").textContent = "live";
  });
  source.addEventListener("log", (e) => add(JSON.parse(e.data)));
  source.onerror = async () => {
    $("conn").textContent = "reconnecting…";
    $("conn").dataset.state = "down";
    if (!(await session())) {
      stop();
      showLogin();
    }
  };
  timers.push(setInterval(() => visible("routing") && loadTree(), 2000));
  timers.push(setInterval(() => visible("limits") && loadLimits(), 5000));
}

function visible(view) {
  return !$("view-" + view).hidden;
}

function show(view) {
  for (const b of document.querySelectorAll("#tabs [data-view]")) {
    b.classList.toggle("active", b.dataset.view === view);
    $("view-" + b.dataset.view).hidden = b.dataset.view !== view;
  }
  if (view === "routing") loadTree();
  if (view === "limits") loadLimits();
}

// --- the request log ---------------------------------------------------------------------

function add(entry) {
  if (entries.some((e) => e.id === entry.id)) return;
  entries.unshift(entry);
  if (entries.length > MAX_ENTRIES) entries.pop();
  if (matches(entry)) {
    const body = $("log").tBodies[0];
    body.prepend(row(entry));
    while (body.rows.length > MAX_ENTRIES) body.deleteRow(-1);
  }
  count();
}

function matches(entry) {
  const status = $("f-status").value.trim().toLowerCase();
  if (status) {
    const s = String(entry.status);
    const ok = /^[1-5]xx$/.test(status) ? s[0] === status[0] : s.startsWith(status);
    if (!ok) return false;
  }
  const provider = $("f-provider").value.trim().toLowerCase();
  if (provider && !String(entry.provider || "").toLowerCase().includes(provider)) return false;
  const meta = $("f-meta").value.trim();
  if (meta) {
    const [k, v] = meta.split("=", 2);
    const value = (entry.metadata || {})[k.trim()];
    if (value === undefined) return false;
    if (v !== undefined && String(value) !== v.trim()) return false;
  }
  return true;
}

function refilter() {
  const body = $("log").tBodies[0];
  body.replaceChildren(...entries.filter(matches).map(row));
  count();
}

function count() {
  const shown = $("log").tBodies[0].rows.length;
  $("count").textContent = shown + " of " + entries.length + " requests";
}

const num = (n, digits) => (typeof n === "number" ? n.toFixed(digits) : "");

function row(e) {
  const tokens = e.usage ? e.usage.total_tokens : "";
  const cost = typeof e.cost_usd === "number" ? "$" + e.cost_usd.toFixed(6) : "";
  const guards = (e.guards || []).map((g) => (g.passed ? "✓" : "✗") + g.id).join(" ");
  const tr = el(
    "tr",
    { class: "entry", "data-id": e.id, "data-status": e.status, "data-provider": e.provider || "" },
    el("td", {}, (e.time || "").replace("T", " ").replace("Z", "")),
    el("td", { class: "s" + String(e.status)[0] }, e.status),
    el("td", {}, num(e.duration, 1)),
    el("td", {}, e.model || ""),
    el("td", {}, e.provider || ""),
    el("td", {}, e.target || ""),
    el("td", { class: "attempt-count" }, (e.attempts || []).length),
    el("td", {}, e.cache || ""),
    el("td", {}, guards),
    el("td", {}, tokens),
    el("td", {}, cost),
    el("td", { class: "muted" }, (e.trace_id || "").slice(0, 12)),
  );
  if (selected === e.id) tr.classList.add("selected");
  tr.addEventListener("click", () => detail(e, tr));
  return tr;
}

function detail(e, tr) {
  selected = e.id;
  for (const r of document.querySelectorAll("#log tr.selected")) r.classList.remove("selected");
  tr.classList.add("selected");
  const box = $("detail");
  const attempts = el(
    "table",
    { id: "attempts" },
    el("thead", {}, el("tr", {}, el("th", {}, "#"), el("th", {}, "target"), el("th", {}, "provider"),
      el("th", {}, "outcome"), el("th", {}, "ms"))),
    el("tbody", {}, ...(e.attempts || []).map((a, i) =>
      el("tr", { class: "attempt", "data-outcome": a.outcome },
        el("td", {}, i + 1), el("td", {}, a.target || "(root)"), el("td", {}, a.provider || ""),
        el("td", { class: "s" + String(a.outcome)[0] }, a.outcome), el("td", {}, num(a.ms, 1))))),
  );
  const guards = (e.guards || []).map((g) =>
    el("li", {}, (g.passed ? "passed " : "failed ") + g.id + (g.deny ? " (deny)" : "") +
      (g.explanation ? ": " + g.explanation : "")));
  const parts = [
    el("h2", {}, e.method + " " + e.endpoint + " → " + e.status),
    el("p", {}, "trace " + (e.trace_id || "-") + " · " + num(e.duration, 1) + " ms (head " +
      num(e.ttfb, 1) + " ms) · " + (e.outcome || "")),
    el("p", {}, "model " + (e.model || "-") + " · provider " + (e.provider || "-") +
      " · target " + (e.target || "-") + " · retries " + (e.retries ?? "-") + " · cache " + (e.cache || "-")),
    el("p", {}, e.usage ? "tokens " + e.usage.prompt_tokens + " in, " + e.usage.completion_tokens +
      " out" + (typeof e.cost_usd === "number" ? " · $" + e.cost_usd.toFixed(6) : "") : "no usage reported"),
    el("h2", {}, "Attempts"),
    attempts,
    guards.length ? el("h2", {}, "Guardrails") : null,
    guards.length ? el("ul", {}, ...guards) : null,
    e.metadata ? el("h2", {}, "Metadata") : null,
    e.metadata ? el("pre", {}, JSON.stringify(e.metadata, null, 2)) : null,
    e.request !== undefined ? el("h2", {}, "Request") : null,
    e.request !== undefined ? el("pre", { class: "request" }, e.request) : null,
    e.response !== undefined ? el("h2", {}, "Answer") : null,
    e.response !== undefined ? el("pre", { class: "response" }, e.response) : null,
  ];
  box.replaceChildren(...parts.filter((p) => p !== null));
  box.hidden = false;
}

// --- the routing tree --------------------------------------------------------------------

// Recent error rate and latency per target, from the attempts this console has seen.
function health(path, provider) {
  let n = 0, failed = 0;
  const ms = [];
  for (const e of entries) {
    for (const a of e.attempts || []) {
      const at = a.target ? "." + a.target : "";
      if (a.provider !== provider || !(path.endsWith(at) || (!a.target && !path.includes("targets[")))) continue;
      n++;
      if (!/^[23]/.test(a.outcome)) failed++;
      ms.push(a.ms);
      if (n >= 100) break;
    }
    if (n >= 100) break;
  }
  ms.sort((a, b) => a - b);
  return { n, rate: n ? failed / n : 0, p50: ms.length ? ms[Math.floor(ms.length / 2)] : null };
}

function node(n) {
  const label = [];
  if (n.provider !== undefined) {
    const h = health(n.path, n.provider);
    label.push(
      el("strong", {}, n.provider),
      el("span", { class: "muted" }, " " + n.path),
      n.breaker_state ? el("span", { class: "badge breaker breaker-" + n.breaker_state }, "breaker " + n.breaker_state.replace("_", "-")) : null,
      el("span", { class: "badge" }, h.n ? (h.rate * 100).toFixed(0) + "% errors of " + h.n : "no traffic seen"),
      h.p50 !== null ? el("span", { class: "badge" }, "p50 " + h.p50.toFixed(1) + " ms") : null,
    );
  } else {
    label.push(el("strong", {}, n.mode + (n.balancer ? " (" + n.balancer + ")" : "")), el("span", { class: "muted" }, " " + n.path));
  }
  if (n.weight !== 1) label.push(el("span", { class: "badge" }, "weight " + n.weight));
  if (n.retry) label.push(el("span", { class: "badge" }, "retry " + n.retry));
  if (n.cache) label.push(el("span", { class: "badge" }, "cache " + n.cache));
  if (n.guards) label.push(el("span", { class: "badge" }, "guardrails"));
  const li = el("li", { class: "node " + (n.provider !== undefined ? "leaf" : "group"), "data-path": n.path, "data-provider": n.provider }, ...label);
  if (n.targets) li.append(el("ul", {}, ...n.targets.map(node)));
  return li;
}

async function loadTree() {
  const r = await fetch("/console/api/tree", { credentials: "same-origin" });
  if (!r.ok) return;
  const doc = await r.json();
  const parts = [];
  if (doc.routing) parts.push(el("h2", {}, "Routing"), el("ul", { class: "tree" }, node(doc.routing)));
  for (const [id, tree] of Object.entries(doc.configs || {})) {
    parts.push(el("h2", {}, "Saved config " + id), el("ul", { class: "tree" }, node(tree)));
  }
  parts.push(el("h2", {}, "Providers"), el("ul", {}, ...(doc.providers || []).map((p) =>
    el("li", {}, el("strong", {}, p.name), " " + p.kind + (p.models.length ? " · " + p.models.join(", ") : "")))));
  $("tree").replaceChildren(...parts);
}

// --- spend and limits --------------------------------------------------------------------

function until(iso) {
  if (!iso) return "never";
  const s = Math.max(0, Math.round((Date.parse(iso) - Date.now()) / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? h + " h " + m + " min" : m ? m + " min " + (s % 60) + " s" : s + " s";
}

async function loadLimits() {
  const r = await fetch("/console/api/limits", { credentials: "same-origin" });
  const body = $("limits").tBodies[0];
  if (!r.ok) {
    body.replaceChildren();
    $("limits-note").textContent = r.status === 404 ? "No limits are configured." : "Limits unavailable (" + r.status + ").";
    return;
  }
  const doc = await r.json();
  $("limits-note").textContent = doc.data.length ? "as of " + doc.taken_at : "No limits are configured.";
  body.replaceChildren(...doc.data.map((s) => {
    const money = s.unit === "micro_usd";
    const fmt = (v) => (v === null || v === undefined ? "" : money ? "$" + (v / 1e6).toFixed(4) : v);
    return el("tr", { class: "scope" }, el("td", {}, s.level), el("td", {}, s.policy), el("td", {}, s.scope),
      el("td", {}, s.limit), el("td", {}, s.window), el("td", {}, fmt(s.used)), el("td", {}, fmt(s.limit_value)),
      el("td", {}, fmt(s.remaining)), el("td", {}, until(s.resets_at)));
  }));
}

// --- wiring ------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", async () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  for (const b of document.querySelectorAll("#tabs [data-view]")) {
    b.addEventListener("click", () => show(b.dataset.view));
  }
  for (const id of ["f-status", "f-provider", "f-meta"]) $(id).addEventListener("input", refilter);
  if (await session()) start();
  else showLogin();
});
