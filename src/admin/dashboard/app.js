// weir's dashboard: polls /dashboard.json and redraws. Read-only: only GETs.
"use strict";

const POLL_MS = 1000;
const PAGE = 50;
const view = { q: "", offset: 0, matched: 0 };
// Each endpoint's request count at the previous poll, for its requests per second.
let previous = { at: 0, requests: new Map() };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const s = Math.abs(seconds);
  const text = s < 60 ? `${Math.round(s)}s`
    : s < 3600 ? `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`
    : s < 86400 * 2 ? `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`
    : `${Math.floor(s / 86400)}d`;
  return seconds < 0 ? `-${text}` : text;
}

function fixed(v, digits) {
  return Number.isFinite(v) ? v.toFixed(digits) : "-";
}

function renderProcess(p) {
  const items = [
    ["version", p.version],
    ["uptime", duration(p.uptimeSeconds)],
    ["state", p.draining ? "draining" : p.ready ? "ready" : "no table yet", !p.ready || p.draining],
    ["table generation", p.tableGeneration],
    ["last rebuild", p.lastRebuildSecondsAgo === null ? "never" : `${duration(p.lastRebuildSecondsAgo)} ago`],
    ["config errors", p.configErrors, p.configErrors > 0],
    ["open connections", `${p.connectionsOpen.http} http, ${p.connectionsOpen.https} https`],
    ["refused", p.connectionsRefused.http + p.connectionsRefused.https, p.connectionsRefused.http + p.connectionsRefused.https > 0],
    ["pools", `${p.pools} (${p.poolsWithProblems} with problems)`, p.poolsWithProblems > 0],
  ];
  const dl = document.getElementById("process");
  dl.replaceChildren(...items.map(([k, v, bad]) =>
    el("div", { "data-key": k }, el("dt", {}, k), el("dd", { class: bad ? "bad" : null }, v))));
}

// A small line chart of `values` (already per second or a ratio), newest on the right.
function sparkline(label, values, format, cls) {
  const w = 240, h = 36, n = Math.max(values.length, 2);
  const max = Math.max(...values, 1e-9);
  const points = values.map((v, i) => {
    const x = (i / (n - 1)) * w;
    const y = h - 2 - (v / max) * (h - 4);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  }).join(" ");
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
  line.setAttribute("points", points);
  svg.append(line);
  const now = values.length ? values[values.length - 1] : 0;
  return el("div", { class: `chart ${cls}` },
    el("span", {}, `${label}: ${format(now)} now, peak ${format(values.length ? Math.max(...values) : 0)}`), svg);
}

function endpointState(e) {
  if (e.state === "fenced") return ["fenced", "fenced (terminating)"];
  if (e.health === "unhealthy") return ["failing", "failing checks"];
  if (e.ejectedForSeconds !== null) return ["ejected", `ejected, ${duration(e.ejectedForSeconds)} left`];
  return ["ready", e.health === "healthy" ? "ready, checks pass" : "ready"];
}

