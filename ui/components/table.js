// The programs table: each row is built once and then updated in place when its
// record changes, so a Host with 1,000 programs renders once and a state change
// touches one row. A filter takes the rows that do not match out of the table (kept,
// not rebuilt), so the rows in the page are exactly the ones shown.
import { h, fill } from "../dom.js";
import { badge, setBadge } from "./badge.js";
import { actionButtons, updateActions } from "./actions.js";

const COLUMNS = ["Name / id", "User", "State", "Build", "Rev.", "Proxy URL", "Restarts", "Error", "Actions"];

// The rows are laid out as grids (style.css), which takes a table's own roles away in
// some browsers: they are given back explicitly.
const cell = (attrs, ...children) => h("td", { role: "cell", ...attrs }, ...children);

export class ProgramTable {
  constructor({ onError, onChange, onAction }) {
    this.rows = new Map(); // program_id -> {tr, cells, record}
    this.order = []; // the rows, oldest program first, attached or not
    this.onError = onError;
    this.onChange = onChange;
    this.onAction = onAction;
    this.query = "";
    this.state = "";
    this.body = h("tbody", { role: "rowgroup" });
    this.node = h("table", { class: "programs", role: "table", dataset: { testid: "programs" } },
      h("thead", { role: "rowgroup" }, h("tr", { role: "row" }, COLUMNS.map((c) => h("th", { scope: "col", role: "columnheader" }, c)))),
      this.body);
  }

  // Adds the record's row or updates it in place.
  upsert(record) {
    const row = this.rows.get(record.program_id);
    if (row) this.update(row, record);
    else this.add(record);
    this.onChange();
  }

  // Many records at once (the first render): one DOM insertion.
  addAll(records) {
    for (const record of records) this.build(record);
    this.attachMatching();
    this.onChange();
  }

  remove(id) {
    const row = this.rows.get(id);
    if (!row) return;
    row.tr.remove();
    this.rows.delete(id);
    this.order.splice(this.order.indexOf(row), 1);
    this.onChange();
  }

  add(record) {
    this.place(this.build(record));
  }

  // Attaches or detaches one row as the filter says, keeping the order.
  place(row) {
    const want = this.matches(row.record);
    if (want === this.shown(row)) return;
    if (!want) {
      row.tr.remove();
      return;
    }
    const after = this.order.slice(this.order.indexOf(row) + 1).find((r) => this.shown(r));
    this.body.insertBefore(row.tr, after ? after.tr : null);
  }

  shown(row) {
    return row.tr.parentNode === this.body;
  }

  attachMatching() {
    const fragment = document.createDocumentFragment();
    for (const row of this.order) if (this.matches(row.record)) fragment.append(row.tr);
    this.body.replaceChildren(fragment);
  }

  build(record) {
    const cells = {
      link: h("a", { class: "name", dataset: { route: "" } }),
      id: h("div", { class: "id muted" }),
      user: cell(),
      badge: badge(record.state),
      build: cell({ class: "mono" }),
      revision: cell({ class: "num" }),
      proxy: cell({ class: "mono" }),
      restarts: cell({ class: "num" }),
      error: cell({ class: "error-cell" }),
      actions: actionButtons(record, {
        onError: this.onError,
        onDeleted: (id) => this.remove(id),
        onChanged: (id) => this.onAction(id),
      }),
    };
    const tr = h("tr", { role: "row", dataset: { testid: "program-row" } },
      cell({}, cells.link, cells.id), cells.user, cell({}, cells.badge), cells.build,
      cells.revision, cells.proxy, cells.restarts, cells.error, cell({}, cells.actions));
    const row = { tr, cells, record };
    this.rows.set(record.program_id, row);
    this.order.push(row);
    this.update(row, record, false);
    return row;
  }

  // `place`: false while the row is being built (its caller attaches it).
  update(row, record, place = true) {
    const { tr, cells } = row;
    row.record = record;
    tr.dataset.id = record.program_id;
    tr.dataset.name = record.name || "";
    cells.link.textContent = record.name || record.program_id;
    cells.link.href = `/ui/programs/${encodeURIComponent(record.program_id)}`;
    cells.id.textContent = record.name ? record.program_id : "";
    cells.user.textContent = record.user_id;
    setBadge(cells.badge, record.state);
    cells.build.textContent = record.build_id || "—";
    cells.build.title = record.build_id || "";
    cells.revision.textContent = record.revision ?? "—";
    cells.proxy.textContent = record.proxy_url || "—";
    cells.proxy.title = record.proxy_url || "";
    cells.restarts.textContent = record.restarts ?? 0;
    const message = record.error_msg || (record.failed_revision ? `revision ${record.failed_revision} failed: ${record.failed_reason}` : "");
    fill(cells.error, message ? h("span", { dataset: { testid: "error" } }, message) : "");
    updateActions(cells.actions, record);
    if (place) this.place(row);
  }

  matches(record) {
    if (this.state && record.state !== this.state) return false;
    if (!this.query) return true;
    const q = this.query;
    return record.program_id.toLowerCase().includes(q) || (record.name || "").includes(q) ||
      record.user_id.includes(q);
  }

  filter(query, state) {
    this.query = query.trim().toLowerCase();
    this.state = state;
    this.attachMatching();
    this.onChange();
  }

  counts() {
    return { shown: this.body.childElementCount, total: this.rows.size };
  }
}
