// The form that sends a program's files: create (name, user) and update in place
// (the same files, new ones, env). Files come from a file picker, a folder picker or a
// folder dropped on the drop zone, read with the File API; nothing is typed as JSON.
import { h, fill } from "../dom.js";
import { fromInput, fromDrop, readPayload, parseEnv } from "./files.js";

// fields: {create: bool}; onSubmit(body) -> Promise; a thrown Error shows in form-error.
export function programForm({ create, submitLabel, onSubmit, onCancel, keepFiles }) {
  let chosen = [];
  const error = h("p", { class: "form-error", role: "alert", dataset: { testid: "form-error" }, hidden: true });
  const list = h("ul", { class: "chosen", dataset: { testid: "chosen-files" } });
  const filesInput = h("input", { type: "file", multiple: true, dataset: { testid: "files" }, id: uid("files") });
  const folderInput = h("input", { type: "file", multiple: true, webkitdirectory: true, dataset: { testid: "folder" }, id: uid("folder") });
  const env = h("textarea", { name: "env", rows: "3", placeholder: "NAME=value, one a line", id: uid("env") });
  const choose = (items) => {
    chosen = items;
    fill(list, items.length ? items.map((it) => h("li", {}, it.path)) :
      h("li", { class: "muted" }, keepFiles ? "no new files: the current ones are kept" : "no file chosen"));
  };
  choose([]);
  filesInput.addEventListener("change", () => choose(fromInput(filesInput)));
  folderInput.addEventListener("change", () => choose(fromInput(folderInput)));
  const drop = h("div", { class: "dropzone", tabindex: "0", role: "button", dataset: { testid: "dropzone" },
    "aria-label": "drop a folder here, or press Enter to choose one" },
  "Drop the program's folder here (a Dockerfile and its sources)");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    try {
      choose(await fromDrop(event.dataTransfer));
    } catch (err) {
      showError(`cannot read the dropped files: ${err.message}`);
    }
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      folderInput.click();
    }
  });
  const showError = (message) => {
    error.textContent = message;
    error.hidden = !message;
  };
  const submit = h("button", { type: "submit", class: "primary", dataset: { testid: create ? "create-submit" : "update-submit" } }, submitLabel);
  const startBox = h("input", { type: "checkbox", name: "start", checked: true, id: uid("start") });
  const form = h("form", { class: "panel program-form", dataset: { testid: create ? "create-form" : "update-form" } },
    create ? [
      field("Name (optional: lower-case letters, digits, -)", h("input", { name: "name", autocomplete: "off", id: uid("name") })),
      field("User", h("input", { name: "user", required: true, autocomplete: "off", id: uid("user") })),
    ] : [],
    field("Files (the Dockerfile and the sources)", filesInput),
    field("…or a folder", folderInput),
    drop,
    list,
    field(create ? "Environment (optional)" : "Environment (replaces the current one; empty: none)", env),
    create ? h("label", { class: "inline" }, startBox, " start it after creating") : [],
    error,
    h("div", { class: "buttons" },
      h("button", { type: "button", onclick: () => onCancel() }, "Cancel"),
      submit));
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      onCancel();
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    // Not disabled while busy: a disabled button drops the focus, and Escape with it.
    if (form.getAttribute("aria-busy") === "true") return;
    showError("");
    form.setAttribute("aria-busy", "true");
    try {
      const body = chosen.length || !keepFiles ? await readPayload(chosen) : await keepFiles();
      const envValue = parseEnv(env.value);
      if (Object.keys(envValue).length) body.env = envValue;
      if (create) {
        body.user_id = form.elements.user.value.trim();
        const name = form.elements.name.value.trim();
        if (name) body.name = name;
      }
      await onSubmit(body, { start: startBox.checked });
    } catch (err) {
      showError(err.message);
    } finally {
      form.setAttribute("aria-busy", "false");
    }
  });
  return { node: form, focus: () => (form.querySelector("input[name=name]") || filesInput).focus() };
}

let counter = 0;
function uid(base) {
  counter += 1;
  return `${base}-${counter}`;
}

function field(label, input) {
  return h("div", { class: "field" }, h("label", { for: input.id }, label), input);
}
