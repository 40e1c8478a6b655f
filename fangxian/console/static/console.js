// fangxian console: live rows over Server-Sent Events, actions with the session's CSRF token.
(function () {
  "use strict";
  const body = document.body;
  const page = body.dataset.page;
  const community = body.dataset.community || "";
  const tz = body.dataset.timezone || "Asia/Shanghai";
  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function hms(ms) {
    if (!ms) return "-";
    return new Date(ms).toLocaleTimeString("zh-CN", { timeZone: tz, hour12: false });
  }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v; else node.setAttribute(k, v);
    }
    for (const c of children) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }
  function en(text) { return el("span", { class: "en" }, text); }

  async function act(alertId, kind, note) {
    const response = await fetch(`/api/alerts/${encodeURIComponent(alertId)}/${kind}`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify({ note: note || "" }),
    });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) { alert((data && data.error) || response.statusText); return; }
    updateAlert(data.alert);
  }

  function actionCell(a) {
    const cell = el("td", { class: "acts" });
    if (a.status === "OPEN") {
      const ack = el("button", { type: "button", "data-act": "ack" }, "确认 Acknowledge");
      ack.addEventListener("click", () => act(a.alert_id, "ack"));
      cell.append(ack, " ");
    }
    if (!["RESOLVED", "RESOLVE_REQUESTED", "SILENCED"].includes(a.status)) {
      const note = el("input", { type: "text", placeholder: "处置说明 note", "data-note": "1" });
      const resolve = el("button", { type: "button", class: "secondary", "data-act": "resolve" }, "处置 Resolve");
      resolve.addEventListener("click", () => {
        if (!note.value.trim()) { note.focus(); note.placeholder = "请填写 required"; return; }
        act(a.alert_id, "resolve", note.value.trim());
      });
      cell.append(note, " ", resolve);
    }
    return cell;
  }

  function alertRow(a) {
    const status = el("td", { class: "status", "data-label": "状态 Status" }, a.status_zh, " ", en(a.status));
    if (a.by) status.append(el("br"), en(a.by));
    if (a.note) status.append(el("br"), el("span", { class: "note" }, a.note));
    let esc = `L${a.level} · 已通知 ${a.notified}`;
    if (a.escalations) esc += ` · 升级 ${a.escalations}`;
    if (a.failed) esc += ` · 失败 ${a.failed}`;
    // data-label: the column's name, shown beside the value when a row is a card (phones)
    return el("tr", { "data-alert-id": a.alert_id, class: `sev-${a.severity} st-${a.status}` },
      el("td", { "data-label": "时间 Time" }, hms(a.event_time)),
      el("td", { "data-label": "级别 Severity" }, a.severity_zh, " ", en(a.severity)),
      el("td", { "data-label": "类型 Type" }, a.type_zh, " ", en(a.alert_type)),
      el("td", { "data-label": "门岗 Gate" }, `${a.gate_id} ${a.device_id}`),
      el("td", { class: "mono", "data-label": "对象 Subject" }, a.subject),
      el("td", { class: "msg", "data-label": "内容 Message" }, a.message_zh, el("br"), en(a.message_en)),
      status,
      el("td", { class: "esc", "data-label": "升级 Escalation" }, esc),
      actionCell(a));
  }

  // A row's status only moves forwards (as in the server's AlertView): the answer to an
  // acknowledge (ACK_REQUESTED) can arrive after the dispatcher's ACKNOWLEDGED came live.
  const STATUS_RANK = {
    OPEN: 0, ACK_REQUESTED: 1, ACKNOWLEDGED: 2, RESOLVE_REQUESTED: 3, RESOLVED: 4, SILENCED: 4,
  };
  function rowStatus(row) {
    const cls = [...row.classList].find((c) => c.startsWith("st-"));
    return cls ? cls.slice(3) : "OPEN";
  }

  function updateAlert(a) {
    const tbody = document.querySelector("#alerts tbody");
    if (!tbody || (community && a.community_id !== community)) return;
    const old = tbody.querySelector(`tr[data-alert-id="${CSS.escape(a.alert_id)}"]`);
    if (old && (STATUS_RANK[a.status] ?? 0) < (STATUS_RANK[rowStatus(old)] ?? 0)) return;
    const row = alertRow(a);
    if (old && old.classList.contains("focus")) row.classList.add("focus");
    if (old) { old.replaceWith(row); return; }
    row.classList.add("new");
    tbody.prepend(row);
  }

  function addDecision(d) {
    if (community && d.community_id !== community) return;
    const tbody = document.querySelector("#decisions tbody");
    if (tbody) {
      tbody.prepend(el("tr", { class: `dec-${d.decision} new` },
        el("td", { "data-label": "时间 Time" }, hms(d.decided_at)),
        el("td", { "data-label": "门岗 Gate" }, d.gate_id),
        el("td", { "data-label": "决定 Decision" }, d.decision_zh, " ", en(d.decision)),
        el("td", { "data-label": "原因 Reasons" }, d.reasons_zh),
        el("td", { class: "mono", "data-label": "对象 Subject" }, d.subject)));
      while (tbody.rows.length > 200) tbody.deleteRow(-1);
    }
    const gates = document.querySelector("#by-gate tbody");
    if (gates) {
      let row = gates.querySelector(`tr[data-gate="${CSS.escape(d.gate_id)}"]`);
      if (!row) {
        const kinds = [...document.querySelectorAll("#by-gate thead th")].slice(1);
        row = el("tr", { "data-gate": d.gate_id }, el("td", {}, d.gate_id));
        for (const th of kinds) {
          const kind = th.textContent.trim().split(" ").pop();
          row.append(el("td", { "data-decision": kind }, "0"));
        }
        gates.append(row);
      }
      const cell = row.querySelector(`td[data-decision="${d.decision}"]`);
      if (cell) cell.textContent = String(Number(cell.textContent) + 1);
    }
  }

  async function refreshOccupancy() {
    const q = community ? `?community=${encodeURIComponent(community)}` : "";
    const response = await fetch(`/api/occupancy${q}`, { credentials: "same-origin" });
    if (!response.ok) return;
    const data = await response.json();
    for (const o of data.occupancy) {
      const row = document.querySelector(`#occupancy tr[data-community="${CSS.escape(o.community_id)}"]`);
      if (!row) continue;
      row.querySelector(".in").textContent = o.in;
      row.querySelector(".out").textContent = o.out;
      row.querySelector(".now").textContent = o.now;
      row.querySelector(".state").textContent = o.exceeded ? "超出容量 over capacity" : "正常 normal";
      row.classList.toggle("exceeded", o.exceeded);
    }
  }

  function connect() {
    const status = document.getElementById("live-status");
    const q = community ? `?community=${encodeURIComponent(community)}` : "";
    const source = new EventSource(`/events${q}`);
    source.onopen = () => { if (status) { status.textContent = "● 实时 live"; status.className = "on"; } };
    source.onerror = () => { if (status) { status.textContent = "● 重新连接中 reconnecting…"; status.className = "off"; } };
    source.addEventListener("alert", (e) => updateAlert(JSON.parse(e.data)));
    source.addEventListener("action", (e) => updateAlert(JSON.parse(e.data)));
    source.addEventListener("decision", (e) => addDecision(JSON.parse(e.data)));
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (page === "alerts") {
      // server-rendered rows get their buttons here (same code as live rows)
      for (const row of document.querySelectorAll("#alerts tbody tr[data-alert-id]")) {
        const status = rowStatus(row);
        row.querySelector("td.acts").replaceWith(actionCell({ alert_id: row.dataset.alertId, status }));
      }
      // the alert an acknowledge link led to (/alerts/<id>): in view
      const focus = document.querySelector("#alerts tr.focus");
      if (focus) focus.scrollIntoView({ block: "start" });
    }
    if (page === "occupancy") setInterval(refreshOccupancy, 5000);
    if (page === "alerts" || page === "decisions") connect();
    else {
      const status = document.getElementById("live-status");
      if (status) { status.textContent = "● 数据来自 ClickHouse history"; status.className = "on"; }
    }
  });
})();
