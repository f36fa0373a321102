// rdbvault console: a page over the same signed API the SDKs use. Every
// call is signed here, in the browser, with SDK-HMAC-SHA256 (WebCrypto), as
// the Huawei Cloud SDKs sign; the secret key stays in this tab's
// sessionStorage and is never sent. No cookie is used, so no other site can
// make the browser call the API on the operator's behalf (no CSRF).
"use strict";

const enc = new TextEncoder();
const $ = (sel) => document.querySelector(sel);
const state = { ak: "", sk: "", project: "", projects: [], timer: null };

// ---- signing ---------------------------------------------------------------

const hex = (buf) => Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, "0")).join("");
const sha256 = async (data) => hex(await crypto.subtle.digest("SHA-256", typeof data === "string" ? enc.encode(data) : data));
async function hmac(key, msg) {
  const k = await crypto.subtle.importKey("raw", enc.encode(key), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return hex(await crypto.subtle.sign("HMAC", k, enc.encode(msg)));
}
// RFC 3986: unreserved characters literal, everything else %XX.
const rfc3986 = (s) => encodeURIComponent(s).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
function canonicalUri(path) {
  const uri = decodeURIComponent(path).split("/").map(rfc3986).join("/");
  return uri.endsWith("/") ? uri : uri + "/";
}
function canonicalQuery(query) {
  const pairs = Array.from(new URLSearchParams(query));
  pairs.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  return pairs.map(([k, v]) => rfc3986(k) + "=" + rfc3986(v)).join("&");
}
const sdkDate = () => new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");

/** A DCS error, in the words the API gave. */
class ApiError extends Error {
  constructor(status, code, msg) {
    super(`${code}: ${msg}`);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, query = "", body = undefined) {
  const text = body === undefined ? "" : JSON.stringify(body);
  const date = sdkDate();
  const headers = {
    "content-type": "application/json",
    host: location.host,
    "x-project-id": state.project,
    "x-sdk-date": date,
  };
  const names = Object.keys(headers).sort();
  const canonical = [
    method,
    canonicalUri(path),
    canonicalQuery(query),
    names.map((n) => `${n}:${headers[n].trim()}\n`).join(""),
    names.join(";"),
    await sha256(text),
  ].join("\n");
  const toSign = `SDK-HMAC-SHA256\n${date}\n${await sha256(canonical)}`;
  const signature = await hmac(state.sk, toSign);
  delete headers.host; // the browser sends it, as signed
  headers.authorization = `SDK-HMAC-SHA256 Access=${state.ak}, SignedHeaders=${names.join(";")}, Signature=${signature}`;
  let r;
  try {
    r = await fetch(path + (query ? "?" + query : ""), { method, headers, body: body === undefined ? undefined : text });
  } catch (e) {
    throw new ApiError(0, "network", `the service could not be reached (${e.message})`);
  }
  const raw = await r.text();
  let json = null;
  try { json = raw ? JSON.parse(raw) : null; } catch (_) { /* not JSON */ }
  if (!r.ok) {
    if (json && json.error_code) throw new ApiError(r.status, json.error_code, json.error_msg);
    throw new ApiError(r.status, `HTTP ${r.status}`, raw.slice(0, 200) || r.statusText);
  }
  return json;
}
const p = (rest) => `/v2/${encodeURIComponent(state.project)}/${rest}`;

// ---- rendering helpers --------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
function showError(e) {
  const box = $("#error");
  if (!e) { box.hidden = true; box.textContent = ""; return; }
  box.hidden = false;
  box.textContent = e instanceof ApiError ? `Error ${e.code} (HTTP ${e.status}): ${e.message.replace(/^[^:]*: /, "")}` : String(e.message || e);
  if (e instanceof ApiError && e.status === 401) box.textContent += " — sign in again.";
}
const guard = (fn) => async (...args) => {
  try { showError(null); await fn(...args); } catch (e) { showError(e); }
};
function bytes(n) {
  if (!n) return "0 B";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${u[i]}`;
}
const parseTime = (s) => (s ? Date.parse(s.replace(/^(\d{4}-\d\d-\d\d)T?(\d\d:\d\d:\d\d)(Z)?$/, "$1T$2Z")) : NaN);
function seconds(b) {
  const a = parseTime(b.execution_at || b.created_at), z = parseTime(b.updated_at);
  return isNaN(a) || isNaN(z) ? null : Math.max(0, (z - a) / 1000);
}
function statusCell(s) {
  const cls = { succeed: "ok", RUNNING: "ok", failed: "bad", ERROR: "bad", deleted: "muted", expired: "muted" }[s] || "warn";
  return h("span", { class: cls }, s);
}
function progressCell(b) {
  const pct = Math.max(0, Math.min(100, parseFloat(b.progress) || 0));
  if (b.status === "succeed") return h("span", {}, "100 %");
  if (b.status !== "backuping" && b.status !== "waiting" && b.status !== "restoring") return "";
  return h("span", { class: "row" }, h("span", { class: "bar", role: "progressbar", "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100 }, Object.assign(h("span"), { style: `width:${pct}%` })), `${pct.toFixed(0)} %`);
}
// What a failure code means, as the README's table says.
const FAILURES = {
  "dcs.08.0002": "timed out (connect, first byte, or a stall)",
  "dcs.08.0008": "the backup window closed before it could start",
  "dcs.08.0101": "no node of the instance could be reached",
  "dcs.08.0102": "Redis refused the credentials",
  "dcs.08.0103": "Redis refused the replication handshake",
  "dcs.08.0104": "the connection closed mid-transfer",
  "dcs.08.0105": "the server did not speak the Redis protocol",
  "dcs.08.0106": "the RDB payload failed verification",
  "dcs.08.0107": "the object store failed",
  "dcs.08.0108": "the service stopped during the job",
  "dcs.08.0109": "internal error (metadata store)",
  "dcs.08.0110": "the cluster changed during the backup",
  "dcs.08.0111": "the ACL user lacks a right",
  "dcs.08.0112": "cannot be done as asked",
  "dcs.08.0113": "the snapshot outgrew max_backup_bytes",
  "dcs.08.0114": "refused by the project's quota",
};

// ---- views -------------------------------------------------------------------

function render(...nodes) {
  const main = $("#main");
  main.replaceChildren(...nodes);
}

function signInView() {
  $("#nav").hidden = true;
  const form = h("form", { class: "card signin", id: "signin" },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "With an access key and its secret key, as for the API. The secret key never leaves this browser: every call is signed here."),
    h("label", {}, "Access key", h("input", { name: "ak", required: true, autocomplete: "username" })),
    h("label", {}, "Secret key", h("input", { name: "sk", type: "password", required: true, autocomplete: "current-password" })),
    h("label", {}, "Project id", h("input", { name: "project", required: true, pattern: "[0-9a-f]{32}", title: "32 hexadecimal characters" })),
    h("button", { class: "primary", type: "submit" }, "Sign in"));
  form.addEventListener("submit", guard(async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    state.ak = f.get("ak").trim();
    state.sk = f.get("sk");
    state.project = f.get("project").trim();
    try {
      const who = await api("GET", p("rdbvault/credential"));
      state.projects = who.projects;
    } catch (e) {
      state.sk = "";
      throw e;
    }
    sessionStorage.setItem("rdbvault", JSON.stringify({ ak: state.ak, sk: state.sk, project: state.project, projects: state.projects }));
    location.hash = "#/instances";
    route();
  }));
  render(form);
  form.querySelector("input").focus();
}

function signOut() {
  sessionStorage.removeItem("rdbvault");
  Object.assign(state, { ak: "", sk: "", project: "", projects: [] });
  location.hash = "#/signin";
  route();
}

function fillProjects() {
  const sel = $("#project");
  sel.replaceChildren(...state.projects.map((id) => h("option", { value: id, selected: id === state.project }, id)));
}

/** How often the instance's policy wants a backup, in ms (null: no policy). */
function policyInterval(policy) {
  const plan = policy && policy.backup_type === "auto" && policy.periodical_backup_plan;
  if (!plan || !plan.backup_at || !plan.backup_at.length) return null;
  return (7 / plan.backup_at.length) * 86400000;
}

async function lastBackup(id) {
  const r = await api("GET", p(`instances/${id}/backups`), "limit=1&offset=0");
  return (r.backup_record_response || [])[0] || null;
}

async function instancesView() {
  const r = await api("GET", p("instances"), "limit=1000");
  const rows = [];
  for (const i of r.instances || []) {
    const [shown, last] = await Promise.all([api("GET", p(`instances/${i.instance_id}`)).catch(() => null), lastBackup(i.instance_id).catch(() => null)]);
    const policy = shown && shown.instance_backup_policy && shown.instance_backup_policy.policy;
    const every = policyInterval(policy);
    const age = last ? Date.now() - parseTime(last.created_at) : Infinity;
    const stale = last && (last.status === "failed" || (every && age > every + 3600000));
    rows.push(h("tr", { "data-instance": i.instance_id },
      h("td", {}, h("a", { href: `#/instances/${i.instance_id}` }, i.name)),
      h("td", {}, statusCell(i.status)),
      h("td", {}, i.cache_mode || (shown && shown.cache_mode) || ""),
      h("td", { class: "wide" }, i.engine_version),
      h("td", { class: "wide" }, `${i.used_memory} MB`),
      h("td", { class: "wide" }, i.sharding_count || 1),
      h("td", { class: "wide" }, policy && policy.backup_type === "auto" ? `auto, ${policy.periodical_backup_plan.begin_at}, ${policy.save_days} d` : "manual"),
      h("td", { class: stale ? "bad" : "" }, last ? `${last.created_at} ${last.status}${last.error_code ? " " + last.error_code : ""}` : "none"),
      h("td", {}, h("div", { class: "row" },
        h("button", { type: "button", class: "primary", onclick: guard(async () => { await api("POST", p(`instances/${i.instance_id}/backups`), "", { remark: "console" }); location.hash = `#/instances/${i.instance_id}`; }) }, "Back up now"),
        h("button", { type: "button", class: "danger", onclick: guard(async () => { if (confirm(`Remove the registration of ${i.name}? Its backups must be deleted first.`)) { await api("DELETE", p(`rdbvault/instances/${i.instance_id}`)); route(); } }) }, "Remove")))));
  }
  const register = h("form", { class: "card", id: "register" },
    h("h2", {}, "Register an instance"),
    h("label", {}, "Name", h("input", { name: "name", required: true, maxlength: 64 })),
    h("label", {}, "Mode", h("select", { name: "mode" }, ["single", "ha", "cluster"].map((m) => h("option", { value: m }, m)))),
    h("label", {}, "Addresses (host:port, comma separated)", h("input", { name: "addrs", required: true })),
    h("label", {}, "ACL user (optional)", h("input", { name: "username" })),
    h("label", {}, "Password (optional)", h("input", { name: "password", type: "password", autocomplete: "new-password" })),
    h("button", { type: "submit", class: "primary" }, "Register"));
  register.addEventListener("submit", guard(async (ev) => {
    ev.preventDefault();
    const f = new FormData(register);
    const body = { name: f.get("name"), mode: f.get("mode"), addrs: f.get("addrs").split(",").map((s) => s.trim()).filter(Boolean) };
    if (f.get("username")) body.username = f.get("username");
    if (f.get("password")) body.password = f.get("password");
    await api("POST", p("rdbvault/instances"), "", body);
    route();
  }));
  render(h("h1", {}, "Instances"),
    h("div", { class: "scroll" }, h("table", { id: "instances" },
      h("thead", {}, h("tr", {}, ["Name", "Status", "Mode", "Version", "Used memory", "Shards", "Policy", "Last backup", ""].map((t, n) => h("th", { class: n >= 3 && n <= 6 ? "wide" : "" }, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No instance registered yet."))))),
    register);
}

function chart(backups) {
  const done = backups.filter((b) => b.status === "succeed").map((b) => ({ t: parseTime(b.created_at), size: b.size, secs: seconds(b) || 0 })).filter((x) => !isNaN(x.t)).sort((a, b) => a.t - b.t);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", "0 0 700 180");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "backup size (blue) and duration (orange) over time");
  if (done.length < 1) return h("p", { class: "muted" }, "No successful backup to chart yet.");
  const t0 = done[0].t, t1 = done[done.length - 1].t || t0 + 1;
  const maxSize = Math.max(...done.map((d) => d.size), 1), maxSecs = Math.max(...done.map((d) => d.secs), 1);
  const x = (t) => 40 + ((t - t0) / Math.max(t1 - t0, 1)) * 640;
  const line = (key, max, color) => {
    const pts = done.map((d) => `${x(d.t).toFixed(1)},${(160 - (d[key] / max) * 140).toFixed(1)}`).join(" ");
    const pl = document.createElementNS(svg.namespaceURI, "polyline");
    pl.setAttribute("points", pts);
    pl.setAttribute("fill", "none");
    pl.setAttribute("stroke", color);
    pl.setAttribute("stroke-width", "2");
    svg.append(pl);
    for (const d of done) {
      const c = document.createElementNS(svg.namespaceURI, "circle");
      c.setAttribute("cx", x(d.t).toFixed(1));
      c.setAttribute("cy", (160 - (d[key] / max) * 140).toFixed(1));
      c.setAttribute("r", "3");
      c.setAttribute("fill", color);
      svg.append(c);
    }
  };
  line("size", maxSize, "#0969da");
  line("secs", maxSecs, "#bc4c00");
  const label = (txt, y, color) => {
    const t = document.createElementNS(svg.namespaceURI, "text");
    t.setAttribute("x", "44"); t.setAttribute("y", y); t.setAttribute("fill", color); t.setAttribute("font-size", "12");
    t.textContent = txt;
    svg.append(t);
  };
  label(`size, max ${bytes(maxSize)}`, 14, "#0969da");
  label(`duration, max ${maxSecs.toFixed(1)} s`, 30, "#bc4c00");
  return svg;
}

async function instanceView(id) {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const offset = parseInt(params.get("offset") || "0", 10) || 0, limit = 20;
  let query = `limit=${limit}&offset=${offset}`;
  for (const k of ["begin_time", "end_time"]) if (params.get(k)) query += `&${k}=${encodeURIComponent(params.get(k))}`;
  const [shown, page, all] = await Promise.all([
    api("GET", p(`instances/${id}`)),
    api("GET", p(`instances/${id}/backups`), query),
    api("GET", p(`instances/${id}/backups`), "limit=200&offset=0"),
  ]);
  const list = page.backup_record_response || [];
  const rows = list.map((b) => h("tr", { "data-backup": b.backup_id },
    h("td", {}, b.backup_name, h("div", { class: "muted" }, b.backup_id)),
    h("td", {}, statusCell(b.status), b.error_code ? h("div", { class: "bad" }, `${b.error_code}: ${FAILURES[b.error_code] || ""}`, b.error_msg ? h("div", { class: "muted" }, b.error_msg) : null) : null),
    h("td", {}, progressCell(b)),
    h("td", {}, bytes(b.size)),
    h("td", { class: "wide" }, seconds(b) === null ? "" : `${seconds(b).toFixed(seconds(b) < 10 ? 2 : 1)} s`),
    h("td", { class: "wide" }, `${b.backup_type}, ${b.backup_format}`),
    h("td", { class: "wide" }, b.source_node || ""),
    h("td", { class: "wide" }, b.created_at),
    h("td", {}, b.status === "succeed" ? h("div", { class: "row" },
      h("select", { "aria-label": "link expiration", class: "expiry" }, [[300, "5 min"], [3600, "1 h"], [86400, "24 h"]].map(([s, t]) => h("option", { value: s, selected: s === 3600 }, t))),
      h("button", { type: "button", class: "links", onclick: guard(async (ev) => showLinks(id, b.backup_id, ev.target.closest("div").querySelector(".expiry").value)) }, "Download"),
      b.backup_format === "rdb" ? h("button", { type: "button", class: "analyze", onclick: guard(() => showAnalysis(id, b)) }, "Analyze") : null,
      h("button", { type: "button", onclick: guard(() => restoreForm(id, b)) }, "Restore"),
      h("button", { type: "button", class: "danger", onclick: guard(async () => { if (confirm(`Delete backup ${b.backup_name}? Its files are removed.`)) { await api("DELETE", p(`instances/${id}/backups/${b.backup_id}`)); route(); } }) }, "Delete")) : null)));
  const filter = h("form", { class: "row", id: "filter" },
    h("label", {}, "From ", h("input", { name: "begin_time", placeholder: "yyyyMMddHHmmss", value: params.get("begin_time") || "", pattern: "\\d{14}" })),
    h("label", {}, "to ", h("input", { name: "end_time", placeholder: "yyyyMMddHHmmss", value: params.get("end_time") || "", pattern: "\\d{14}" })),
    h("button", { type: "submit" }, "Filter"));
  filter.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const f = new URLSearchParams(new FormData(filter));
    for (const [k, v] of Array.from(f)) if (!v) f.delete(k);
    location.hash = `#/instances/${id}?${f}`;
  });
  const pager = h("div", { class: "row" },
    h("button", { type: "button", disabled: offset === 0, onclick: () => { params.set("offset", Math.max(0, offset - limit)); location.hash = `#/instances/${id}?${params}`; } }, "Newer"),
    h("span", { class: "muted" }, `${offset + 1}–${offset + list.length} of ${page.total_num}`),
    h("button", { type: "button", disabled: offset + limit >= page.total_num, onclick: () => { params.set("offset", offset + limit); location.hash = `#/instances/${id}?${params}`; } }, "Older"));
  render(
    h("h1", {}, `${shown.name} `, statusCell(shown.status)),
    h("p", { class: "muted" }, `${shown.cache_mode || ""} · Redis ${shown.engine_version} · ${shown.used_memory} MB used · ${shown.ip}:${shown.port}`),
    h("div", { class: "row" }, h("button", { type: "button", class: "primary", id: "backup-now", onclick: guard(async () => { await api("POST", p(`instances/${id}/backups`), "", { remark: "console" }); route(); }) }, "Back up now")),
    h("div", { id: "panel" }),
    h("h2", {}, "Backups"), filter,
    h("div", { class: "scroll" }, h("table", { id: "backups" },
      h("thead", {}, h("tr", {}, ["Backup", "Status", "Progress", "Size", "Duration", "Type", "Source node", "Created", ""].map((t, n) => h("th", { class: n >= 4 && n <= 7 ? "wide" : "" }, t)))),
      h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 9, class: "muted" }, "No backup in this range."))))),
    pager,
    h("h2", {}, "Size and duration over time"), chart(all.backup_record_response || []));
}

