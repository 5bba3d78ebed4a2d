// llmgate operator console. Everything shown comes from the admin API with
// the admin token from this tab's session storage; the page holds no data.
"use strict";

(function () {
  const TOKEN = "llmgate-admin-token";
  const VIEWS = ["overview", "consumers", "usage", "cache", "keys"];
  const REFRESH = { overview: 5000, consumers: 3000 };
  const $ = (id) => document.getElementById(id);
  let timer = null;
  let current = null;

  // el builds an element; strings become text nodes, so nothing from the
  // API is ever parsed as HTML.
  function el(tag, attrs, ...kids) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") n.className = v;
      else if (k === "style") n.style.cssText = v; // CSSOM, which the page's CSP allows
      else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
      else n.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids.flat()) {
      if (k === undefined || k === null) continue;
      n.append(k instanceof Node ? k : String(k));
    }
    return n;
  }

  function say(msg, isError) {
    const s = $("status");
    s.textContent = msg || "";
    s.className = isError ? "error" : "";
    s.setAttribute("role", isError ? "alert" : "status");
  }

  const num = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString("en-US"));
  const usd = (n) => "$" + Number(n || 0).toFixed(4);
  const when = (t) => (t ? new Date(t).toLocaleString() : "—");
  const pct = (a, b) => (b > 0 ? ((100 * a) / b).toFixed(1) + "%" : "—");

  class APIError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  // api calls the admin API; a 401 signs the tab out.
  async function api(method, path, body, accept) {
    const headers = { Accept: accept || "application/json" };
    const token = sessionStorage.getItem(TOKEN);
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
    if (resp.status === 401 || resp.status === 403) {
      const msg = await errorText(resp);
      signOut(msg);
      throw new APIError(resp.status, msg);
    }
    if (!resp.ok) throw new APIError(resp.status, await errorText(resp));
    if (resp.status === 204) return null;
    if (accept && accept !== "application/json") return resp.text();
    return resp.json();
  }

  async function errorText(resp) {
    try {
      const j = await resp.json();
      if (j && j.error && j.error.message) return j.error.message;
    } catch (e) { /* not JSON */ }
    return resp.status + " " + resp.statusText;
  }

  // guard runs an action and reports its failure instead of throwing.
  function guard(fn) {
    return async function (ev) {
      if (ev && ev.preventDefault) ev.preventDefault();
      try {
        await fn.call(this, ev);
      } catch (e) {
        if (!(e instanceof APIError && (e.status === 401 || e.status === 403))) say(e.message, true);
      }
    };
  }

  // ---- sign-in and navigation ----

  function signedIn() { return sessionStorage.getItem(TOKEN) !== null; }

  function signOut(msg) {
    sessionStorage.removeItem(TOKEN);
    stopTimer();
    $("who").textContent = "";
    show();
    say(msg || "Signed out.", !!msg);
  }

  async function signIn(ev) {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN, $("token").value);
    $("token").value = "";
    try {
      await api("GET", "/admin/cluster");
    } catch (e) {
      if (signedIn()) sessionStorage.removeItem(TOKEN);
      say("Sign-in failed: " + e.message, true);
      return;
    }
    say("");
    if (!VIEWS.includes(location.hash.slice(1))) location.hash = "#overview";
    else show();
  }

  function stopTimer() { if (timer) { clearInterval(timer); timer = null; } }

  function show() {
    const want = signedIn() ? (VIEWS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "overview") : "signin";
    for (const v of ["signin", ...VIEWS]) $(v).hidden = v !== want;
    $("nav").hidden = want === "signin";
    $("signout").hidden = want === "signin";
    for (const a of document.querySelectorAll("nav a")) {
      if (a.dataset.view === want) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
    stopTimer();
    if (want === "signin") { current = null; $("token").focus(); return; }
    if (want !== current) say("");
    current = want;
    const load = LOADERS[want];
    const run = guard(load);
    run();
    if (REFRESH[want]) timer = setInterval(run, REFRESH[want]);
  }

  // ---- overview: members, cache, backends ----

  async function loadOverview() {
    const [cl, stats, backs, saved] = await Promise.all([
      api("GET", "/admin/cluster"),
      api("GET", "/admin/cache/stats").catch(notRunning),
      api("GET", "/admin/backends").catch(notRunning),
      api("GET", "/admin/usage?interval=day&group_by=consumer").catch(notRunning),
    ]);
    $("who").textContent = "node " + cl.node;
    $("members-node").textContent = cl.node;
    const members = (cl.members || []).slice().sort((a, b) => a.name.localeCompare(b.name));
    // Config hashes show only when the nodes report them.
    const hashes = members.some((m) => m.config_hash);
    $("members").querySelector("th.hash").hidden = !hashes;
    fill("members", members.map((m) => el("tr", { "data-member": m.name },
      el("td", {}, m.name), el("td", {}, m.addr), el("td", { class: "state-" + m.state }, m.state),
      hashes ? el("td", {}, el("code", {}, m.config_hash || "—")) : null)));
    cacheCards(stats, saved);
    if (backs === null) {
      fill("backends", [emptyRow(5, "This node does not report its backends.")]);
    } else {
      fill("backends", (backs.backends || []).map((b) => el("tr", {},
        el("td", {}, b.name), el("td", {}, b.kind), el("td", { class: "state-" + b.state }, b.state.replace("_", "-")),
        el("td", {}, b.open_until ? when(b.open_until) : "—"), el("td", { class: "num" }, num(b.tpm_remaining)))));
    }
  }

  // notRunning turns a 404 (a part the node runs without) into null.
  function notRunning(e) {
    if (e instanceof APIError && e.status === 404) return null;
    throw e;
  }

  const KNOWN_STATS = ["entries", "hits", "misses", "exact_hits", "normalized_hits", "semantic_hits", "bytes", "verify"];

  function cacheCards(stats, saved) {
    const dl = $("cache-cards");
    dl.replaceChildren();
    const card = (label, value, key) => dl.append(el("div", { "data-stat": key }, el("dt", {}, label), el("dd", {}, value)));
    if (stats === null) {
      card("Cache", "off on this node", "off");
      return;
    }
    const lookups = (stats.hits || 0) + (stats.misses || 0);
    card("Hit rate", pct(stats.hits || 0, lookups), "hit_rate");
    card("Hits", num(stats.hits), "hits");
    card("Misses", num(stats.misses), "misses");
    card("Exact / normalised / semantic", [stats.exact_hits, stats.normalized_hits, stats.semantic_hits].map(num).join(" / "), "tiers");
    card("Entries", num(stats.entries), "entries");
    card("Size", bytes(stats.bytes), "bytes");
    if (saved && saved.rows) {
      let tokens = 0, hits = 0, savedUSD = null;
      for (const r of saved.rows) {
        tokens += r.tokens_saved || 0;
        hits += r.cache_hits || 0;
        if (typeof r.saved_usd === "number") savedUSD = (savedUSD || 0) + r.saved_usd;
      }
      card("Tokens saved (24 h, cluster)", num(tokens), "tokens_saved");
      card("Cache hits (24 h, cluster)", num(hits), "usage_hits");
      if (savedUSD !== null) card("Money saved (24 h)", usd(savedUSD), "saved_usd");
    }
    // Verified matching (cache.verify): the judge's verdicts and, per route,
    // the online precision estimate from audited hits.
    const v = stats.verify;
    if (v && typeof v === "object") {
      card("Judge: confirmed / refused / failed", [v.confirmed, v.refused, v.failed].map(num).join(" / "), "verify_verdicts");
      card("Judge tokens", num(v.tokens), "verify_tokens");
      if (!Object.keys(v.routes || {}).length) card("Precision estimate", "no audit yet", "precision");
      for (const [route, r] of Object.entries(v.routes || {}).sort()) {
        card("Precision estimate · " + route, r.audited ? pct(r.right, r.audited) + " of " + num(r.audited) + " audited" : "no audit yet", "precision:" + route);
      }
    }
    // Whatever else the node reports is shown as is.
    for (const [k, v] of Object.entries(stats)) {
      if (KNOWN_STATS.includes(k) || v === null || typeof v === "object") continue;
      const label = k.replace(/_/g, " ");
      card(label.charAt(0).toUpperCase() + label.slice(1), typeof v === "number" && !Number.isInteger(v) ? v.toFixed(3) : String(v), k);
    }
  }

  function bytes(n) {
    if (!n) return "0 B";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return n.toFixed(i ? 1 : 0) + " " + units[i];
  }

  function fill(table, rows) {
    const tb = $(table).tBodies[0];
    tb.replaceChildren(...rows);
  }

  function emptyRow(cols, text) {
    return el("tr", {}, el("td", { colspan: cols, class: "empty" }, text));
  }

  // ---- consumers: TPM and quota, live ----

  function meter(used, limit, label) {
    if (!limit) return el("div", { class: "meter" }, el("span", {}, num(used) + " · no limit"));
    const share = Math.min(used / limit, 1);
    const cls = share >= 0.9 ? "fill bad" : share >= 0.7 ? "fill warn" : "fill";
    return el("div", { class: "meter" },
      el("span", {}, num(used) + " / " + num(limit) + " (" + pct(used, limit) + ")"),
      el("div", { class: "bar", role: "meter", "aria-label": label, "aria-valuemin": 0, "aria-valuemax": limit, "aria-valuenow": Math.min(used, limit) },
        el("div", { class: cls, style: "width:" + (share * 100).toFixed(1) + "%" })));
  }

  async function loadConsumers() {
    const q = await api("GET", "/admin/quota");
    const list = (q.consumers || []).slice().sort((a, b) => a.consumer.localeCompare(b.consumer));
    consumerNames(list);
    if (!list.length) { fill("quota", [emptyRow(5, "No consumers.")]); return; }
    fill("quota", list.map((c) => el("tr", { "data-consumer": c.consumer },
      el("th", { scope: "row" }, c.consumer),
      el("td", { "data-tpm-used": c.tpm_used }, meter(c.tpm_used, c.tpm_limit, c.consumer + " tokens per minute")),
      el("td", {}, c.quota_limit ? meter(c.quota_used, c.quota_limit, c.consumer + " quota") : el("span", {}, num(c.quota_used) + " · no quota"),
        c.quota_period ? el("small", {}, " per " + c.quota_period) : null),
      el("td", {}, when(c.quota_resets_at)),
      el("td", {}, Object.entries(c.by_node || {}).sort().map(([n, v]) => n + ": " + num(v)).join(", ")))));
  }

  function consumerNames(list) {
    $("consumer-names").replaceChildren(...list.map((c) => el("option", { value: c.consumer })));
  }

  // ---- usage history ----

  function isoOrEmpty(v) { return v ? new Date(v).toISOString().replace(/\.\d{3}Z$/, "Z") : ""; }

  function usageQuery() {
    const p = new URLSearchParams({ interval: $("usage-interval").value, group_by: "consumer,route" });
    const from = isoOrEmpty($("usage-from").value), to = isoOrEmpty($("usage-to").value);
    if (from) p.set("from", from);
    if (to) p.set("to", to);
    return "/admin/usage?" + p.toString();
  }

  let usageRows = [];

  async function loadUsage() {
    let out;
    try {
      out = await api("GET", usageQuery());
    } catch (e) {
      if (e instanceof APIError && e.status === 404) {
        fill("usage-table", [emptyRow(9, e.message)]);
        $("usage-chart").replaceChildren();
        return;
      }
      throw e;
    }
    usageRows = (out.rows || []).slice().sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : (a.consumer + a.route).localeCompare(b.consumer + b.route)));
    drawUsage();
  }

  function metricOf(r, m) {
    if (m === "tokens") return (r.prompt_tokens || 0) + (r.completion_tokens || 0);
    return r[m] || 0;
  }

  function drawUsage() {
    const rows = usageRows;
    if (!rows.length) {
      fill("usage-table", [emptyRow(9, "No usage in this period.")]);
      $("usage-table").tFoot.replaceChildren();
      $("usage-chart").replaceChildren(el("p", { class: "empty" }, "Nothing to chart."));
      return;
    }
    const tot = { requests: 0, prompt_tokens: 0, completion_tokens: 0, cache_hits: 0, tokens_saved: 0, cost_usd: 0 };
    fill("usage-table", rows.map((r) => {
      for (const k in tot) tot[k] += r[k] || 0;
      return el("tr", { "data-consumer": r.consumer, "data-route": r.route },
        el("td", {}, when(r.start)), el("td", {}, r.consumer), el("td", {}, r.route),
        el("td", { class: "num" }, num(r.requests)), el("td", { class: "num" }, num(r.prompt_tokens)),
        el("td", { class: "num" }, num(r.completion_tokens)), el("td", { class: "num" }, num(r.cache_hits)),
        el("td", { class: "num" }, num(r.tokens_saved)), el("td", { class: "num" }, usd(r.cost_usd)));
    }));
    $("usage-table").tFoot.replaceChildren(el("tr", {}, el("td", { colspan: 3 }, "Total"),
      ...["requests", "prompt_tokens", "completion_tokens", "cache_hits", "tokens_saved"].map((k) => el("td", { class: "num" }, num(tot[k]))),
      el("td", { class: "num" }, usd(tot.cost_usd))));
    chart(rows, $("usage-metric").value);
  }

  // buckets are the chart's intervals: every hour or day of the period
  // asked for, so quiet intervals show as gaps (the data's own when the
  // period is too long to draw that way).
  function buckets(rows) {
    const step = $("usage-interval").value === "day" ? 86400000 : 3600000;
    const to = $("usage-to").value ? new Date($("usage-to").value).getTime() : Date.now();
    const from = $("usage-from").value ? new Date($("usage-from").value).getTime() : to - 86400000;
    const seen = new Set(rows.map((r) => new Date(r.start).toISOString()));
    if (to > from && (to - from) / step <= 400) {
      for (let t = Math.floor(from / step) * step; t < to; t += step) seen.add(new Date(t).toISOString());
    }
    return [...seen].sort();
  }

  const PALETTE = ["#0b5cad", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0e7490", "#a16207", "#be185d", "#4d7c0f", "#475569"];
  const SVG = "http://www.w3.org/2000/svg";

  function svg(tag, attrs, ...kids) {
    const n = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, v);
    for (const k of kids) n.append(k instanceof Node ? k : String(k));
    return n;
  }

  // chart draws one stacked bar per interval, a colour per consumer/route.
  function chart(rows, metric) {
    const starts = buckets(rows);
    const series = [...new Set(rows.map((r) => r.consumer + " / " + r.route))].sort();
    const val = new Map();
    for (const r of rows) {
      const k = new Date(r.start).toISOString() + "\u0000" + r.consumer + " / " + r.route;
      val.set(k, (val.get(k) || 0) + metricOf(r, metric));
    }
    let top = 0;
    for (const s of starts) top = Math.max(top, series.reduce((a, name) => a + (val.get(s + "\u0000" + name) || 0), 0));
    if (top <= 0) {
      $("usage-chart").replaceChildren(el("p", { class: "empty" }, metric === "cost_usd"
        ? "No cost in this period: routes without a price (routes.*.price) have none. Chart tokens instead."
        : "Nothing to chart in this period."));
      return;
    }
    const W = 720, H = 260, L = 64, B = 36, T = 10, R = 10;
    const bw = (W - L - R) / starts.length;
    const label = metric === "cost_usd" ? (v) => "$" + v.toFixed(v < 1 ? 4 : 2) : (v) => num(Math.round(v));
    const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Usage per interval: " + metric.replace("_", " ") });
    for (let i = 0; i <= 4; i++) {
      const y = T + ((H - T - B) * i) / 4;
      g.append(svg("line", { x1: L, x2: W - R, y1: y, y2: y, stroke: "#d5d9de" }));
      g.append(svg("text", { x: L - 6, y: y + 4, "text-anchor": "end", "font-size": 11, fill: "#5b636d" }, label((top * (4 - i)) / 4)));
    }
    starts.forEach((s, i) => {
      let y = H - B;
      series.forEach((name, j) => {
        const v = val.get(s + "\u0000" + name) || 0;
        if (!v) return;
        const h = ((H - T - B) * v) / top;
        y -= h;
        g.append(svg("rect", { x: L + i * bw + bw * 0.1, y, width: Math.max(bw * 0.8, 1), height: Math.max(h, 0.5), fill: PALETTE[j % PALETTE.length] },
          svg("title", {}, `${when(s)} ${name}: ${label(v)}`)));
      });
    });
    const every = Math.max(1, Math.ceil(starts.length / 6));
    starts.forEach((s, i) => {
      if (i % every) return;
      const d = new Date(s);
      const text = $("usage-interval").value === "day" ? d.toLocaleDateString() : d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      g.append(svg("text", { x: L + i * bw + bw / 2, y: H - B + 16, "text-anchor": "middle", "font-size": 11, fill: "#5b636d" }, text));
    });
    const legend = el("div", { class: "legend" }, series.map((name, j) =>
      el("span", {}, el("span", { class: "swatch", style: "background:" + PALETTE[j % PALETTE.length] }), name)));
    $("usage-chart").replaceChildren(g, legend);
  }

  async function exportCSV() {
    const text = await api("GET", usageQuery(), undefined, "text/csv");
    const url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
    const a = el("a", { href: url, download: "llmgate-usage.csv", hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    say("Exported " + Math.max(text.trim().split("\n").length - 1, 0) + " rows as llmgate-usage.csv.");
  }

  // ---- cache browser ----

  let cursor = "";
  let openEntry = null;
  // entriesSeq numbers the table's loads: the list fetched when the view
  // opens can answer after a search the user started meanwhile, and must not
  // replace its results.
  let entriesSeq = 0;

  async function loadCache() {
    if (!$("entries").dataset.mode) await listEntries(false);
  }

  async function listEntries(more) {
    const p = new URLSearchParams({ limit: "50" });
    if (more && cursor) p.set("cursor", cursor);
    const seq = ++entriesSeq;
    const out = await api("GET", "/admin/cache/entries?" + p.toString());
    if (seq !== entriesSeq) return;
    cursor = out.next_cursor || "";
    $("entries-more").hidden = !cursor;
    $("entries").dataset.mode = "list";
    $("entries-caption").textContent = "Recent entries";
    $("entries-col").textContent = "Hits";
    const rows = (out.entries || []).map((e) => entryRow(e, num(e.hits)));
    const tb = $("entries").tBodies[0];
    if (more) tb.append(...rows); else tb.replaceChildren(...(rows.length ? rows : [emptyRow(5, "The cache is empty.")]));
    const routes = new Set([...$("routes").options].map((o) => o.value));
    const parts = new Set([...$("partitions").options].map((o) => o.value));
    for (const e of out.entries || []) { routes.add(e.route); parts.add(e.partition); }
    $("routes").replaceChildren(...[...routes].sort().map((v) => el("option", { value: v })));
    $("partitions").replaceChildren(...[...parts].sort().map((v) => el("option", { value: v })));
  }

  function entryRow(e, last) {
    return el("tr", { "data-entry": e.id },
      el("td", {}, el("button", { type: "button", class: "link", onclick: guard(() => inspect(e.id)) }, short(e.prompt, 120))),
      el("td", {}, e.route || "—"), el("td", {}, e.partition || "—"), el("td", { class: "num" }, last),
      el("td", {}, e.created_at ? when(e.created_at) : "—"));
  }

  function short(s, n) { s = String(s || "").replace(/\s+/g, " ").trim(); return s.length > n ? s.slice(0, n - 1) + "…" : s || "(empty)"; }

  async function search(ev) {
    const route = $("search-route").value.trim(), partition = $("search-partition").value.trim(), text = $("search-text").value;
    const seq = ++entriesSeq;
    const out = await api("POST", "/admin/cache/search", { route, partition, messages: [{ role: "user", content: text }] });
    if (seq !== entriesSeq) return;
    $("entries").dataset.mode = "search";
    $("entries-more").hidden = true;
    $("entries-caption").textContent = "Nearest entries to your prompt";
    $("entries-col").textContent = "Distance";
    const rows = (out.matches || []).map((m) => entryRow({ id: m.id, prompt: m.prompt, route, partition }, m.distance.toFixed(3)));
    fill("entries", rows.length ? rows : [emptyRow(5, "No entry near that prompt in " + route + " / " + partition + ".")]);
    say((out.matches || []).length + " matches.");
  }

  // answerOf pulls the text out of a stored chat or Responses answer.
  function answerOf(resp) {
    if (!resp || typeof resp !== "object") return "";
    if (Array.isArray(resp.choices)) return resp.choices.map((c) => (c.message && c.message.content) || c.text || "").join("\n---\n");
    if (Array.isArray(resp.output)) {
      return resp.output.flatMap((o) => (Array.isArray(o.content) ? o.content : [])).map((c) => c.text || "").join("\n");
    }
    if (Array.isArray(resp.data)) return resp.data.length + " embedding(s)";
    return "";
  }

  async function inspect(id) {
    const e = await api("GET", "/admin/cache/entries/" + encodeURIComponent(id));
    openEntry = e;
    $("entry-id").textContent = e.id;
    $("entry-meta").replaceChildren(
      ...[["Route", e.route], ["Partition", e.partition], ["Hits", num(e.hits)], ["Created", when(e.created_at)], ["Expires", when(e.expires_at)]]
        .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    $("entry-prompt").textContent = e.prompt;
    $("entry-answer").textContent = answerOf(e.response) || "(no text in the stored answer)";
    $("entry-response").textContent = e.response ? JSON.stringify(e.response, null, 2) : "(none)";
    resetConfirm($("entry-delete"), "Delete entry");
    $("entry").hidden = false;
    $("entry-delete").focus();
  }

  // twoStep makes a destructive button ask once more before acting.
  function twoStep(button, label, action) {
    button.addEventListener("click", guard(async () => {
      if (button.dataset.armed !== "1") {
        button.dataset.armed = "1";
        button.textContent = "Click again to confirm";
        return;
      }
      resetConfirm(button, label);
      await action();
    }));
    button.addEventListener("blur", () => resetConfirm(button, label));
  }

  function resetConfirm(button, label) { button.dataset.armed = ""; button.textContent = label; }

  async function deleteEntry() {
    const id = openEntry.id;
    await api("DELETE", "/admin/cache/entries/" + encodeURIComponent(id));
    const row = document.querySelector(`#entries tr[data-entry="${CSS.escape(id)}"]`);
    if (row) row.remove();
    closeEntry();
    say("Deleted entry " + id + " on every node.");
  }

  function closeEntry() { $("entry").hidden = true; openEntry = null; }

  function purgeReady() {
    const p = $("purge-partition").value.trim();
    $("purge-go").disabled = !p || $("purge-confirm").value !== p;
  }

  async function purge() {
    const partition = $("purge-partition").value.trim();
    if (!partition || $("purge-confirm").value !== partition) return;
    const p = new URLSearchParams({ partition });
    const route = $("purge-route").value.trim();
    if (route) p.set("route", route);
    const out = await api("DELETE", "/admin/cache?" + p.toString());
    $("purge-confirm").value = "";
    purgeReady();
    say("Purged " + num(out.deleted) + " entries of " + partition + (route ? " / " + route : "") + ".");
    await listEntries(false);
  }

  // ---- run-time keys ----

  async function loadKeys() {
    const q = await api("GET", "/admin/quota").catch(notRunning);
    if (q) consumerNames(q.consumers || []);
    if ($("keys-consumer").value.trim()) await listKeys();
  }

  async function listKeys() {
    const name = $("keys-consumer").value.trim();
    if (!name) return;
    const out = await api("GET", "/admin/consumers/" + encodeURIComponent(name) + "/keys");
    const keys = out.keys || [];
    fill("keys-table", keys.length ? keys.map((k) => {
      const revoke = el("button", { type: "button", class: "danger", "data-revoke": k.id }, "Revoke");
      twoStep(revoke, "Revoke", async () => {
        await api("DELETE", "/admin/consumers/" + encodeURIComponent(name) + "/keys/" + encodeURIComponent(k.id));
        say("Revoked key " + k.prefix + "… of " + name + " on every node.");
        await listKeys();
      });
      return el("tr", { "data-key": k.id }, el("td", {}, el("code", {}, k.prefix + "…")), el("td", {}, k.description || "—"),
        el("td", {}, when(k.created_at)), el("td", {}, k.expires_at ? when(k.expires_at) : "never"), el("td", {}, revoke));
    }) : [emptyRow(5, name + " has no run-time keys.")]);
  }

  async function createKey() {
    const name = $("keys-consumer").value.trim();
    if (!name) { say("Choose a consumer first.", true); $("keys-consumer").focus(); return; }
    const body = {};
    if ($("newkey-desc").value.trim()) body.description = $("newkey-desc").value.trim();
    if ($("newkey-expires").value) body.expires_at = isoOrEmpty($("newkey-expires").value);
    const k = await api("POST", "/admin/consumers/" + encodeURIComponent(name) + "/keys", body);
    $("newkey-value").textContent = k.key;
    $("newkey").hidden = false;
    $("newkey-desc").value = "";
    $("newkey-expires").value = "";
    say("Created key " + k.prefix + "… for " + name + ".");
    $("newkey-copy").focus();
    await listKeys();
  }

  function forgetKey() {
    $("newkey-value").textContent = "";
    $("newkey").hidden = true;
  }

  async function copyKey() {
    await navigator.clipboard.writeText($("newkey-value").textContent);
    say("Copied.");
  }

  const LOADERS = { overview: loadOverview, consumers: loadConsumers, usage: loadUsage, cache: loadCache, keys: loadKeys };

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", () => signOut());
    $("usage-form").addEventListener("submit", guard(loadUsage));
    $("usage-metric").addEventListener("change", () => { if (usageRows.length) drawUsage(); });
    $("usage-csv").addEventListener("click", guard(exportCSV));
    $("search-form").addEventListener("submit", guard(search));
    $("entries-all").addEventListener("click", guard(() => listEntries(false)));
    $("entries-more").addEventListener("click", guard(() => listEntries(true)));
    twoStep($("entry-delete"), "Delete entry", deleteEntry);
    $("entry-close").addEventListener("click", closeEntry);
    $("purge-partition").addEventListener("input", purgeReady);
    $("purge-confirm").addEventListener("input", purgeReady);
    $("purge-form").addEventListener("submit", guard(purge));
    $("keys-form").addEventListener("submit", guard(listKeys));
    $("newkey-form").addEventListener("submit", guard(createKey));
    $("newkey-copy").addEventListener("click", guard(copyKey));
    $("newkey-done").addEventListener("click", forgetKey);
    window.addEventListener("hashchange", () => { forgetKey(); show(); });
    show();
  });
})();
