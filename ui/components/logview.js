// A log panel: a runtime/build switch, follow (a streamed log, ?follow=true) and
// auto-scroll toggles. Keeps the newest MAX_LINES lines so a chatty program cannot
// grow the page without bound.
import { h, fill } from "../dom.js";
import { text, programPath, AuthError } from "../api.js";
import { followLines } from "../stream.js";

const MAX_LINES = 5000;
const TAIL = 500;

export function logView(id, { type = "runtime", testid = "logs" } = {}) {
  const pre = h("pre", { class: "log", tabindex: "0", "aria-label": "log", dataset: { testid: `${testid}-text` } });
  const status = h("span", { class: "muted", "aria-live": "polite" });
  const typeSelect = h("select", { dataset: { testid: "log-type" }, "aria-label": "log type" },
    h("option", { value: "runtime" }, "runtime"), h("option", { value: "build" }, "build"));
  typeSelect.value = type;
  const followBox = h("input", { type: "checkbox", checked: true, dataset: { testid: "follow" } });
  const scrollBox = h("input", { type: "checkbox", checked: true, dataset: { testid: "autoscroll" } });
  const node = h("section", { class: "panel", dataset: { testid } },
    h("div", { class: "toolbar" },
      h("h2", {}, "Logs"),
      h("label", {}, "type ", typeSelect),
      h("label", {}, followBox, " follow"),
      h("label", {}, scrollBox, " auto-scroll"),
      status),
    pre);
  let stream = null;
  let lines = 0;

  const addLine = (line) => {
    pre.append(line + "\n");
    lines += 1;
    if (lines > MAX_LINES) {
      pre.firstChild.remove();
      lines -= 1;
    }
    if (scrollBox.checked) pre.scrollTop = pre.scrollHeight;
  };

  async function load() {
    if (stream) stream.close();
    stream = null;
    fill(pre);
    lines = 0;
    const base = programPath(id, `/logs?type=${typeSelect.value}`);
    if (followBox.checked) {
      stream = followLines(`${base}&tail=${TAIL}&follow=true`, `${base}&tail=0&follow=true`, {
        onLine: addLine,
        onStatus: (state, why) => { status.textContent = state === "open" ? "following" : `${state}${why ? `: ${why}` : ""}`; },
      });
      return;
    }
    status.textContent = "";
    try {
      const body = await text(`${base}&tail=${TAIL}`);
      for (const line of body.split("\n")) if (line) addLine(line);
    } catch (err) {
      if (!(err instanceof AuthError)) status.textContent = err.message;
    }
  }
  typeSelect.addEventListener("change", load);
  followBox.addEventListener("change", load);
  scrollBox.addEventListener("change", () => { if (scrollBox.checked) pre.scrollTop = pre.scrollHeight; });
  load();
  return {
    node,
    setType(value) {
      if (typeSelect.value === value) return;
      typeSelect.value = value;
      load();
    },
    close() { if (stream) stream.close(); },
  };
}
