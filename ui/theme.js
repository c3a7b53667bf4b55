// Light, dark or the system's choice, kept in localStorage. html[data-theme] holds the
// choice; html[data-scheme] the colours in use ("system" resolved here, and again when
// the system's preference changes), so style.css has one dark palette.
const KEY = "hersh.theme";
const CHOICES = ["system", "light", "dark"];

export function initTheme(select) {
  const saved = localStorage.getItem(KEY);
  const systemDark = matchMedia("(prefers-color-scheme: dark)");
  const root = document.documentElement;
  const resolve = () => {
    const dark = root.dataset.theme === "dark" || (root.dataset.theme === "system" && systemDark.matches);
    root.dataset.scheme = dark ? "dark" : "light";
  };
  const apply = (value) => {
    root.dataset.theme = value;
    select.value = value;
    resolve();
  };
  apply(CHOICES.includes(saved) ? saved : "system");
  systemDark.addEventListener("change", resolve);
  select.addEventListener("change", () => {
    localStorage.setItem(KEY, select.value);
    apply(select.value);
  });
}