async function showLinks(instance, backup, expiration) {
  const r = await api("POST", p(`instances/${instance}/backups/${backup}/links`), "", { expiration: parseInt(expiration, 10) });
  const panel = $("#panel");
  panel.replaceChildren(h("div", { class: "card", id: "links" },
    h("h2", {}, `Files of ${backup}`),
    h("ul", { class: "links" }, r.links.map((l) => h("li", {},
      h("a", { href: l.link, download: l.file_name, class: "file" }, l.file_name), ` (${bytes(l.size)}, SHA-256 ${l.sha256 || "?"}) `,
      h("button", { type: "button", onclick: guard(async () => { await navigator.clipboard.writeText(l.link); }) }, "Copy link"))))));
}

/** A horizontal bar chart of `entries` ([label, value]), as SVG. */
function bars(title, entries, fmt) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const height = 24 + entries.length * 20;
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", `0 0 700 ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  svg.style.height = `${height}px`;
  const text = (x, y, content, anchor = "start") => {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", x); t.setAttribute("y", y); t.setAttribute("font-size", "12"); t.setAttribute("text-anchor", anchor);
    t.textContent = content;
    svg.append(t);
  };
  text(4, 14, title);
  const max = Math.max(1, ...entries.map((e) => e[1]));
  entries.forEach(([label, value], n) => {
    const y = 24 + n * 20;
    text(216, y + 13, label.length > 34 ? label.slice(0, 33) + "…" : label, "end");
    const r = document.createElementNS(ns, "rect");
    r.setAttribute("x", 222); r.setAttribute("y", y + 3); r.setAttribute("height", 13);
    r.setAttribute("width", Math.max(1, (value / max) * 380).toFixed(1)); r.setAttribute("fill", "#0969da");
    svg.append(r);
    text(608, y + 13, fmt(value));
  });
  return entries.length ? svg : h("p", { class: "muted" }, `${title}: nothing.`);
}

