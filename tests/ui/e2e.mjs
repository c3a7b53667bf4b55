// The dashboard in a real browser: Debian's /usr/bin/chromium, headless, driven by
// playwright-core against a real Host that spec/ui_spec.lua started. One flow a run:
//   node tests/ui/e2e.mjs lifecycle|auth|error|many|xss|stopping
// Environment: HERSH_URL (the Host), HERSH_TOKEN (when it has one), UI_FIXTURE (a
// folder with the counter's Dockerfile and main.lua), UI_SCREENS (where the
// screenshots go), UI_WAIT (ms a state may take; the sanitizer build is slow),
// UI_PROGRAMS (the counts of the "many" flow, default "300,1000").
// Exit 0 when the flow passed; otherwise the failure is on stderr. Lines "e2e: ..."
// are measurements and progress, printed, not asserted.
import { chromium } from "playwright-core";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const URL = process.env.HERSH_URL;
const TOKEN = process.env.HERSH_TOKEN || "";
const FIXTURE = process.env.UI_FIXTURE;
const SCREENS = process.env.UI_SCREENS;
const WAIT = Number(process.env.UI_WAIT || 90000);

const say = (...a) => console.log("e2e:", ...a);

function check(cond, what) {
  if (!cond) throw new Error(what);
}

// ---- the Host's REST API, for setting up and checking (never for what the page does) --

