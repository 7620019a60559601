"use strict";
// The operator console: reads /v1/console/status with the workstation token and shows
// each panel; card and alarm events arrive from /v1/events. No data is kept beyond the tab.
const T = {
  zh: {
    title: "健康卡中间件 · 运维控制台", refresh: "刷新", sign_in: "登录",
    token_prompt: "请输入本工作站的令牌（由信息科配置于 hcm.toml 的 [agent.tokens]）：",
    readers: "读卡器与 SAM", plugins: "已启用插件", doctor: "健康检查 (doctor)",
    journal: "今日资金流水", reconciliation: "今日对账", audit: "审计链状态",
    alarms: "病区报警", events: "实时事件", ok: "正常", fail: "失败", none: "无",
    unknown: "未知", present: "已连接", absent: "未连接", configured: "已配置",
    not_shown: "无法显示", user_reader: "用户卡读卡器", sam_reader: "SAM 读卡器",
    sam_kind: "SAM 类型", all_readers: "系统读卡器", entries: "条目", head: "链头",
    checkpoints: "签名检查点", intact: "完整", broken: "被篡改", time: "时间",
    kind: "类型", amount: "金额", state: "状态", plugin: "插件", check: "检查项",
    detail: "说明", hint: "处理办法", bed: "床位", band: "腕带", raised: "发生时间",
    source: "来源", differences: "差异", version: "版本", hooks: "钩子数",
    signed_in: "当前用户", lang: "English", wrong_token: "令牌无效",
    card_events: "插拔卡事件", events_on: "正在接收", events_off: "已中断",
    not_watched: "本代理未监听",
  },
  en: {
    title: "Health card middleware · operator console", refresh: "Refresh", sign_in: "Sign in",
    token_prompt: "Enter this workstation's token (set by hospital IT in hcm.toml, [agent.tokens]):",
    readers: "Readers and SAM", plugins: "Enabled plugins", doctor: "Health checks (doctor)",
    journal: "Today's money movements", reconciliation: "Today's reconciliation",
    audit: "Audit chain", alarms: "Ward alarms", events: "Live events", ok: "ok",
    fail: "FAIL", none: "none", unknown: "unknown", present: "connected", absent: "not connected",
    configured: "configured", not_shown: "cannot be shown", user_reader: "User card reader",
    sam_reader: "SAM reader", sam_kind: "SAM kind", all_readers: "Readers on this machine",
    entries: "entries", head: "head", checkpoints: "signed checkpoints", intact: "intact",
    broken: "tampered", time: "Time", kind: "Kind", amount: "Amount", state: "State",
    plugin: "Plugin", check: "Check", detail: "Detail", hint: "What to do", bed: "Bed",
    band: "Band", raised: "Raised", source: "Source", differences: "Differences",
    version: "Version", hooks: "Hooks", signed_in: "Signed in", lang: "中文",
    wrong_token: "The token was refused",
    card_events: "Card events", events_on: "being received", events_off: "interrupted",
    not_watched: "not watched by this agent",
  },
};
const params = new URLSearchParams(location.search);
let lang = params.get("lang") || sessionStorage.getItem("hcm.lang") ||
  (navigator.language.startsWith("zh") ? "zh" : "en");
if (!T[lang]) lang = "en";
const t = (key) => T[lang][key] || key;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}
function table(head, rows) {
  const tb = el("table");
  tb.append(el("tr", {}, ...head.map((h) => el("th", {}, t(h)))));
  for (const r of rows) tb.append(el("tr", {}, ...r.map((c) => el("td", {}, c))));
  return tb;
}
const mark = (ok) => el("span", { class: ok ? "ok" : "fail" }, ok ? t("ok") : t("fail"));
function problem(p) {
  return el("div", { class: "problem" }, el("b", {}, t("not_shown") + ": "),
    `${p.title} — ${p.detail}`, el("br"), el("span", { class: "muted" }, p.hint || ""));
}

function translate() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  document.getElementById("lang").textContent = t("lang");
  document.title = t("title");
}