async function showAnalysis(instance, b) {
  $("#panel").replaceChildren(h("div", { class: "card" }, h("p", { class: "muted" }, `Analyzing ${b.backup_name}…`)));
  const r = await api("GET", p(`instances/${instance}/backups/${b.backup_id}/rdbvault/analysis`), "top=10&prefixes=10");
  const sum = (pick) => {
    const out = {};
    for (const f of r.files) for (const [k, v] of Object.entries(pick(f))) out[k] = (out[k] || 0) + v;
    return Object.entries(out).sort((x, y) => y[1] - x[1]);
  };
  const types = sum((f) => Object.fromEntries(Object.entries(f.by_encoding).map(([k, t]) => [k, t.bytes])));
  const prefixes = sum((f) => Object.fromEntries(f.prefixes.map((x) => [x.prefix, x.bytes]))).slice(0, 10);
  const ttl = sum((f) => f.ttl);
  const biggest = r.files.flatMap((f) => f.biggest_by_size).sort((x, y) => y.measure - x.measure).slice(0, 10);
  const keys = r.files.reduce((n, f) => n + f.keys, 0);
  $("#panel").replaceChildren(h("div", { class: "card", id: "analysis" },
    h("h2", {}, `Keys of ${b.backup_name}: ${keys} keys in ${r.files.length} file(s)`),
    bars("bytes by type/encoding", types, bytes),
    bars("bytes by key prefix", prefixes, bytes),
    bars("keys by time to live", ttl, (n) => `${n} keys`),
    h("h2", {}, "Biggest keys"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Key", "Type", "DB", "Bytes"].map((t) => h("th", {}, t)))),
      h("tbody", {}, biggest.map((k) => h("tr", {}, h("td", {}, k.key), h("td", {}, k.kind), h("td", {}, k.db), h("td", {}, bytes(k.measure))))))));
}

