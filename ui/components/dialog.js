// A confirmation in a native <dialog>: modal, keeps the focus inside, Escape cancels,
// Enter confirms (the focus starts on the confirming button, after a deliberate click).
import { h } from "../dom.js";

export function confirm(message, yesLabel = "Yes") {
  return new Promise((resolve) => {
    const no = h("button", { type: "button", dataset: { testid: "confirm-no" } }, "Cancel");
    const yes = h("button", { type: "button", class: "danger", dataset: { testid: "confirm-yes" } }, yesLabel);
    const dialog = h("dialog", { dataset: { testid: "confirm" }, "aria-label": "Confirm" },
      h("p", {}, message), h("div", { class: "buttons" }, no, yes));
    const done = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    no.addEventListener("click", () => done(false));
    yes.addEventListener("click", () => done(true));
    dialog.addEventListener("cancel", (event) => {
      event.preventDefault();
      done(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    yes.focus();
  });
}
