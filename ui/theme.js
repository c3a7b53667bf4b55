// Light, dark or the system's choice, kept in localStorage. html[data-theme] holds the
// choice; style.css maps "system" to prefers-color-scheme.
const KEY = "hersh.theme";
const CHOICES = ["system", "light", "dark"];

export function initTheme(select) {
  const saved = localStorage.getItem(KEY);
  const apply = (value) => {
    document.documentElement.dataset.theme = value;
    select.value = value;
  };
  apply(CHOICES.includes(saved) ? saved : "system");
  select.addEventListener("change", () => {
    localStorage.setItem(KEY, select.value);
    apply(select.value);
  });
}
