// A program: its whole record, actions, sources, logs, lifecycle events, revisions,
// update in place and rollback. Live from GET /programs/{id}/events: the stream starts
// with the program's stored history, and each event re-fetches the record.
import { h, fill, show, time } from "../dom.js";
import { get, call, programPath, AuthError } from "../api.js";
import { followEvents } from "../stream.js";
import { coalesce } from "../coalesce.js";
import { badge, setBadge } from "../components/badge.js";
import { actionButtons, updateActions } from "../components/actions.js";
import { logView } from "../components/logview.js";
import { programForm } from "../components/programform.js";
import { navigate } from "../router.js";

const MAX_EVENTS = 1000;
const REVISION_KINDS = new Set(["updating", "updated", "update_failed", "rolled_back", "created"]);

export function mountProgram(root, { id }) {
  const closers = [];
  const notice = h("p", { class: "notice", role: "alert", hidden: true, dataset: { testid: "notice" } });
  const showNotice = (message) => {
    notice.textContent = message;
    notice.hidden = !message;
  };
  const title = h("h1", {}, id);
  const state = badge("Created");
  state.hidden = true;
  const actions = actionButtons({ program_id: id, state: "" }, {
    onError: showNotice,
    onDeleted: () => navigate("/ui/"),
    onChanged: () => loadRecord(),
  });
  const watcherLink = h("a", { href: `/ui/programs/${encodeURIComponent(id)}/watcher`, dataset: { route: "", testid: "watcher-link" } }, "Watcher");
  const updateOpen = h("button", { type: "button", dataset: { testid: "update-open" } }, "Update…");
  const updateBox = h("div");
  const record = h("dl", { class: "record", dataset: { testid: "record" } });
  const revisions = h("ul", { class: "revisions", dataset: { testid: "revisions" } });
  const events = h("ul", { class: "events", dataset: { testid: "events" } });
  const sources = sourcesPanel(id, showNotice);
  const logs = logView(id);
  closers.push(logs.close);

  root.append(
    h("p", { class: "crumbs" }, h("a", { href: "/ui/", dataset: { route: "" } }, "Programs"), " / ", id),
    h("div", { class: "toolbar" }, title, state, actions, updateOpen, watcherLink),
    notice,
    updateBox,
    h("div", { class: "columns" },
      h("section", { class: "panel" }, h("h2", {}, "Record"), record),
      h("div", {},
        h("section", { class: "panel" }, h("h2", {}, "Lifecycle events"), events),
        h("section", { class: "panel" }, h("h2", {}, "Revisions"), revisions))),
    logs.node,
    sources.node);

  let current = null;
  const loadRecord = coalesce(async () => {
    try {
      current = await get(programPath(id));
    } catch (err) {
      if (err.status === 404) showNotice(`There is no program ${id} (it may have been deleted).`);
      else if (!(err instanceof AuthError)) showNotice(err.message);
      return;
    }
    title.textContent = current.name || current.program_id;
    state.hidden = false;
    setBadge(state, current.state);
    updateActions(actions, current);
    fill(record, Object.keys(current).sort().map((key) =>
      h("div", { class: "field", dataset: { field: key } },
        h("dt", {}, key),
        h("dd", { class: typeof current[key] === "object" && current[key] !== null ? "json" : "" }, show(current[key])))));
  });

  const loadRevisions = coalesce(async () => {
    const answer = await readPart(programPath(id, "/revisions"), showNotice);
    if (!answer) return;
    fill(revisions, answer.revisions.map((rev) => h("li", { dataset: { revision: String(rev.revision) } },
      h("strong", {}, `revision ${rev.revision}`), " ",
      h("span", { class: "mono" }, rev.build_id), " ", time(rev.created_at), " ",
      h("span", { class: "muted" }, rev.files.join(", ")), " ",
      rev.running ? h("span", { class: "tag ok" }, "running") : null,
      rev.failed ? h("span", { class: "tag bad" }, "failed") : null,
      rev.running ? null : h("button", {
        type: "button", dataset: { testid: "rollback", revision: String(rev.revision) },
        onclick: async () => {
          try {
            const answerRb = await call("POST", programPath(id, `/rollback?revision=${rev.revision}`));
            showNotice(answerRb.message);
          } catch (err) {
            if (!(err instanceof AuthError)) showNotice(`rollback failed: ${err.message}`);
          }
        },
      }, `Roll back to ${rev.revision}`))));
  });

  updateOpen.addEventListener("click", () => {
    const close = () => {
      fill(updateBox);
      updateOpen.focus();
    };
    const form = programForm({
      create: false,
      submitLabel: "Deploy",
      onCancel: close,
      keepFiles: async () => {
        const src = await get(programPath(id, "/source"));
        return { dockerfile: src.dockerfile, src_files: src.files };
      },
      onSubmit: async (body) => {
        const answer = await call("PUT", programPath(id), body);
        close();
        showNotice(answer.message);
      },
    });
    fill(updateBox, form.node);
    form.focus();
  });

  loadRecord();
  loadRevisions();
  closers.push(followEvents(programPath(id, "/events"), {
    onEvent: (event) => {
      events.prepend(eventItem(event));
      if (events.childElementCount > MAX_EVENTS) events.lastElementChild.remove();
      if (event.kind === "deleted") {
        showNotice("This program was deleted.");
        return;
      }
      loadRecord();
      if (REVISION_KINDS.has(event.kind)) {
        loadRevisions();
        sources.load();
      }
    },
  }).close);
  return () => closers.forEach((close) => close());
}