async function api(method, path, body) {
  const headers = {};
  if (TOKEN) headers.Authorization = `Bearer ${TOKEN}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(URL + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, text };
}

// Waits (at most WAIT ms) until pred() holds, looking every 100 ms.
async function until(pred, what) {
  const end = Date.now() + WAIT;
  while (!(await pred())) {
    check(Date.now() < end, what);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function programByName(name) {
  const res = await api("GET", "/programs");
  check(res.status === 200, `GET /programs: ${res.status} ${res.text}`);
  return res.json.programs.find((p) => p.name === name);
}

function counterBody(name, user) {
  return {
    name, user_id: user,
    dockerfile: readFileSync(join(FIXTURE, "Dockerfile"), "utf8"),
    src_files: { "main.lua": readFileSync(join(FIXTURE, "main.lua"), "utf8") },
  };
}

// Creates `count` programs (not started: POST /programs alone), 8 requests at a time;
// the seconds it took.
async function createMany(from, count) {
  const t0 = Date.now();
  let next = from;
  const end = from + count;
  async function worker() {
    while (next < end) {
      const i = next++;
      const name = `bulk-${String(i).padStart(4, "0")}`;
      const res = await api("POST", "/programs", counterBody(name, `user-${i % 7}`));
      check(res.status === 201, `create ${name}: ${res.status} ${res.text}`);
    }
  }
  await Promise.all(Array.from({ length: 8 }, worker));
  return (Date.now() - t0) / 1000;
}

// ---- the browser ------------------------------------------------------------------------

async function openBrowser() {
  // As root, Chromium refuses to start without --no-sandbox (its own sandbox needs an
  // unprivileged user); the page it renders is our own dashboard.
  const args = process.getuid && process.getuid() === 0 ? ["--no-sandbox"] : [];
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(WAIT);
  const errors = [];
  context.on("weberror", (e) => errors.push(String(e.error())));
  context.on("console", (m) => {
    if (m.type() === "error") say("console error:", m.text());
  });
  return { browser, context, errors };
}

async function shot(page, name, fullPage = true) {
  if (!SCREENS) return;
  mkdirSync(SCREENS, { recursive: true });
  await page.screenshot({ path: join(SCREENS, `${name}.png`), fullPage });
}

// A screenshot in the light and the dark theme (set with the page's own selector).
async function shots(page, name, fullPage = true) {
  for (const theme of ["light", "dark"]) {
    await page.selectOption("[data-testid=theme]", theme);
    await page.waitForSelector(`html[data-theme=${theme}]`, { state: "attached" });
    await shot(page, `${name}-${theme}`, fullPage);
  }
}

function row(page, id) {
  return page.locator(`[data-testid=program-row][data-id="${id}"]`);
}

async function waitBadge(scope, state) {
  await scope.locator(`[data-testid=state-badge][data-state=${state}]`).first().waitFor({ timeout: WAIT });
}

async function dashboard(page) {
  await page.goto(URL + "/ui/programs");
  await page.waitForSelector("body[data-ready=dashboard]", { state: "attached" });
}

// ---- the flows -----------------------------------------------------------------------

// Create from the form with files from disk, Ready without a reload, the program page
// (record, sources, logs followed, events), the watcher page (a message changes the
// counter), the badge's delay, stop, start, restart, delete with its confirmation.
async function lifecycle(page) {
  const name = "ui-counter";
  await dashboard(page);
  await shots(page, "dashboard-empty");
  await page.click("[data-testid=create-open]");
  const form = page.locator("[data-testid=create-form]");
  await form.locator("input[name=name]").fill(name);
  await form.locator("input[name=user]").fill("alice");
  await form.locator("input[type=file][data-testid=files]")
    .setInputFiles([join(FIXTURE, "Dockerfile"), join(FIXTURE, "main.lua")]);
  await shots(page, "create");
  await page.evaluate(() => { window.__e2e_no_reload = true; });
  await page.click("[data-testid=create-submit]");
  // The build log, or the Host's refusal in the form (said at once, not after WAIT).
  await page.locator("[data-testid=build-log], [data-testid=form-error]:visible").first().waitFor({ state: "attached" });
  const refused = page.locator("[data-testid=form-error]:visible");
  if (await refused.count()) throw new Error("the Host refused the create: " + (await refused.first().textContent()));
  await waitBadge(page, "Ready");
  check(await page.evaluate(() => window.__e2e_no_reload === true), "the page reloaded on its way to Ready");
  const p = await programByName(name);
  check(p, `no program named ${name} on the Host after the form was sent`);
  const id = p.program_id;
  say("created from the form:", id);

  // The dashboard: its row, Ready, with the actions of a running program.
  await dashboard(page);
  const r = row(page, id);
  await r.waitFor();
  check(await r.getAttribute("data-name") === name, "the row's data-name");
  await waitBadge(r, "Ready");
  await r.locator("button[data-action=stop]").waitFor();
  await shots(page, "dashboard");

  // The program page, from the row's name.
  await r.getByText(name, { exact: true }).first().click();
  await page.waitForURL(`**/ui/programs/${id}`);
  const record = page.locator("[data-testid=record]");
  await record.locator("[data-field]").first().waitFor();
  check((await record.textContent()).includes(id), "the record does not show the program's id");
  await waitBadge(page, "Ready");
  const files = page.locator("[data-testid=source-file]");
  await files.filter({ hasText: "main.lua" }).first().click();
  await page.locator("[data-testid=source-view]").filter({ hasText: "hersh.watcher" }).waitFor();
  await page.locator("[data-testid=logs]").filter({ hasText: "Boot: 1" }).waitFor();
  await page.locator("[data-testid=event][data-kind=ready]").first().waitFor({ state: "attached" });
  // Logs followed: a line the program prints now shows without a reload.
  const follow = page.locator("[data-testid=follow]");
  if (!(await follow.isChecked())) await follow.check();
  const sent = await api("POST", `/programs/${id}/proxy/watcher/message`, { content: "from-the-api" });
  check(sent.status < 300, `message through the proxy: ${sent.status} ${sent.text}`);
  await page.locator("[data-testid=logs]").filter({ hasText: "Counter: 1" }).waitFor();
  await shots(page, "program");

  // The watcher page: a message from its command panel changes the counter.
  await page.goto(`${URL}/ui/programs/${id}/watcher`);
  await page.locator("[data-testid=watcher-status]").waitFor();
  check(!(await page.locator("[data-testid=not-ready-banner]").isVisible()), "the not-Ready banner shows for a Ready program");
  await page.fill("[data-testid=message-input]", "from-the-page");
  await page.click("[data-testid=message-send]");
  await page.locator("[data-testid=message-answer]").filter({ hasText: /\S/ }).waitFor();
  await page.locator("[data-testid=watcher-logs]").filter({ hasText: "Counter: 2" }).waitFor();
  await shots(page, "watcher");

  // The badge follows a state change made elsewhere (the API): the delay from the
  // request to the badge's change, measured in the page (same clock as here).
  await dashboard(page);
  await waitBadge(row(page, id), "Ready");
  await page.evaluate((pid) => {
    const sel = `[data-testid=program-row][data-id="${pid}"] [data-testid=state-badge]`;
    window.__e2e_badge_changed = 0;
    window.__e2e_badge_states = [];
    new MutationObserver(() => {
      const b = document.querySelector(sel);
      if (!b) return;
      if (!window.__e2e_badge_changed && b.dataset.state !== "Ready") window.__e2e_badge_changed = Date.now();
      if (window.__e2e_badge_states.at(-1) !== b.dataset.state) window.__e2e_badge_states.push(b.dataset.state);
    }).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
  }, id);
  const t0 = Date.now();
  const stop = await api("POST", `/programs/${id}/stop`);
  check(stop.status === 202, `stop: ${stop.status} ${stop.text}`);
  await page.waitForFunction(() => window.__e2e_badge_changed > 0);
  const changed = await page.evaluate(() => window.__e2e_badge_changed);
  // The badge moves on the first event of the stop: "stopping", which the Host emits
  // as the program enters Stopping (not only "exited", once it is gone).
  const evs = await api("GET", `/programs/${id}/events?follow=false`);
  const first = (evs.json?.events || []).find((e) => e.at * 1000 >= t0 - 5);
  say(`badge delay: ${changed - t0} ms from the stop request to the badge leaving Ready; `
    + (first ? `${Math.round(changed - first.at * 1000)} ms from the Host's "${first.kind}" event` : "no event found"));
  await waitBadge(row(page, id), "Stopped");
  say(`badge states after the stop: ${(await page.evaluate(() => window.__e2e_badge_states)).join(" -> ")}`);

  // Start and restart from the row's buttons.
  await row(page, id).locator("button[data-action=start]").click();
  await waitBadge(row(page, id), "Ready");
  await row(page, id).locator("button[data-action=restart]").click();
  await until(async () => (await api("GET", `/programs/${id}/logs?tail=50`)).text.includes("Boot: 3"),
    "the restart from the row did not boot the program again");
  await waitBadge(row(page, id), "Ready");

  // Delete: "no" keeps it, "yes" removes the row and the program.
  await row(page, id).locator("button[data-action=delete]").click();
  await page.locator("[data-testid=confirm]").waitFor();
  await shots(page, "confirm-delete");
  await page.click("[data-testid=confirm-no]");
  check((await api("GET", `/programs/${id}`)).status === 200, "the program went although the deletion was refused");
  await row(page, id).locator("button[data-action=delete]").click();
  await page.click("[data-testid=confirm-yes]");
  await row(page, id).waitFor({ state: "detached" });
  check((await api("GET", `/programs/${id}`)).status === 404, "the program is still on the Host after the deletion");
}

