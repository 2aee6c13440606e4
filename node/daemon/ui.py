"""The dashboard the local API serves at `/ui` (issue 19; opened by `colonynode dashboard`).

Plain HTML, a stylesheet and one small script, all served by the node itself: nothing
from a CDN, nothing to build. The page holds no data: its script reads the API token from
the URL's fragment (`/ui#token=...`, which a browser never sends to a server nor puts in
a Referer), keeps it in the tab's sessionStorage, takes it out of the address bar, and
reads the same JSON endpoints the CLI does with it. Without the token every read is
refused (401) and the page says how to open it; nothing of the colony shows. Data is put
into the page as text (`textContent`), never as markup. The headers forbid framing,
other origins' scripts and sending a Referer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["UI_PATH", "ui_routes"]

UI_PATH = "/ui"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>colonynode</title>
<link rel="stylesheet" href="/ui/app.css">
<script src="/ui/app.js" defer></script>
</head>
<body>
<header><h1>colonynode</h1><span id="node"></span><span id="updated"></span></header>
<div id="banner" hidden></div>
<main id="main" hidden>
<section><h2>Processes</h2><div id="counts"></div>
<table id="processes"><thead><tr><th>process</th><th>function</th><th>state</th>
<th>submitted</th><th>submitter</th><th>executor</th><th>took</th></tr></thead>
<tbody></tbody></table></section>
<section id="detail" hidden><h2>Process <span id="detail-id"></span></h2>
<ol id="timeline"></ol><h3>Output</h3><pre id="output"></pre>
<h3>Logs</h3><pre id="logs"></pre></section>
<section><h2>Workflows</h2><div id="workflows"></div></section>
<section><h2>Members</h2><table id="members"><thead><tr><th>name</th><th>peer id</th>
<th>roles</th><th>voter</th><th>connected</th></tr></thead><tbody></tbody></table>
<p id="voters"></p></section>
<section><h2>Executors here</h2><p id="executors"></p></section>
<section><h2>ColonyFS labels</h2><ul id="labels"></ul></section>
</main>
</body>
</html>
"""

CSS = """
[hidden] { display: none !important; }
body { font: 14px system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
header { display: flex; gap: 1.5em; align-items: baseline; padding: .6em 1.2em;
  background: #1d2330; color: #fff; }
header h1 { font-size: 1.2em; margin: 0; }
#updated { margin-left: auto; opacity: .7; font-size: .9em; }
main { padding: .5em 1.2em; display: grid; gap: 1em; }
section { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: .6em 1em; }
h2 { font-size: 1.05em; margin: .2em 0 .5em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25em .6em; border-bottom: 1px solid #eef0f3; }
tbody tr.proc { cursor: pointer; }
tbody tr.proc:hover { background: #f0f4ff; }
.state { font-weight: 600; }
.SUCCESS { color: #1a7f37; } .FAILED { color: #c62828; } .CANCELLED { color: #8a6d00; }
.RUNNING { color: #0b5cad; } .WAITING { color: #6b7280; }
#banner { margin: 1em 1.2em; padding: .8em 1em; border-radius: 6px; background: #fdecea;
  color: #8a1c12; border: 1px solid #f5c2bd; }
pre { background: #f6f7f9; padding: .5em; overflow: auto; max-height: 20em; }
code, .mono { font-family: ui-monospace, monospace; font-size: .92em; }
svg text { font: 12px system-ui, sans-serif; }
"""

