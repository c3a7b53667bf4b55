// Routes on location.pathname (history API): the Host answers index.html for every
// deep link under /ui/. A page is mount(root, params) returning its cleanup function,
// which closes its streams when another page replaces it.
const routes = [];
let current = null;
let root = null;

export function route(pattern, load) {
  // "/ui/programs/:id/watcher" -> a regexp with one group per :name
  const names = [];
  const source = pattern.replace(/:(\w+)/g, (_, name) => {
    names.push(name);
    return "([^/]+)";
  });
  routes.push({ regexp: new RegExp(`^${source}/?$`), names, load });
}

export function navigate(path) {
  if (path !== location.pathname) history.pushState(null, "", path);
  render();
}

export function render() {
  if (current) current();
  current = null;
  for (const r of routes) {
    const match = r.regexp.exec(location.pathname);
    if (!match) continue;
    const params = {};
    r.names.forEach((name, i) => { params[name] = decodeURIComponent(match[i + 1]); });
    root.replaceChildren();
    current = r.load(root, params) || null;
    return;
  }
  navigate("/ui/");
}

// Links made with link() navigate without a reload; a modified click (new tab) does not.
export function startRouter(element) {
  root = element;
  window.addEventListener("popstate", render);
  document.addEventListener("click", (event) => {
    const a = event.target.closest("a[data-route]");
    if (!a || event.defaultPrevented || event.button !== 0) return;
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    navigate(a.getAttribute("href"));
  });
  render();
}
