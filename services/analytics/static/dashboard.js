// deskstream dashboard: polls /v1/summary and /v1/series and draws with plain DOM and SVG.
// Every value from the API is written with textContent or as an SVG attribute, never as
// HTML, so nothing in ticket data (tags, agent ids) can become markup or script.
"use strict";

const REFRESH_MS = 5000;
const SVG = "http://www.w3.org/2000/svg";
const CHANNEL_COLORS = {
  chat: "#2f6fb3", email: "#8e44ad", sms: "#16a085", whatsapp: "#27ae60", social: "#e67e22",
  voice: "#c0392b", webform: "#7f8c8d",
};
const EXTRA_COLORS = ["#34495e", "#d35400", "#1abc9c", "#9b59b6", "#f1c40f", "#95a5a6"];
const STATUS_COLORS = { new: "#2f6fb3", open: "#d98e04", answered: "#2e8b57", postponed: "#7f8c8d" };
let bucket = "hour";
let lastOk = null;

// ------------------------------------------------------------ small helpers

function $(id) { return document.getElementById(id); }

function el(tag, opts = {}, children = []) {
  const node = document.createElement(tag);
  if (opts.cls) node.className = opts.cls;
  if (opts.text !== undefined && opts.text !== null) node.textContent = String(opts.text);
  if (opts.title) node.title = String(opts.title);
  for (const child of children) node.appendChild(child);
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function colorFor(key, i) {
  return CHANNEL_COLORS[key] || EXTRA_COLORS[i % EXTRA_COLORS.length];
}

function duration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 36 * 3600) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

function percent(r) { return r === null || r === undefined ? "–" : `${Math.round(r * 1000) / 10}%`; }

// the top of a four-step axis: whole-number steps for counts, clock-friendly ones for durations
const DURATION_STEPS = [15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];

function countMax(v) {
  const wanted = Math.max(1, v) / 4;
  const p = Math.pow(10, Math.floor(Math.log10(wanted)));
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (Math.max(1, Math.round(m * p)) >= wanted) return 4 * Math.max(1, Math.round(m * p));
  return 40 * p;
}

function durationMax(v) {
  const step = DURATION_STEPS.find((s) => 4 * s >= v);
  return 4 * (step || Math.ceil(v / 4 / 604800) * 604800);
}

function bucketLabel(iso) {
  const d = new Date(iso);
  if (bucket === "day") return iso.slice(5, 10);
  return `${String(d.getHours()).padStart(2, "0")}:00`;
}

function legend(list, items) {
  list.replaceChildren(...items.map(([label, color]) => {
    const sw = el("span", { cls: "swatch" });
    sw.style.background = color;
    return el("li", {}, [sw, document.createTextNode(label)]);
  }));
}

// ------------------------------------------------------------ charts

const W = 760, H = 220, PAD = { l: 48, r: 10, t: 10, b: 28 };

function frame(buckets, maxY, fmt) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  const innerH = H - PAD.t - PAD.b;
  for (let i = 0; i <= 4; i++) {
    const y = PAD.t + innerH - (innerH * i) / 4;
    root.appendChild(svg("line", { x1: PAD.l, x2: W - PAD.r, y1: y, y2: y, class: "axis" }));
    root.appendChild(svg("text", { x: PAD.l - 6, y: y + 3, "text-anchor": "end", class: "tick" }, fmt((maxY * i) / 4)));
  }
  const step = (W - PAD.l - PAD.r) / Math.max(buckets.length, 1);
  const every = Math.max(1, Math.ceil(buckets.length / 12));
  buckets.forEach((b, i) => {
    if (i % every) return;
    root.appendChild(svg("text", { x: PAD.l + step * (i + 0.5), y: H - 8, "text-anchor": "middle", class: "tick" },
      bucketLabel(b)));
  });
  return { root, step, y: (v) => PAD.t + innerH - (innerH * v) / maxY };
}