function renderPool(pool, interval, rates, elapsed) {
  const facts = [];
  if (pool.routes) facts.push(pool.routes.map((r) => `${r.host}${r.path}`).join(", "));
  else if (pool.hosts.length) facts.push(pool.hosts.join(", "));
  if (pool.algorithm) facts.push(pool.algorithm);
  facts.push(pool.affinity ? `affinity: cookie ${pool.affinity.cookie}` : "no affinity");
  if (pool.tls) {
    facts.push(!pool.tls.certificate ? "TLS: no certificate loaded"
      : pool.tls.expiresInSeconds === null ? "TLS"
      : pool.tls.expiresInSeconds < 0 ? `TLS: certificate EXPIRED ${duration(-pool.tls.expiresInSeconds)} ago`
      : `TLS: certificate expires in ${duration(pool.tls.expiresInSeconds)}`);
  } else if (pool.inTable) {
    facts.push("no TLS");
  }
  if (pool.healthCheck !== undefined) facts.push(pool.healthCheck ? "active checks" : "no active checks");
  const c = pool.endpointCounts;
  if (c) facts.push(`${c.healthy} healthy / ${c.ready} ready / ${c.total} endpoints`);

  // Conditions in plain words: each one that is not true on its own line, in red; the true
  // ones on one quiet line.
  const bad = pool.conditions.filter((k) => !k.ok);
  const good = pool.conditions.filter((k) => k.ok);
  const conditions = bad.map((k) => el("li", { class: "bad" }, `✗ ${k.type}: ${k.message || k.reason}`));
  if (!pool.inTable) conditions.unshift(el("li", { class: "bad" }, "✗ not serving: left out of the routing table"));
  if (good.length) {
    conditions.push(el("li", { class: "ok" }, "✓ " + good.map((k) => (k.type === "Ready" ? `${k.type}: ${k.message}` : k.type)).join(" · ")));
  }

  const answers = pool.history.answers;
  const perSecond = answers.map((n) => n / interval);
  const errorRate = answers.map((n, i) => (n ? pool.history.errors5xx[i] / n : 0));
  const charts = el("div", { class: "charts" },
    sparkline("requests/s", perSecond, (v) => fixed(v, 1), "requests"),
    sparkline("5xx", errorRate, (v) => `${fixed(v * 100, 1)}%`, "errors"));

  const card = el("section", { class: `pool${pool.problem ? " problem" : ""}`, "data-pool": pool.name },
    el("div", { class: "pool-head" },
      el("h2", {}, pool.name),
      el("span", { class: "badge" }, pool.problem ? "problem" : "ok"),
      el("span", { class: "facts" }, facts.join(" · "))),
    el("div", { class: "pool-body" }, el("ul", { class: "conditions" }, ...conditions), charts));
  if (!pool.endpoints) return card;
  if (!pool.endpoints.length) {
    card.append(el("p", { class: "facts" }, "no endpoints"));
    return card;
  }

  // Share: of the requests since the last poll when there were some, else since each
  // endpoint joined.
  const sinceLast = pool.endpoints.map((e) => rates.get(`${pool.name} ${e.address}`) || 0);
  const recentTotal = sinceLast.reduce((a, b) => a + b, 0);
  const rows = pool.endpoints.map((e, i) => {
    const [stateClass, stateText] = endpointState(e);
    const share = recentTotal > 0 ? sinceLast[i] / recentTotal : e.share;
    const percent = (share * 100).toFixed(1);
    const rps = elapsed > 0 ? sinceLast[i] / elapsed : 0;
    const check = e.lastCheck === null ? "-"
      : `${e.lastCheck.passed ? "pass" : "FAIL"} ${fixed(e.lastCheck.secondsAgo, 1)}s ago`;
    return el("tr", { "data-endpoint": e.address, "data-state": stateClass },
      el("td", { title: e.identity }, e.address, e.identity !== e.address ? el("div", { class: "facts" }, e.identity) : null),
      el("td", {}, `${e.backend} (weight ${e.weight})`),
      el("td", { class: `state state-${stateClass}` }, stateText),
      el("td", { class: "num" }, e.inFlight),
      el("td", { class: "num" }, fixed(rps, 1)),
      el("td", {}, el("div", { class: "share", "data-share": percent },
        el("div", { class: "track" }, el("div", { class: "fill", style: `width: ${percent}%` })),
        el("span", {}, `${percent}%`))),
      el("td", { class: "num" }, e.requests),
      el("td", { class: "num" }, fixed(e.latencyEwmaMs, 2)),
      el("td", { class: "num", title: "upper bound of its power-of-two bucket, last 1-2 min" },
        e.latencyP99Ms === null ? "-" : `≤ ${fixed(e.latencyP99Ms, 1)}`),
      el("td", { class: "num", title: "utilization the pod reports (ORCA), and its WeightedByLoad weight" },
        e.utilization === null ? "-"
          : `${fixed(e.utilization * 100, 0)}%${e.loadWeight === null ? "" : ` · w ${fixed(e.loadWeight, 0)}`}`),
      el("td", {}, check));
  });
  const head = ["endpoint", "backend", "state", "in flight", "req/s", "share of traffic", "requests", "latency EWMA (ms)", "p99 (ms)", "reported load", "last check"];
  card.append(el("table", {},
    el("thead", {}, el("tr", {}, ...head.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows)));
  return card;
}

function render(feed) {
  renderProcess(feed.process);
  const now = performance.now();
  const elapsed = previous.at ? (now - previous.at) / 1000 : 0;
  const rates = new Map();
  const seen = new Map();
  for (const pool of feed.pools) {
    for (const e of pool.endpoints || []) {
      const key = `${pool.name} ${e.address}`;
      const before = previous.requests.get(key);
      if (before !== undefined && e.requests >= before) rates.set(key, e.requests - before);
      seen.set(key, e.requests);
    }
  }
  previous = { at: now, requests: seen };
  const interval = feed.history.intervalSeconds;
  document.getElementById("pools").replaceChildren(
    ...feed.pools.map((p) => renderPool(p, interval, rates, elapsed)));
  view.matched = feed.matched;
  const first = feed.matched ? feed.offset + 1 : 0;
  document.getElementById("range").textContent =
    `pools ${first}–${feed.offset + feed.pools.length} of ${feed.matched}${view.q ? ` matching “${view.q}”` : ""}`;
  document.getElementById("prev").disabled = feed.offset === 0;
  document.getElementById("next").disabled = feed.offset + feed.pools.length >= feed.matched;
}

async function poll() {
  const state = document.getElementById("feed-state");
  try {
    const params = new URLSearchParams({ q: view.q, offset: view.offset, limit: PAGE });
    const response = await fetch(`/dashboard.json?${params}`, { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    render(await response.json());
    state.textContent = `updated ${new Date().toLocaleTimeString()}`;
    state.className = "";
  } catch (e) {
    // weir restarting or the port-forward gone: say so and keep trying.
    state.textContent = `cannot reach weir (${e.message}); retrying`;
    state.className = "bad";
  }
  setTimeout(poll, POLL_MS);
}

document.getElementById("search").addEventListener("input", (event) => {
  view.q = event.target.value.trim();
  view.offset = 0;
});
document.getElementById("prev").addEventListener("click", () => {
  view.offset = Math.max(0, view.offset - PAGE);
});
document.getElementById("next").addEventListener("click", () => {
  if (view.offset + PAGE < view.matched) view.offset += PAGE;
});
poll();