// One lifecycle event: its time, kind and message (which already says the exit code or
// signal, OOM and the restart count), newest first.
function eventItem(event) {
  const d = event.details || {};
  // An exit is a failure unless clean: code 0, or the SIGTERM of a stop.
  const failed = d.oom_killed || (d.exit_code != null && d.exit_code !== 0) || (d.exit_signal != null && d.exit_signal !== 15);
  const tone = { error: "bad", exited: failed ? "bad" : "", unhealthy: "bad", update_failed: "bad", ready: "ok", updated: "ok", rolled_back: "ok" }[event.kind] || "";
  return h("li", { class: `event ${tone}`, dataset: { testid: "event", kind: event.kind, id: String(event.id) } },
    h("time", {}, time(event.at)), " ",
    h("span", { class: "kind" }, event.kind), " ",
    event.message,
    d.oom_killed ? h("span", { class: "tag bad" }, "OOM") : null);
}

// GET of a part of the program (revisions, sources): its answer, or undefined when the
// program is gone (the record says so) or the token form is open; other refusals shown.
async function readPart(path, showNotice) {
  try {
    return await get(path);
  } catch (err) {
    if (err.status !== 404 && !(err instanceof AuthError)) showNotice(err.message);
    return undefined;
  }
}

// The Dockerfile and every source file: a list, a viewer and a copy button.
function sourcesPanel(id, showNotice) {
  const list = h("ul", { class: "files", role: "list" });
  const view = h("pre", { class: "source", tabindex: "0", dataset: { testid: "source-view" } });
  const status = h("span", { class: "muted", "aria-live": "polite" });
  const copy = h("button", { type: "button", dataset: { testid: "copy" } }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(view.textContent);
      status.textContent = "copied";
    } catch {
      // No clipboard (a page not on localhost over http): select it for Ctrl+C instead.
      getSelection().selectAllChildren(view);
      status.textContent = "selected: press Ctrl+C";
    }
  });
  const node = h("section", { class: "panel", dataset: { testid: "sources" } },
    h("div", { class: "toolbar" }, h("h2", {}, "Sources"), copy, status),
    h("div", { class: "sources" }, list, view));
  async function load() {
    const src = await readPart(programPath(id, "/source"), showNotice);
    if (!src) return;
    const files = [["Dockerfile", src.dockerfile], ...Object.keys(src.files).sort().map((p) => [p, src.files[p]])];
    const open = (button, content) => {
      list.querySelectorAll("button").forEach((b) => b.removeAttribute("aria-current"));
      button.setAttribute("aria-current", "true");
      view.textContent = content;
      status.textContent = "";
    };
    fill(list, files.map(([path, content]) => {
      const button = h("button", { type: "button", class: "file", dataset: { testid: "source-file", path } }, path);
      button.addEventListener("click", () => open(button, content));
      return h("li", {}, button);
    }));
    open(list.querySelector("button"), files[0][1]);
  }
  load();
  return { node, load };
}