function emptyNote(root, text) {
  root.appendChild(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty-note" }, text));
}

function stackedBars(container, answer) {
  const { buckets, series } = answer;
  const totals = buckets.map((_, i) => series.reduce((sum, s) => sum + (s.values[i] || 0), 0));
  const maxY = countMax(Math.max(0, ...totals));
  const f = frame(buckets, maxY, (v) => String(Math.round(v)));
  buckets.forEach((b, i) => {
    let base = 0;
    series.forEach((s, k) => {
      const v = s.values[i] || 0;
      if (!v) return;
      const y0 = f.y(base), y1 = f.y(base + v);
      const rect = svg("rect", { x: PAD.l + f.step * i + f.step * 0.15, y: y1, width: f.step * 0.7,
                                 height: Math.max(1, y0 - y1), fill: colorFor(s.key, k) });
      rect.appendChild(svg("title", {}, `${bucketLabel(b)} · ${s.key}: ${v}`));
      f.root.appendChild(rect);
      base += v;
    });
  });
  if (!totals.some((t) => t > 0)) emptyNote(f.root, "No tickets in this period yet.");
  container.replaceChildren(f.root);
}

function lines(container, buckets, drawn) {
  const all = drawn.flatMap((d) => d.values.filter((v) => v !== null && v !== undefined));
  const maxY = durationMax(Math.max(0, ...all));
  const f = frame(buckets, maxY, duration);
  for (const d of drawn) {
    let path = "";
    d.values.forEach((v, i) => {
      if (v === null || v === undefined) return;
      const x = PAD.l + f.step * (i + 0.5), y = f.y(v);
      // a gap (no data in a bucket) breaks the line instead of drawing through it
      path += (i === 0 || d.values[i - 1] === null || d.values[i - 1] === undefined ? "M" : "L") + `${x},${y} `;
      const dot = svg("circle", { cx: x, cy: y, r: 3, fill: d.color });
      dot.appendChild(svg("title", {}, `${bucketLabel(buckets[i])} · ${d.label}: ${duration(v)}`));
      f.root.appendChild(dot);
    });
    if (path) f.root.appendChild(svg("path", { d: path, fill: "none", stroke: d.color, "stroke-width": 2 }));
  }
  if (!all.length) emptyNote(f.root, "No replies or resolutions in this period yet.");
  container.replaceChildren(f.root);
}

function hbars(container, items, fmt = String) {
  const max = Math.max(1, ...items.map((i) => i.value));
  container.replaceChildren(...items.map((item) => {
    const fill = el("span");
    fill.style.width = `${(100 * item.value) / max}%`;
    if (item.color) fill.style.background = item.color;
    return el("div", { cls: "row" }, [
      el("span", { cls: "name", text: item.label, title: item.label }),
      el("span", { cls: "bar" }, [fill]),
      el("span", { cls: "value", text: fmt(item.value) }),
    ]);
  }));
}

// ------------------------------------------------------------ panels

function kpis(s) {
  $("kpi-total").textContent = s.tickets_total;
  const channels = Object.keys(s.tickets_by_channel).length;
  $("kpi-total-hint").textContent = `${channels} channel${channels === 1 ? "" : "s"}`;
  $("kpi-24h").textContent = s.last_24h.tickets_created;
  const top = Object.entries(s.last_24h.by_channel).sort((a, b) => b[1] - a[1])[0];
  $("kpi-24h-hint").textContent = top ? `most via ${top[0]}` : "";
  $("kpi-backlog").textContent = s.backlog.total;
  $("kpi-backlog-hint").textContent = s.backlog.oldest_age_s === null ? "nothing waiting"
    : `oldest ${duration(s.backlog.oldest_age_s)}`;
  $("kpi-frt").textContent = duration(s.first_response.p50_s);
  $("kpi-frt-hint").textContent = `p90 ${duration(s.first_response.p90_s)} · ${s.first_response.count} in ${s.window.days} d`;
  $("kpi-res").textContent = duration(s.resolution.p50_s);
  $("kpi-res-hint").textContent = `p90 ${duration(s.resolution.p90_s)} · ${s.resolution.count} in ${s.window.days} d`;
  let met = 0, breached = 0;
  for (const row of s.sla_compliance) { met += row.met; breached += row.breached; }
  const sla = $("kpi-sla");
  sla.textContent = met + breached ? percent(met / (met + breached)) : "–";
  sla.className = !(met + breached) ? "" : met / (met + breached) >= 0.95 ? "good" : met / (met + breached) >= 0.8 ? "warn" : "bad";
  $("kpi-sla-hint").textContent = `${met} met · ${breached} breached`;
}

function csatKpi(c) {
  const kpi = $("kpi-csat");
  kpi.textContent = c.satisfied_pct === null || c.satisfied_pct === undefined ? "–" : `${c.satisfied_pct}%`;
  kpi.className = !c.responses ? "" : c.satisfied_pct >= 85 ? "good" : c.satisfied_pct >= 70 ? "warn" : "bad";
  $("kpi-csat-hint").textContent = `${c.responses} rating${c.responses === 1 ? "" : "s"}`;
}

function csatTable(c) {
  const rows = [["all", "", c]];
  for (const dim of ["channel", "team", "agent"]) {
    for (const [key, n] of Object.entries(c[`by_${dim}`] || {})) rows.push([dim, key, n]);
  }
  $("csat-empty").classList.toggle("hidden", c.responses > 0);
  $("csat-rows").replaceChildren(...(c.responses ? rows : []).map(([dim, key, n]) => {
    const meter = el("span", { cls: "meter" }, [el("span")]);
    const share = n.satisfied_pct === null ? 0 : n.satisfied_pct / 100;
    meter.firstChild.style.width = `${share * 100}%`;
    meter.firstChild.style.background = share >= 0.85 ? "var(--good)" : share >= 0.7 ? "var(--warn)" : "var(--bad)";
    return el("tr", {}, [
      el("td", { text: dim }), el("td", { text: key }), el("td", { cls: "num", text: n.responses }),
      el("td", { cls: "num", text: n.solved }), el("td", { cls: "num", text: n.mean_rating ?? "–" }),
      el("td", {}, [meter, document.createTextNode(n.satisfied_pct === null ? "–" : `${n.satisfied_pct}%`)]),
    ]);
  }));
}

function slaTable(rows) {
  $("sla-empty").classList.toggle("hidden", rows.length > 0);
  $("sla-rows").replaceChildren(...rows.map((r) => {
    const meter = el("span", { cls: "meter" }, [el("span")]);
    const share = r.compliance === null ? 0 : r.compliance;
    meter.firstChild.style.width = `${share * 100}%`;
    meter.firstChild.style.background = share >= 0.95 ? "var(--good)" : share >= 0.8 ? "var(--warn)" : "var(--bad)";
    return el("tr", {}, [
      el("td", { text: r.target.replace("_", " ") }), el("td", { text: r.policy_id }),
      el("td", { cls: "num", text: r.met }), el("td", { cls: "num", text: r.breached }),
      el("td", { cls: "num", text: r.warned }),
      el("td", {}, [meter, document.createTextNode(percent(r.compliance))]),
    ]);
  }));
}

function backlog(b) {
  hbars($("backlog-status"), Object.entries(b.by_status).map(([k, v]) => ({ label: k, value: v, color: STATUS_COLORS[k] })));
  hbars($("backlog-age"), Object.entries(b.by_age).map(([k, v], i, all) => ({
    label: k, value: v, color: i >= all.length - 2 ? "var(--bad)" : i >= 3 ? "var(--warn)" : undefined,
  })));
}

function agentTable(rows) {
  $("agents-empty").classList.toggle("hidden", rows.length > 0);
  $("agent-rows").replaceChildren(...rows.map((a) => {
    const rate = el("td", { cls: "num", text: percent(a.reopen_rate) });
    if (a.reopen_rate !== null && a.reopen_rate > 0.2) rate.classList.add("bad");
    return el("tr", {}, [
      el("td", { text: a.agent_id }), el("td", { cls: "num", text: a.open }), el("td", { cls: "num", text: a.handled }),
      el("td", { cls: "num", text: a.first_responses }), el("td", { cls: "num", text: duration(a.first_response_mean_s) }),
      el("td", { cls: "num", text: a.resolved }), el("td", { cls: "num", text: a.reopened }), rate,
    ]);
  }));
}

function tags(s) {
  $("tags-window").textContent = `tickets per tag, last ${s.window.days} days`;
  $("tags-empty").classList.toggle("hidden", s.top_tags.length > 0);
  hbars($("tags"), s.top_tags.map((t) => ({ label: t.tag, value: t.tickets })));
}

function problems(p) {
  const today = p.problems.filter((x) => x.tickets_today > 0)
    .sort((a, b) => b.tickets_today - a.tickets_today).slice(0, 5);
  $("problems-empty").classList.toggle("hidden", today.length > 0);
  hbars($("problems"), today.map((x) => ({ label: `${x.label} · ${x.languages.join("/")}`, value: x.tickets_today })));
}

function mix(s) {
  const entries = Object.entries(s.tickets_by_channel).sort((a, b) => b[1] - a[1]);
  $("mix").replaceChildren(...entries.map(([k, v], i) => {
    const part = el("span", { title: `${k}: ${percent(s.channel_mix[k])}` });
    part.style.width = `${(s.channel_mix[k] || 0) * 100}%`;
    part.style.background = colorFor(k, i);
    return part;
  }));
  hbars($("mix-bars"), entries.map(([k, v], i) => ({ label: k, value: v, color: colorFor(k, i) })),
    (v) => (s.tickets_total ? percent(v / s.tickets_total) : "–"));
}

// ------------------------------------------------------------ polling

async function getJson(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

async function load() {
  const q = `bucket=${bucket}`;
  try {
    const [s, volume, frt, res] = await Promise.all([
      getJson("/v1/summary"),
      getJson(`/v1/series?metric=tickets_created&dimension=channel&${q}`),
      getJson(`/v1/series?metric=first_response_seconds&${q}`),
      getJson(`/v1/series?metric=resolution_seconds&${q}`),
    ]);
    kpis(s);
    stackedBars($("volume-chart"), volume);
    legend($("volume-legend"), volume.series.map((x, i) => [`${x.key} (${x.total})`, colorFor(x.key, i)]));
    const pick = (a) => (a.series[0] ? a.series[0].values : a.buckets.map(() => null));
    lines($("times-chart"), frt.buckets, [
      { label: "first response", color: "#2f6fb3", values: pick(frt) },
      { label: "resolution", color: "#2e8b57", values: pick(res) },
    ]);
    legend($("times-legend"), [["first response (median)", "#2f6fb3"], ["resolution (median)", "#2e8b57"]]);
    slaTable(s.sla_compliance);
    backlog(s.backlog);
    agentTable(s.agents);
    if (s.csat) { csatKpi(s.csat); csatTable(s.csat); }
    tags(s);
    problems(await getJson("/v1/problems").catch(() => ({ problems: [] })));  // a panel of its own: never stops the rest
    mix(s);
    lastOk = new Date();
    const st = $("status");
    st.className = "status live";
    st.textContent = `live · numbers as of ${s.as_of ? new Date(s.as_of).toLocaleTimeString() : "—"}`;
  } catch (err) {
    const st = $("status");
    st.className = "status stale";
    st.textContent = `cannot reach analytics (${err.message})` + (lastOk ? ` · last update ${lastOk.toLocaleTimeString()}` : "");
  }
}

for (const button of document.querySelectorAll(".range button")) {
  button.addEventListener("click", () => {
    bucket = button.dataset.bucket;
    for (const b of document.querySelectorAll(".range button")) b.classList.toggle("active", b === button);
    load();
  });
}
load();
setInterval(load, REFRESH_MS);