async function restoreForm(instance, b) {
  const targets = (await api("GET", p("instances"), "limit=1000")).instances || [];
  const form = h("form", { class: "card", id: "restore" },
    h("h2", {}, `Restore ${b.backup_name}`),
    h("label", {}, "Into", h("select", { name: "target" }, targets.map((t) => h("option", { value: t.instance_id, selected: t.instance_id === instance }, t.name)))),
    h("label", {}, "Mode", h("select", { name: "mode" }, h("option", { value: "replace" }, "replace: flush the target first"), h("option", { value: "merge" }, "merge: keep keys not in the backup"))),
    h("label", {}, "Method", h("select", { name: "method" }, ["auto", "replicate", "restore", "commands"].map((m) => h("option", { value: m }, m)))),
    h("button", { type: "submit", class: "danger" }, "Restore (overwrites the target's data)"));
  form.addEventListener("submit", guard(async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    if (!confirm("The target's data will be overwritten. Go on?")) return;
    await api("POST", p(`instances/${instance}/restores`), "", { backup_id: b.backup_id, target_instance_id: f.get("target"), mode: f.get("mode"), method: f.get("method"), remark: "console" });
    location.hash = "#/activity";
  }));
  $("#panel").replaceChildren(form);
}

async function activityView() {
  const instances = (await api("GET", p("instances"), "limit=1000")).instances || [];
  const running = [], restores = [];
  for (const i of instances) {
    const [b, r] = await Promise.all([api("GET", p(`instances/${i.instance_id}/backups`), "limit=20&offset=0"), api("GET", p(`instances/${i.instance_id}/restores`), "limit=20&offset=0")]);
    for (const x of b.backup_record_response || []) if (x.status === "waiting" || x.status === "backuping") running.push([i, x]);
    for (const x of r.restore_record_response || []) restores.push([i, x]);
  }
  render(h("h1", {}, "Restores & jobs"),
    h("h2", {}, "Backups running"),
    h("table", {}, h("thead", {}, h("tr", {}, ["Instance", "Backup", "Status", "Progress"].map((t) => h("th", {}, t)))), h("tbody", {}, running.length ? running.map(([i, b]) => h("tr", {}, h("td", {}, i.name), h("td", {}, b.backup_name), h("td", {}, statusCell(b.status)), h("td", {}, progressCell(b)))) : h("tr", {}, h("td", { class: "muted" }, "None.")))),
    h("h2", {}, "Restores"),
    h("table", { id: "restores" }, h("thead", {}, h("tr", {}, ["Instance", "Backup", "Status", "Progress", "Mode/method", "Error", "Created"].map((t) => h("th", {}, t)))), h("tbody", {}, restores.length ? restores.map(([i, r]) => h("tr", {}, h("td", {}, i.name), h("td", {}, r.backup_name), h("td", {}, statusCell(r.status)), h("td", {}, progressCell(r)), h("td", {}, `${r.mode}/${r.method_used || r.method}`), h("td", { class: r.error_code ? "bad" : "" }, r.error_code ? `${r.error_code}: ${FAILURES[r.error_code] || ""} ${r.error_msg || ""}` : ""), h("td", {}, r.created_at))) : h("tr", {}, h("td", { class: "muted" }, "None.")))));
}