// A Host with --token-file: asked once, a wrong token refused with a message, the
// right one kept for the tab (a reload does not ask again).
async function auth(page) {
  await page.goto(URL + "/ui/");
  await page.locator("[data-testid=token-form]").waitFor();
  await shots(page, "token");
  await page.fill("[data-testid=token-input]", "wrong-" + TOKEN);
  await page.click("[data-testid=token-submit]");
  const refused = page.locator("[data-testid=auth-error]");
  await refused.waitFor();
  check((await refused.textContent()).trim().length > 0, "the refused token shows an empty message");
  await shots(page, "token-refused");
  await page.fill("[data-testid=token-input]", TOKEN);
  await page.click("[data-testid=token-submit]");
  await page.waitForSelector("body[data-ready=dashboard]", { state: "attached" });
  await page.locator("[data-testid=token-form]").waitFor({ state: "hidden" });
  await page.reload();
  await page.waitForSelector("body[data-ready=dashboard]", { state: "attached" });
  check(!(await page.locator("[data-testid=token-form]").isVisible()), "the token was asked again after a reload");
  check(await page.evaluate(() => Object.keys(sessionStorage).length > 0), "nothing kept in sessionStorage");
}

// A program whose build fails shows Error and its reason, on the dashboard and its page.
async function error(page) {
  const body = counterBody("ui-broken", "bob");
  body.dockerfile = "FROM hersh\nWORKDIR /app\nCOPY main.lua /app/\nRUN false\nCMD [\"hersh\", \"run\", \"/app/main.lua\"]\n";
  const created = await api("POST", "/programs", body);
  check(created.status === 201, `create: ${created.status} ${created.text}`);
  const id = created.json.program_id;
  const started = await api("POST", `/programs/${id}/start`);
  check(started.status === 202, `start: ${started.status} ${started.text}`);
  await dashboard(page);
  await waitBadge(row(page, id), "Error");
  const reason = (await api("GET", `/programs/${id}`)).json.error_msg;
  check(reason, "the Host gave no error for the broken program");
  const shown = row(page, id).locator("[data-testid=error]");
  await shown.waitFor();
  check((await shown.textContent()).trim().length > 0, "the row's error is empty");
  await shots(page, "dashboard-error");
  await page.goto(`${URL}/ui/programs/${id}`);
  await waitBadge(page, "Error");
  await page.locator("[data-testid=record]").filter({ hasText: reason.slice(0, 40) }).waitFor();
  // The watcher page of a program that is not Ready says so.
  await page.goto(`${URL}/ui/programs/${id}/watcher`);
  await page.locator("[data-testid=not-ready-banner]").waitFor();
  await shots(page, "watcher-not-ready");
}