SCRIPT = r"""
"use strict";
(function () {
  const TOKEN_KEY = "colonynode-token";
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem(TOKEN_KEY, fromHash);
    history.replaceState(null, "", location.pathname);  // out of the address bar
  }
  const token = sessionStorage.getItem(TOKEN_KEY) || "";
  window.addEventListener("hashchange", () => location.reload());  // a new #token=...
  let selected = null;
  let names = {};  // peer id -> member name

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function row(cells, cls) {
    const tr = el("tr", null, cls);
    for (const c of cells) {
      const td = el("td");
      if (c instanceof Node) td.appendChild(c);
      else td.textContent = c === null || c === undefined ? "" : String(c);
      tr.appendChild(td);
    }
    return tr;
  }
  function fill(tbody, rows) { tbody.replaceChildren(...rows); }
  function when(iso) { return iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z") : ""; }
  function took(p) {
    if (!p.starttime || !p.endtime) return "";
    const ms = Date.parse(p.endtime) - Date.parse(p.starttime);
    return ms >= 1000 ? (ms / 1000).toFixed(2) + " s" : ms + " ms";
  }
  function who(peer) { return names[peer] || (peer ? peer.slice(-8) : ""); }
  function refuse(text) {
    const banner = document.getElementById("banner");
    banner.textContent = text;
    banner.hidden = false;
    document.getElementById("main").hidden = true;
    document.getElementById("main").querySelectorAll("tbody, ul, p, pre, ol, #workflows, #counts")
      .forEach((n) => n.replaceChildren());
  }
  async function api(path) {
    const r = await fetch(path, { headers: { Authorization: "Bearer " + token } });
    if (r.status === 401) throw new Error("unauthorized");
    if (!r.ok) throw new Error(path + ": HTTP " + r.status);
    return r.json();
  }

  function renderMembers(status, members) {
    names = {};
    for (const m of members) names[m.peer_id] = m.name;
    document.getElementById("node").textContent =
      status.name + " in colony " + status.colony + " (roster v" + status.roster_version + ")";
    fill(document.querySelector("#members tbody"), members.map((m) => row([
      m.name + (m.owner ? " (owner)" : "") + (m.self ? " *" : ""), m.peer_id,
      m.roles.join(", "), m.voter ? "yes" : "", m.self ? "self" : (m.connected ? "yes" : "no"),
    ])));
    const va = status.voters_auto || {};
    document.getElementById("voters").textContent = "Voters: " +
      members.filter((m) => m.voter).map((m) => m.name).join(", ") +
      (va.auto ? " (auto, grace " + va.grace_s + " s" +
        (va.never_vote && va.never_vote.length ? ", never: " + va.never_vote.join(", ") : "") + ")"
        : " (pinned)");
    const s = status.scheduler || {};
    document.getElementById("executors").textContent =
      (s.executors || 0) + " executor(s), " + (s.idle_slots || 0) + " idle slot(s)";
  }

  function renderProcesses(procs, counts) {
    document.getElementById("counts").textContent = Object.entries(counts)
      .map(([k, v]) => k.toLowerCase() + " " + v).join(" · ");
    fill(document.querySelector("#processes tbody"), procs.map((p) => {
      const tr = row([
        el("span", p.processid, "mono"), p.spec.funcname, el("span", p.state, "state " + p.state),
        when(p.submissiontime), who(p.submitter), p.executor || "", took(p),
      ], "proc");
      tr.dataset.pid = p.processid;
      tr.addEventListener("click", () => { selected = p.processid; showDetail(); });
      return tr;
    }));
  }

  function renderWorkflows(procs) {
    const graphs = {};
    for (const p of procs) if (p.processgraphid) (graphs[p.processgraphid] ||= []).push(p);
    const box = document.getElementById("workflows");
    const ids = Object.keys(graphs);
    if (!ids.length) { box.replaceChildren(el("p", "none in view")); return; }
    box.replaceChildren(...ids.map((g) => graphSvg(g, graphs[g])));
  }

  function graphSvg(gid, steps) {
    const byId = {};
    for (const s of steps) byId[s.processid] = s;
    const depth = {};
    const level = (s, seen) => {
      if (depth[s.processid] !== undefined) return depth[s.processid];
      let d = 0;
      for (const p of s.parents || []) {
        if (byId[p] && !seen.has(p)) d = Math.max(d, 1 + level(byId[p], new Set([...seen, p])));
      }
      return (depth[s.processid] = d);
    };
    steps.forEach((s) => level(s, new Set([s.processid])));
    const cols = {};
    for (const s of steps) (cols[depth[s.processid]] ||= []).push(s);
    const pos = {};
    let h = 0;
    for (const [d, list] of Object.entries(cols)) list.forEach((s, i) => {
      pos[s.processid] = { x: 20 + Number(d) * 170, y: 20 + i * 50 }; h = Math.max(h, 70 + i * 50);
    });
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    const w = 20 + (Math.max(...Object.keys(cols).map(Number)) + 1) * 170;
    svg.setAttribute("width", w); svg.setAttribute("height", h);
    svg.setAttribute("aria-label", "workflow " + gid);
    const colour = { SUCCESS: "#1a7f37", FAILED: "#c62828", CANCELLED: "#8a6d00",
      RUNNING: "#0b5cad", WAITING: "#6b7280" };
    for (const s of steps) for (const p of s.parents || []) if (pos[p]) {
      const line = document.createElementNS(ns, "line");
      line.setAttribute("x1", pos[p].x + 130); line.setAttribute("y1", pos[p].y + 15);
      line.setAttribute("x2", pos[s.processid].x); line.setAttribute("y2", pos[s.processid].y + 15);
      line.setAttribute("stroke", "#9aa3af"); svg.appendChild(line);
    }
    for (const s of steps) {
      const g = document.createElementNS(ns, "g");
      const r = document.createElementNS(ns, "rect");
      r.setAttribute("x", pos[s.processid].x); r.setAttribute("y", pos[s.processid].y);
      r.setAttribute("width", 130); r.setAttribute("height", 30); r.setAttribute("rx", 5);
      r.setAttribute("fill", "#fff"); r.setAttribute("stroke", colour[s.state] || "#333");
      const t = document.createElementNS(ns, "text");
      t.setAttribute("x", pos[s.processid].x + 8); t.setAttribute("y", pos[s.processid].y + 19);
      t.textContent = (s.spec.nodename || s.spec.funcname) + " · " + s.state;
      g.append(r, t);
      g.addEventListener("click", () => { selected = s.processid; showDetail(); });
      svg.appendChild(g);
    }
    const wrap = el("div");
    wrap.append(el("p", "graph " + gid, "mono"), svg);
    return wrap;
  }

  async function showDetail() {
    if (!selected) return;
    const [p, logs] = await Promise.all([
      api("/v1/processes/" + selected), api("/v1/processes/" + selected + "/logs"),
    ]);
    document.getElementById("detail").hidden = false;
    document.getElementById("detail-id").textContent = p.processid;
    const steps = [
      ["submitted", p.submissiontime,
        "by " + who(p.submitter) + " (acknowledged by a majority of the voters)"],
      ["started", p.starttime, p.executor ? "on executor " + p.executor + ", lease epoch " +
        p.epoch + ", retries " + p.retries : ""],
      ["closed", p.endtime, p.endtime ? p.state : "not yet (" + p.state + ")"],
    ];
    fill(document.getElementById("timeline"), steps.map(([what, at, text]) => {
      const li = el("li");
      li.append(el("strong", what + " "), el("span", at ? when(at) + " " : "", "mono"),
        el("span", text));
      return li;
    }));
    document.getElementById("output").textContent = JSON.stringify(
      p.errors && p.errors.length ? { output: p.output, errors: p.errors } : p.output);
    document.getElementById("logs").textContent = (logs.logs || [])
      .map((l) => (typeof l === "string" ? l : (l.message || JSON.stringify(l)))).join("\n");
  }

  async function refresh() {
    if (!token) { refuse("No API token: open this page with `colonynode dashboard`."); return; }
    try {
      const [status, members, procs, counts] = await Promise.all([
        api("/v1/status"), api("/v1/members"), api("/v1/processes?limit=200"),
        api("/v1/processes/counts"),
      ]);
      let labels = [];
      try { labels = await api("/v1/fs/labels"); } catch (e) { labels = []; }
      document.getElementById("banner").hidden = true;
      document.getElementById("main").hidden = false;
      renderMembers(status, members);
      renderProcesses(procs, counts);
      renderWorkflows(procs);
      const items = (Array.isArray(labels) ? labels : labels.labels || [])
        .map((l) => el("li", typeof l === "string" ? l
          : l.label + (l.files !== undefined ? " (" + l.files + " files)" : "")));
      fill(document.getElementById("labels"), items.length ? items : [el("li", "none")]);
      document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
      if (selected) await showDetail();
    } catch (e) {
      if (e.message === "unauthorized") {
        sessionStorage.removeItem(TOKEN_KEY);
        refuse("Unauthorized: this page needs the node's API token. " +
          "Open it with `colonynode dashboard`.");
        return;
      }
      document.getElementById("updated").textContent = "error: " + e.message;
    }
  }
  refresh();
  setInterval(refresh, 2000);
})();
"""


def _asset(body: str, media_type: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(_: Request) -> Response:
        return Response(body, media_type=media_type, headers=HEADERS)

    return endpoint


def ui_routes() -> list[Route]:
    """The page, its stylesheet and its script (no token: they hold no data)."""
    return [
        Route(UI_PATH, _asset(PAGE, "text/html; charset=utf-8"), methods=["GET"]),
        Route(f"{UI_PATH}/app.css", _asset(CSS, "text/css; charset=utf-8"), methods=["GET"]),
        Route(
            f"{UI_PATH}/app.js", _asset(SCRIPT, "text/javascript; charset=utf-8"), methods=["GET"]
        ),
    ]