const render = {
  readers(d) {
    const where = (name, here) => name ? `${name} — ${here === null ? t("unknown") : here ? t("present") : t("absent")}` : t("none");
    return table(["check", "detail"], [
      [t("user_reader"), where(d.user, d.user_present)],
      [t("sam_reader"), where(d.sam, d.sam_present)],
      [t("sam_kind"), d.sam_kind],
      [t("all_readers"), d.present === null ? t("unknown") : (d.present.join(", ") || t("none"))],
      [t("card_events"), d.card_events === null ? t("not_watched")
        : d.card_events.on ? t("events_on") : `${t("events_off")}: ${d.card_events.off_reason}`],
    ]);
  },
  plugins(d) {
    if (!d.length) return el("p", { class: "muted" }, t("none"));
    return table(["plugin", "version", "hooks"], d.map((p) => [p.name, p.version || "-", String(p.hooks)]));
  },
  doctor(d) {
    return table(["plugin", "check", "state", "detail", "hint"],
      d.map((r) => [r.plugin, r.name, mark(r.ok), r.detail, r.ok ? "" : r.hint]));
  },
  journal(d) {
    if (!d.length) return el("p", { class: "muted" }, t("none"));
    return table(["time", "kind", "amount", "state"],
      d.map((m) => [m.created_at.slice(11, 19), `${m.channel} ${m.kind}`, `${m.amount} ${m.currency}`, m.state]));
  },
  reconciliation(d) {
    const rows = (d.sources || []).map((s) => [s.source, mark(s.ok), String((s.differences || []).length)]);
    return el("div", {}, el("p", {}, d.day || "", " ", mark(d.ok)), table(["source", "state", "differences"], rows));
  },
  audit(d) {
    return table(["check", "detail"], [
      [t("state"), el("span", { class: d.ok ? "ok" : "fail" }, d.ok ? t("intact") : t("broken"))],
      [t("entries"), String(d.entries)], [t("head"), String(d.head)],
      [t("checkpoints"), String(d.checkpoints)],
    ]);
  },
  alarms(d) {
    if (!d.length) return el("p", { class: "muted" }, t("none"));
    return table(["raised", "kind", "band", "bed", "state"],
      d.map((a) => [a.raised_at.slice(11, 19), a.kind, a.wristband_id, a.bed || a.location || "-", a.state]));
  },
};

async function call(path) {
  const token = sessionStorage.getItem("hcm.token");
  const answer = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
  const body = await answer.json();
  if (!answer.ok) throw body;
  return body;
}

async function refresh() {
  let status;
  try {
    status = await call("/v1/console/status");
  } catch (p) {
    showLogin(p);
    return;
  }
  document.getElementById("login").hidden = true;
  document.getElementById("panels").hidden = false;
  document.getElementById("site").textContent = `${status.site} · ${status.version}`;
  document.getElementById("who").textContent = `${t("signed_in")}: ${status.caller.user} (${status.caller.role}) @ ${status.caller.terminal}`;
  for (const [name, panel] of Object.entries(status.panels)) {
    const body = document.querySelector(`#p-${name} .body`);
    body.replaceChildren(panel.ok ? render[name](panel.data) : problem(panel.problem));
    body.parentElement.dataset.ok = panel.ok ? "1" : "0";
  }
  document.body.dataset.loaded = "1";
}

function showLogin(p) {
  document.getElementById("panels").hidden = true;
  document.getElementById("login").hidden = false;
  const box = document.getElementById("login-problem");
  if (p && p.title) {
    box.hidden = false;
    box.textContent = `${t("wrong_token")}: ${p.title} — ${p.hint || ""}`;
  }
  document.body.dataset.loaded = "login";
}

async function listen() {
  const token = sessionStorage.getItem("hcm.token");
  const answer = await fetch("/v1/events", { headers: { Authorization: `Bearer ${token}` } });
  if (!answer.ok) return;
  const reader = answer.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const chunk = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const kind = /^event: (.*)$/m.exec(chunk);
      const data = /^data: (.*)$/m.exec(chunk);
      if (!kind || !data) continue;
      const list = document.getElementById("events");
      list.prepend(el("li", {}, `${new Date().toLocaleTimeString()} ${kind[1]} ${data[1]}`));
      while (list.children.length > 30) list.lastChild.remove();
      if (kind[1] === "ward.alarm") refresh();
    }
  }
}

document.getElementById("lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  sessionStorage.setItem("hcm.lang", lang);
  translate();
  refresh();
});
document.getElementById("refresh").addEventListener("click", refresh);
document.getElementById("login-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("hcm.token", document.getElementById("token").value.trim());
  refresh().then(() => listen().catch(() => {}));
});
translate();
if (sessionStorage.getItem("hcm.token")) refresh().then(() => listen().catch(() => {}));
else showLogin(null);
