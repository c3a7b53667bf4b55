// The watcher of a program, read through the Host's proxy. The WatcherAPI has only
// snapshots (no stream), so the page reads them again when something says they
// changed, never on a timer: an event of the program (GET /programs/{id}/events), a
// line in its runtime log (a run that printed), a message sent from this page, or the
// Refresh button; at most one read at a time and at least MIN_GAP ms apart.
import { h, fill, show, time } from "../dom.js";
import { get, raw, programPath, AuthError } from "../api.js";
import { followEvents, followLines, eventCursor } from "../stream.js";
import { coalesce } from "../coalesce.js";
import { badge, setBadge } from "../components/badge.js";

const MIN_GAP = 250;
const AFTER_MESSAGE = 300; // the reducer runs after the message is queued: look again once
const LOG_LIMIT = 20;

export function mountWatcher(root, { id }) {
  const closers = [];
  const proxy = (path) => programPath(id, `/proxy/watcher/${path}`);
  const state = badge("Created");
  const banner = h("p", { class: "banner", role: "status", dataset: { testid: "not-ready-banner" }, hidden: true });
  const updated = h("span", { class: "muted", "aria-live": "polite" });
  const status = h("dl", { class: "record", dataset: { testid: "watcher-status" } });
  const config = h("pre", { class: "json", dataset: { testid: "watcher-config" } });
  const vars = h("dl", { class: "record", dataset: { testid: "vars" } });
  const memo = h("pre", { class: "json", dataset: { testid: "memo" } });
  const context = h("pre", { class: "json", dataset: { testid: "context" } });
  const signals = h("div", { dataset: { testid: "signals" } });
  const logs = h("div", { class: "watcher-logs", dataset: { testid: "watcher-logs" } });
  const input = h("input", { type: "text", placeholder: "message content, e.g. tick", "aria-label": "message", dataset: { testid: "message-input" } });
  const send = h("button", { type: "submit", class: "primary", dataset: { testid: "message-send" } }, "Send");
  const answer = h("pre", { class: "json", "aria-live": "polite", dataset: { testid: "message-answer" } });
  const refreshButton = h("button", { type: "button", dataset: { testid: "watcher-refresh" } }, "Refresh");
  const title = h("h1", {}, `Watcher of ${id}`);
  const panel = (name, body) => h("section", { class: "panel" }, h("h2", {}, name), body);

  root.append(
    h("p", { class: "crumbs" }, h("a", { href: "/ui/", dataset: { route: "" } }, "Programs"), " / ",
      h("a", { href: `/ui/programs/${encodeURIComponent(id)}`, dataset: { route: "" } }, id), " / watcher"),
    h("div", { class: "toolbar" }, title, state, refreshButton, updated),
    banner,
    h("form", { class: "panel command", onsubmit: (event) => { event.preventDefault(); sendMessage(); } },
      h("h2", {}, "Send a message"), h("div", { class: "toolbar" }, input, send), answer),
    h("div", { class: "columns" },
      h("div", {}, panel("Status", status), panel("Watched variables", vars), panel("Context", context), panel("Memo", memo)),
      h("div", {}, panel("Signals", signals), panel("Logs", logs), panel("Config", config))));

  let ready = false;
  const setState = (value) => {
    ready = value === "Ready";
    setBadge(state, value);
    banner.textContent = `The program is ${value}: its watcher answers only while it is Ready. ` +
      "This page comes back by itself when it is.";
    banner.hidden = ready;
    root.classList.toggle("stale", !ready);
  };

  const refresh = coalesce(async () => {
    if (!ready) return;
    try {
      const [st, ws, cfg, vs, mc, cx, sg, lg] = await Promise.all(
        ["status", "state", "config", "varState", "memoCache", "context", "signals", `logs?limit=${LOG_LIMIT}`].map((p) => get(proxy(p))));
      renderStatus(status, st, ws);
      config.textContent = JSON.stringify(cfg.config, null, 2);
      fill(vars, Object.keys(vs.variables).length ? Object.keys(vs.variables).sort().map((name) =>
        h("div", { class: "field" }, h("dt", {}, name),
          h("dd", { class: "mono", dataset: { var: name } }, JSON.stringify(vs.variables[name])))) :
        h("p", { class: "muted" }, "no watched variables"));
      memo.textContent = JSON.stringify(mc.entries, null, 2);
      context.textContent = JSON.stringify(cx.context, null, 2);
      renderSignals(signals, sg);
      renderLogs(logs, lg);
      updated.textContent = `read at ${time(new Date().toISOString())}`;
    } catch (err) {
      if (err instanceof AuthError) return;
      // A 503 says the state it left Ready for (its own event may come only later).
      if (err.status === 503 && err.body && err.body.state) setState(err.body.state);
      else updated.textContent = `cannot read the watcher: ${err.message}`;
    }
    await new Promise((resolve) => { setTimeout(resolve, MIN_GAP); });
  });

  const loadRecord = coalesce(async () => {
    try {
      const record = await get(programPath(id));
      title.textContent = `Watcher of ${record.name || record.program_id}`;
      setState(record.state);
      refresh();
    } catch (err) {
      if (err instanceof AuthError) return;
      banner.hidden = false;
      banner.textContent = err.status === 404 ? `There is no program ${id}.` : err.message;
    }
  });

  async function sendMessage() {
    send.disabled = true;
    try {
      const res = await raw(proxy("message"), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ content: input.value }),
      });
      answer.textContent = `${res.status} ${await res.text()}`;
      refresh();
      setTimeout(refresh, AFTER_MESSAGE);
    } catch (err) {
      if (!(err instanceof AuthError)) answer.textContent = err.message;
    } finally {
      send.disabled = false;
    }
  }
  refreshButton.addEventListener("click", () => refresh());

  (async () => {
    // The cursor before the record: a change between the two is still seen.
    let cursor = 0;
    try {
      cursor = await eventCursor();
    } catch (err) {
      if (err instanceof AuthError) return;
    }
    await loadRecord();
    closers.push(followEvents(programPath(id, "/events"), { since: cursor, onEvent: () => loadRecord() }).close);
    closers.push(followLines(programPath(id, "/logs?tail=0&follow=true"), programPath(id, "/logs?tail=0&follow=true"),
      { onLine: () => refresh() }).close);
  })();
  return () => closers.forEach((close) => close());
}