// 300 and 1,000 programs: time to the first render, search and filter.
async function many(page) {
  const counts = (process.env.UI_PROGRAMS || "300,1000").split(",").map(Number);
  let have = 0;
  for (const n of counts) {
    const secs = await createMany(have, n - have);
    say(`created ${n - have} programs (not started) in ${secs.toFixed(1)} s`);
    have = n;
    const tl = Date.now();
    check((await api("GET", "/programs")).status === 200, "GET /programs");
    say(`GET /programs with ${n} programs: ${Date.now() - tl} ms (the list the page loads first)`);
    const t0 = Date.now();
    await page.goto(URL + "/ui/programs");
    await page.waitForSelector("body[data-ready=dashboard]", { state: "attached" });
    say(`first render with ${n} programs: ${Date.now() - t0} ms (navigation to body[data-ready=dashboard])`);
    const showing = page.locator("[data-testid=showing]");
    await showing.filter({ hasText: `showing ${n} of ${n}` }).waitFor();
    await page.fill("[data-testid=search]", "bulk-0042");
    await showing.filter({ hasText: `showing 1 of ${n}` }).waitFor();
    check(await page.locator("[data-testid=program-row]:visible").count() === 1, "the search left other rows visible");
    await page.fill("[data-testid=search]", "user-3");
    const users = Math.floor((n - 1 - 3) / 7) + 1;
    await showing.filter({ hasText: `showing ${users} of ${n}` }).waitFor();
    await page.fill("[data-testid=search]", "");
    await page.selectOption("[data-testid=state-filter]", "Ready");
    await showing.filter({ hasText: `showing 0 of ${n}` }).waitFor();
    await page.selectOption("[data-testid=state-filter]", "Created");
    await showing.filter({ hasText: `showing ${n} of ${n}` }).waitFor();
    await page.selectOption("[data-testid=state-filter]", "");
    if (n === counts[0]) await shots(page, `dashboard-${n}`, false);
  }
}

// A stop made through the API shows Stopping on the dashboard and the program page
// from the Host's "stopping" event alone: the program ignores SIGTERM (its shell
// does, and sleeps after the counter exits), so it stays Stopping until the SIGKILL
// 10 s later, and nothing but the event tells the pages.
async function stopping(page) {
  const body = counterBody("slow-stop", "carol");
  body.dockerfile = "FROM hersh\nWORKDIR /app\nCOPY main.lua /app/\n"
    + `CMD ["/bin/sh", "-c", "trap '' TERM; hersh run /app/main.lua; sleep 60"]\n`;
  const created = await api("POST", "/programs", body);
  check(created.status === 201, `create: ${created.status} ${created.text}`);
  const id = created.json.program_id;
  const started = await api("POST", `/programs/${id}/start`);
  check(started.status === 202, `start: ${started.status} ${started.text}`);
  await until(async () => (await api("GET", `/programs/${id}`)).json?.state === "Ready", "the program did not get Ready");
  const programPage = await page.context().newPage();
  await programPage.goto(`${URL}/ui/programs/${id}`);
  await waitBadge(programPage, "Ready");
  await dashboard(page);
  await waitBadge(row(page, id), "Ready");
  const t0 = Date.now();
  const stop = await api("POST", `/programs/${id}/stop`);
  check(stop.status === 202 && stop.json.state === "Stopping", `stop: ${stop.status} ${stop.text}`);
  await waitBadge(row(page, id), "Stopping");
  const onDashboard = Date.now() - t0;
  await waitBadge(programPage, "Stopping");
  const onProgram = Date.now() - t0;
  say(`badge delay (Stopping, a stop through the API): dashboard ${onDashboard} ms, program page ${onProgram} ms or less`);
  const now = (await api("GET", `/programs/${id}`)).json?.state;
  check(now === "Stopping", `the program left Stopping before the pages were checked (${now}): this check proved nothing`);
  await programPage.locator("[data-testid=event][data-kind=stopping]").first().waitFor({ state: "attached" });
  await waitBadge(row(page, id), "Stopped");
  await waitBadge(programPage, "Stopped");
  await programPage.close();
}

