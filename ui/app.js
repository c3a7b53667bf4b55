// The dashboard's entry: theme, token form, routes. Every page is a module of
// pages/ and is mounted by the router on the path the Host answered index.html for.
import { route, startRouter, render } from "./router.js";
import { initAuth } from "./auth.js";
import { initTheme } from "./theme.js";
import { mountDashboard } from "./pages/dashboard.js";
import { mountProgram } from "./pages/program.js";
import { mountWatcher } from "./pages/watcher.js";

initTheme(document.querySelector("[data-testid=theme]"));
initAuth(render);
route("/ui", mountDashboard);
route("/ui/programs", mountDashboard);
route("/ui/programs/:id", mountProgram);
route("/ui/programs/:id/watcher", mountWatcher);
startRouter(document.getElementById("main"));
