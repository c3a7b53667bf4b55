// The action buttons of a program, shown by state as the Host accepts them
// (docs/host-api.md "States and transitions"); delete asks first.
import { h } from "../dom.js";
import { call, programPath, AuthError } from "../api.js";
import { confirm } from "./dialog.js";

const ALLOWED = {
  start: ["Created", "Stopped", "Error"],
  stop: ["Building", "Starting", "Ready", "Restarting", "Stopping"],
  restart: ["Ready"],
  delete: null, // every state
};

// Buttons for `record`; onError(message) shows a refusal, onDeleted() after a delete,
// onChanged() after another action (the record is read at once, before its event comes).
export function actionButtons(record, { onError, onDeleted, onChanged }) {
  const box = h("span", { class: "actions" });
  for (const action of Object.keys(ALLOWED)) {
    const button = h("button", {
      type: "button",
      class: action === "delete" ? "danger" : "",
      dataset: { action },
      onclick: () => run(box, action, { onError, onDeleted, onChanged }),
    }, action[0].toUpperCase() + action.slice(1));
    box.append(button);
  }
  updateActions(box, record);
  return box;
}

export function updateActions(box, record) {
  box.dataset.id = record.program_id;
  box.dataset.label = record.name || record.program_id;
  for (const button of box.querySelectorAll("button[data-action]")) {
    const allowed = ALLOWED[button.dataset.action];
    button.hidden = allowed !== null && !allowed.includes(record.state);
  }
}

async function run(box, action, { onError, onDeleted, onChanged }) {
  const id = box.dataset.id;
  try {
    if (action === "delete") {
      const yes = await confirm(`Delete ${box.dataset.label}? Its files, logs and state go; this cannot be undone.`, "Delete");
      if (!yes) return;
      box.querySelectorAll("button").forEach((b) => { b.disabled = true; });
      await call("DELETE", programPath(id));
      if (onDeleted) onDeleted(id);
    } else {
      await call("POST", programPath(id, `/${action}`));
      if (onChanged) onChanged(id);
    }
  } catch (err) {
    if (!(err instanceof AuthError)) onError(`${action} failed: ${err.message}`);
  } finally {
    box.querySelectorAll("button").forEach((b) => { b.disabled = false; });
  }
}
