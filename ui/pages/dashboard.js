// The dashboard: every program, live. It lists them once, then follows GET /events
// from the id it read before the list, and re-fetches only the program an event is
// about (a deleted one loses its row).
import { h, fill } from "../dom.js";
import { get, call, programPath, AuthError } from "../api.js";
import { followEvents, eventCursor } from "../stream.js";
import { coalesce } from "../coalesce.js";
import { STATES, badge, setBadge } from "../components/badge.js";
import { ProgramTable } from "../components/table.js";
import { programForm } from "../components/programform.js";
import { logView } from "../components/logview.js";

export function mountDashboard(root) {
  const closers = [];
  const notice = h("p", { class: "notice", role: "alert", hidden: true, dataset: { testid: "notice" } });
  const showing = h("span", { dataset: { testid: "showing" }, "aria-live": "polite" }, "loading…");
  const streamStatus = h("span", { class: "muted", dataset: { testid: "stream-status" } });
  const search = h("input", { type: "search", placeholder: "Search name, id or user", "aria-label": "search programs", dataset: { testid: "search" } });
  const stateFilter = h("select", { "aria-label": "filter by state", dataset: { testid: "state-filter" } },
    h("option", { value: "" }, "every state"), STATES.map((s) => h("option", { value: s }, s)));
  const createOpen = h("button", { type: "button", class: "primary", dataset: { testid: "create-open" } }, "Create a program");
  const createBox = h("div");
  const empty = h("p", { class: "muted", hidden: true, dataset: { testid: "empty" } },
    "No programs on this Host yet: create one with the button above, or with hersh deploy.");
  const table = new ProgramTable({
    onError: (message) => showNotice(message),
    onAction: (id) => refresh(id),
    onChange: () => {
      const { shown, total } = table.counts();
      showing.textContent = `showing ${shown} of ${total}`;
      empty.hidden = total > 0;
    },
  });
  const showNotice = (message) => {
    notice.textContent = message;
    notice.hidden = !message;
  };
  const applyFilter = () => table.filter(search.value, stateFilter.value);
  search.addEventListener("input", applyFilter);
  stateFilter.addEventListener("change", applyFilter);
  createOpen.addEventListener("click", () => openCreate(createBox, createOpen, closers));

  root.append(
    h("div", { class: "toolbar" }, h("h1", {}, "Programs"), createOpen),
    createBox,
    notice,
    h("div", { class: "toolbar filters" }, search, stateFilter, showing, streamStatus),
    h("div", { class: "table-wrap" }, table.node),
    empty);

  // Re-fetch one program; events that come while it is under way fetch it once more.
  const refreshers = new Map();
  const refresh = (id) => {
    if (!refreshers.has(id)) {
      refreshers.set(id, coalesce(async () => {
        try {
          table.upsert(await get(programPath(id)));
        } catch (err) {
          if (err.status === 404) table.remove(id);
          else if (!(err instanceof AuthError)) showNotice(`cannot read program ${id}: ${err.message}`);
        }
      }));
    }
    refreshers.get(id)();
  };

  let closed = false;
  (async () => {
    try {
      // The cursor first, then the list: an event between the two only re-fetches.
      const cursor = await eventCursor();
      const list = await get("/programs");
      if (closed) return;
      table.addAll(list.programs);
      document.body.dataset.ready = "dashboard";
      closers.push(followEvents(`/events`, {
        since: cursor,
        onEvent: (event) => {
          // The Host's own events (a policy loaded or failing) name no program.
          if (!event.program_id) return;
          if (event.kind === "deleted") {
            table.remove(event.program_id);
            refreshers.delete(event.program_id);
          } else {
            refresh(event.program_id);
          }
        },
        onStatus: (state, why) => {
          streamStatus.textContent = state === "open" ? "live" : `${state}${why ? `: ${why}` : ""}`;
        },
      }).close);
    } catch (err) {
      if (!(err instanceof AuthError)) showNotice(`cannot list the programs: ${err.message}`);
    }
  })();
  return () => {
    closed = true;
    closers.forEach((close) => close());
    delete document.body.dataset.ready;
  };
}

// The create form; after a create it shows the build's progress and log until the
// user opens the program or closes the panel.
function openCreate(box, opener, closers) {
  const close = () => {
    fill(box);
    opener.hidden = false;
    opener.focus();
  };
  const form = programForm({
    create: true,
    submitLabel: "Create",
    onCancel: close,
    onSubmit: async (body, { start }) => {
      const created = await call("POST", "/programs", body);
      if (start) await call("POST", programPath(created.program_id, "/start"));
      showBuild(box, created, close, closers);
    },
  });
  opener.hidden = true;
  fill(box, form.node);
  form.focus();
}

function showBuild(box, created, close, closers) {
  const id = created.program_id;
  const state = badge(created.state, "build-state");
  const log = logView(id, { type: "build", testid: "build-log" });
  const stream = followEvents(programPath(id, "/events"), {
    onEvent: (event) => {
      const next = { build_started: "Building", starting: "Starting", ready: "Ready", error: "Error", stopping: "Stopping", stopped: "Stopped", restarting: "Restarting" }[event.kind];
      if (next) setBadge(state, next);
    },
  });
  closers.push(log.close, stream.close);
  const link = h("a", { href: `/ui/programs/${encodeURIComponent(id)}`, dataset: { route: "", testid: "program-link" } },
    `Open ${created.name || id}`);
  fill(box, h("section", { class: "panel", dataset: { testid: "build-panel" } },
    h("div", { class: "toolbar" }, h("h2", {}, `Created ${created.name || id}`), state, link,
      h("button", { type: "button", onclick: () => { log.close(); stream.close(); close(); } }, "Close")),
    log.node));
  link.focus();
}