// Markup an attacker can put into what the dashboard shows. Each payload would open a
// dialog if it ever ran, and each makes an element (img, script, svg) if it is ever
// parsed as HTML.
const XSS = ["<img src=x onerror=alert(1)>", "<script>alert(2)</script>", "<svg onload=alert(3)>"];
const XSS_TEXT = XSS.join(" ");

// A program that prints the payloads (in its log, from its environment and from each
// message) and keeps them in its watcher: a context key and value, and a memo.
const XSS_MAIN = `
local hersh = require "hersh"
io.stdout:setvbuf("line")
local X = ${JSON.stringify(XSS_TEXT)}
print("log: " .. X)
print("env: " .. tostring(os.getenv("XSS")))
local w = hersh.watcher{ id = "xss" }
w:manage(function(msg, ctx)
  ctx:set(X, X)
  ctx:memo(X, function() return X end)
  if msg then ctx:print("message: " .. tostring(msg.content)) end
end)
assert(w:start())
hersh.run()
`;

// The elements the page did not make itself: index.html and the pages make no img,
// script (in the body), svg, iframe, object or embed, and set no on* attribute.
function injected(page) {
  return page.evaluate(() => {
    const tags = [...document.body.querySelectorAll("img, script, svg, iframe, object, embed")];
    const handlers = [...document.body.querySelectorAll("*")]
      .filter((el) => [...el.attributes].some((a) => a.name.startsWith("on")));
    return [...new Set([...tags, ...handlers])].map((el) => el.outerHTML.slice(0, 80));
  });
}

async function noInjection(page, where) {
  const found = await injected(page);
  say(`xss: ${found.length} injected elements on ${where}`);
  check(found.length === 0, `markup from a program was parsed on ${where}: ${found.join(" | ")}`);
}

// Waits until `scope` shows `marker` (plain text next to a payload), then checks that
// no element was made from the payloads and that they show as text.
async function shownAsText(page, scope, marker, where) {
  const target = scope.filter({ hasText: marker }).first();
  await target.waitFor({ state: "attached" });
  await noInjection(page, where);
  check((await target.textContent()).includes(XSS[0]), `${where} does not show the payload as text`);
}

async function waitState(id, state) {
  await until(async () => (await api("GET", `/programs/${id}`)).json?.state === state,
    `program ${id} did not reach ${state}`);
}

