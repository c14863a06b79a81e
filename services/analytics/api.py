"""The analytics HTTP API: the summary dashboards read, and the dashboard page."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from services.analytics.service import AnalyticsService

DASHBOARD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>deskstream dashboard</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;color:#222}h1{font-size:1.4rem}
table{border-collapse:collapse;margin:1rem 0}td,th{border:1px solid #ccc;padding:.3rem .8rem;text-align:left}
.muted{color:#777;font-size:.85rem}</style></head>
<body><h1>deskstream — support overview</h1>
<p>Tickets in total: <strong id="total">…</strong></p>
<h2>Tickets by channel</h2><table><thead><tr><th>channel</th><th>tickets</th></tr></thead><tbody id="channels"></tbody></table>
<h2>SLA</h2><table><thead><tr><th>target</th><th>warned</th><th>breached</th><th>met</th></tr></thead><tbody id="sla"></tbody></table>
<p class="muted">Updated <span id="asof">never</span>; refreshes every 5 s from <code>/v1/summary</code>.</p>
<script>
function cell(row, text){const td=document.createElement('td');td.textContent=text;row.appendChild(td);}
async function load(){
  const r = await fetch('/v1/summary'); if(!r.ok) return; const s = await r.json();
  document.getElementById('total').textContent = s.tickets_total;
  const ch = document.getElementById('channels'); ch.replaceChildren();
  for (const [k,v] of Object.entries(s.tickets_by_channel)) {const tr=document.createElement('tr');cell(tr,k);cell(tr,v);ch.appendChild(tr);}
  const sl = document.getElementById('sla'); sl.replaceChildren();
  for (const [t,k] of Object.entries(s.sla)) {const tr=document.createElement('tr');cell(tr,t);cell(tr,k.warning||0);cell(tr,k.breached||0);cell(tr,k.met||0);sl.appendChild(tr);}
  document.getElementById('asof').textContent = s.as_of || 'never';
}
load(); setInterval(load, 5000);
</script></body></html>"""


def build_router(service: AnalyticsService) -> APIRouter:
    router = APIRouter(tags=["analytics"])

    @router.get("/v1/summary", summary="Headline numbers for dashboards")
    async def summary() -> dict[str, Any]:
        return service.summary()

    @router.get("/dashboard", response_class=HTMLResponse, summary="A live page for support leads")
    async def dashboard() -> str:
        return DASHBOARD

    return router