// /watcher/status, then what /watcher/state adds: failures, next retry, last trigger.
function renderStatus(node, st, ws) {
  const fields = Object.assign({}, st, { failures: ws.failures, nextRetryAt: ws.nextRetryAt, lastTrigger: ws.lastTrigger });
  fill(node, Object.keys(fields).map((key) =>
    h("div", { class: "field", dataset: { field: key } }, h("dt", {}, key),
      h("dd", { class: typeof fields[key] === "object" && fields[key] !== null ? "json" : "" }, show(fields[key])))));
}

function renderSignals(node, sg) {
  fill(node,
    h("p", {}, `pending: ${sg.totalPending} (watcher ${sg.managerSigCount}, user ${sg.userSigCount}, var ${sg.varSigCount})`),
    sg.recentSignals.length ? h("ul", {}, sg.recentSignals.map((s) =>
      h("li", {}, h("span", { class: "kind" }, s.type), " ", s.content, " ", h("span", { class: "muted" }, time(s.createdAt))))) : null);
}

// Every non-empty log of /watcher/logs, newest entry first, one line of JSON each.
function renderLogs(node, lg) {
  const names = Object.keys(lg);
  fill(node, names.length ? names.map((name) => h("details", { open: true },
    h("summary", {}, `${name} (${lg[name].length})`),
    h("ol", { class: "entries" }, lg[name].slice().reverse().map((entry) => h("li", { class: "mono" }, JSON.stringify(entry)))))) :
    h("p", { class: "muted" }, "no log entries"));
}
