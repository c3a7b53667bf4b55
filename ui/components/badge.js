// The state badge: the state's name as text (never colour alone), a colour and a
// shape per state (style.css), so it reads in both themes and without colour vision.
import { h } from "../dom.js";

export const STATES = ["Created", "Building", "Starting", "Ready", "Stopping", "Stopped", "Restarting", "Error"];

export function badge(state, testid = "state-badge") {
  const node = h("span", { class: "badge", dataset: { testid } });
  setBadge(node, state);
  return node;
}

export function setBadge(node, state) {
  if (node.dataset.state === state) return;
  node.dataset.state = state;
  node.textContent = state;
  node.title = `state: ${state}`;
}