// ---- routing -------------------------------------------------------------------

async function route() {
  clearTimeout(state.timer);
  const hash = location.hash || "#/instances";
  if (!state.sk || hash.startsWith("#/signin")) return signInView();
  $("#nav").hidden = false;
  fillProjects();
  const [path] = hash.slice(1).split("?");
  const parts = path.split("/").filter(Boolean);
  try {
    if (parts[0] === "instances" && parts[1]) await instanceView(parts[1]);
    else if (parts[0] === "activity") await activityView();
    else await instancesView();
    showError(null);
  } catch (e) {
    showError(e);
    if (e instanceof ApiError && e.status === 401) return;
  }
  // Live: the page refreshes itself while it is shown (not while a form is open).
  state.timer = setTimeout(() => { if (!document.querySelector("#panel form, #panel #links, #panel #analysis, #register input:focus, #filter input:focus")) route(); else state.timer = setTimeout(route, 2000); }, 2000);
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  const saved = JSON.parse(sessionStorage.getItem("rdbvault") || "null");
  if (saved) Object.assign(state, saved);
  $("#signout").addEventListener("click", signOut);
  $("#project").addEventListener("change", (ev) => { state.project = ev.target.value; sessionStorage.setItem("rdbvault", JSON.stringify({ ak: state.ak, sk: state.sk, project: state.project, projects: state.projects })); location.hash = "#/instances"; route(); });
  route();
});