// Attacker text (file names and contents, environment, a build error from a Dockerfile
// line, log lines, events, watcher values) shows as text on every page: no element
// made from it and no dialog opened. Names and user ids cannot carry markup (the Host
// refuses them: [a-z0-9-]).
async function xss(page) {
  const dialogs = [];
  page.on("dialog", (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  const run = counterBody("xss-run", "mallory");
  run.dockerfile = "FROM hersh\nWORKDIR /app\nCOPY main.lua /app/\nCMD [\"hersh\", \"run\", \"/app/main.lua\"]\n";
  run.src_files = { "main.lua": XSS_MAIN, [`${XSS[0]}.txt`]: `content: ${XSS_TEXT}`, [XSS[2]]: `content: ${XSS_TEXT}` };
  run.env = { XSS: XSS_TEXT };
  const broken = counterBody("xss-broken", "mallory");
  broken.dockerfile = `FROM hersh\nWORKDIR /app\nCOPY main.lua /app/\nRUN echo '${XSS_TEXT}' && false\nCMD ["hersh", "run", "/app/main.lua"]\n`;
  const ids = {};
  for (const [name, body] of [["run", run], ["broken", broken]]) {
    const created = await api("POST", "/programs", body);
    check(created.status === 201, `create xss-${name}: ${created.status} ${created.text}`);
    ids[name] = created.json.program_id;
    const started = await api("POST", `/programs/${ids[name]}/start`);
    check(started.status === 202, `start xss-${name}: ${started.status} ${started.text}`);
  }
  await waitState(ids.run, "Ready");
  await waitState(ids.broken, "Error");
  const sent = await api("POST", `/programs/${ids.run}/proxy/watcher/message`, { content: XSS_TEXT });
  check(sent.status < 300, `message through the proxy: ${sent.status} ${sent.text}`);
  await until(async () => (await api("GET", `/programs/${ids.run}/logs?tail=50`)).text.includes("message: <img"),
    "the program did not print the message");
  const reason = (await api("GET", `/programs/${ids.broken}`)).json.error_msg || "";
  say(`xss: the broken build's error: ${reason.slice(0, 120)}`);

  // The dashboard: the build error. Each check first waits for plain text next to a
  // payload, then counts the elements, then asks for the payload as text.
  await dashboard(page);
  await shownAsText(page, row(page, ids.broken).locator("[data-testid=error]"), "build failed", "the dashboard");

  // The running program: its log, its file names and contents, its events.
  await page.goto(`${URL}/ui/programs/${ids.run}`);
  await page.locator("[data-testid=event][data-kind=ready]").first().waitFor({ state: "attached" });
  await shownAsText(page, page.locator("[data-testid=logs-text]").filter({ hasText: "env: " }), "message: ",
    "the program page's log");
  const names = await page.locator("[data-testid=source-file]").allTextContents();
  for (const file of [`${XSS[0]}.txt`, XSS[2]]) {
    check(names.includes(file), `the file ${file} is not listed by its name: ${names.join(", ")}`);
    await page.locator("[data-testid=source-file]").filter({ hasText: file }).click();
    await shownAsText(page, page.locator("[data-testid=source-view]"), "content: ", `the program page, viewing ${file}`);
  }

  // The broken one: its record, its error event, its build log.
  await page.goto(`${URL}/ui/programs/${ids.broken}`);
  await shownAsText(page, page.locator("[data-testid=record]"), "build failed", "the broken program's record");
  await shownAsText(page, page.locator("[data-testid=event][data-kind=error]"), "build failed", "the broken program's events");
  await page.selectOption("[data-testid=log-type]", "build");
  await shownAsText(page, page.locator("[data-testid=logs-text]"), "RUN (line 4)", "the broken program's build log");

  // The watcher page: context, memo and watcher logs hold the payloads.
  await page.goto(`${URL}/ui/programs/${ids.run}/watcher`);
  await shownAsText(page, page.locator("[data-testid=context]"), "alert(2)", "the watcher's context");
  await shownAsText(page, page.locator("[data-testid=memo]"), "alert(2)", "the watcher's memo");
  await shownAsText(page, page.locator("[data-testid=watcher-logs]"), "message: ", "the watcher's logs");
  await shot(page, "xss-watcher");
  check(dialogs.length === 0, `a payload ran: dialogs ${dialogs.join(", ")}`);
}

const FLOWS = { lifecycle, auth, error, many, xss, stopping };

async function main() {
  const flow = FLOWS[process.argv[2]];
  if (!flow || !URL || !FIXTURE) {
    console.error("usage: HERSH_URL=... UI_FIXTURE=... node e2e.mjs " + Object.keys(FLOWS).join("|"));
    process.exit(2);
  }
  const { browser, context, errors } = await openBrowser();
  const page = await context.newPage();
  try {
    await flow(page);
    check(errors.length === 0, "uncaught errors in the page:\n" + errors.join("\n"));
  } catch (e) {
    await shot(page, `FAILED-${process.argv[2]}`).catch(() => {});
    console.error(`e2e ${process.argv[2]} failed at ${page.url()}: ${e.stack || e}`);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

await main();
