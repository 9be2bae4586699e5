// The dashboard in a real browser: Debian's Chromium driven by
// playwright-core (no browser is downloaded). Called by
// tests/tests/dashboard.rs with a running coordinator that has an agent and
// a database:  node dashboard.mjs MODE BASE_URL TOKEN OUT_DIR [NODE]
//   MODE panels: every panel with real data, a fault started from the page
//                (active, its band on a chart, stopped), a workload prepared
//                and started (live TPS), a model trained and activated, and
//                the basics of access (labels, keyboard).
//   MODE perf:   the metrics page over 10 nodes; prints load and update costs.
// Screenshots of every panel go to OUT_DIR. Prints one JSON line of figures.
import { chromium } from "playwright-core";

const [mode, base, token, out, agentNode] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
page.on("console", (m) => m.type() === "error" && errors.push(`${m.text()} (${m.location()?.url ?? ""})`));
page.on("dialog", (d) => d.dismiss());
const figures = {};
const fail = async (msg) => {
  await page.screenshot({ path: `${out}/failure.png`, fullPage: true }).catch(() => {});
  console.error(msg);
  await browser.close();
  process.exit(1);
};
const check = async (cond, msg) => { if (!cond) await fail(msg); };
const shot = (name) => page.screenshot({ path: `${out}/${name}.png`, fullPage: true });
// The coordinator requires a token for reads: the first page asks for it
// before any panel starts (and keeps it for the tab).
let asked = false;
const go = async (hash) => {
  await page.goto(`${base}/#${hash}`);
  await page.waitForLoadState("domcontentloaded");
  if (mode === "panels" && !asked) {
    await page.waitForSelector("#token-dialog[open]", { timeout: 10000 }).catch(() => fail("no token asked for, though reads need one"));
    await withToken();
    asked = true;
  }
};
const withToken = async () => {
  const dialog = page.locator("#token-dialog[open]");
  if (await dialog.isVisible().catch(() => false)) {
    await page.fill("#token-input", token);
    await page.click("#token-form button[value=ok]");
  }
};
const clickMutating = async (selector) => {
  await page.click(selector);
  await page.waitForTimeout(300);
  await withToken();
};

if (mode === "panels") {
  // Overview: the agent and the probed database, each in its true state.
  await go("overview");
  await page.waitForSelector("#overview-body table");
  const rows = await page.locator("#overview-body table").first().innerText();
  await check(rows.includes(agentNode) && rows.includes("connected"), `overview: agent ${agentNode} not connected:\n${rows}`);
  await check(/db:\S+\s+database\s+probing/.test(rows), `overview: the database is not shown as probed:\n${rows}`);
  await check(rows.includes("cpu_stress"), "overview: no fault backends listed");
  await shot("overview");

  // Faults: start one from the page (the token asked for once), see it active.
  await go("faults");
  await page.waitForSelector(`#fn-${agentNode}`);
  await page.selectOption("#fault-type", "cpu_stress");
  await page.check(`#fn-${agentNode}`);
  await page.fill("#p-load_percent", "30");
  await page.fill("#fault-duration", "60s");
  await clickMutating("#fault-start");
  await page.waitForFunction(() => /cpu_stress/.test(document.querySelector("#active-faults")?.textContent ?? ""), null, { timeout: 15000 });
  await shot("faults-active");
  // Its band on a chart of that node.
  await go(`metrics?node=${agentNode}&metric=cpu.user`);
  await page.waitForFunction(() => /[1-9]\d* fault periods/.test(document.querySelector("#chart-info")?.textContent ?? ""), null, { timeout: 20000 });
  await page.waitForSelector("#chart canvas");
  await shot("metrics-with-fault-band");
  // Stop it from the page: the active list empties.
  await go("faults");
  await page.waitForSelector("#active-faults button.stop");
  await clickMutating("#active-faults button.stop");
  await page.waitForFunction(() => !document.querySelector("#active-faults button.stop"), null, { timeout: 20000 });
  await shot("faults-stopped");

  // Workloads: prepare with progress, start, live TPS, stop.
  await go("workloads");
  await page.selectOption("#wl-type", "oltp_point_select");
  await page.fill("#wl-table_size", "2000");
  await page.fill("#wl-threads", "2");
  await clickMutating("#wl-prepare");
  await page.waitForFunction(() => /100 %/.test(document.querySelector("#wl-progress-text")?.textContent ?? ""), null, { timeout: 120000 });
  await clickMutating("#wl-start");
  await page.waitForFunction(() => Number(document.querySelector("#wl-active")?.getAttribute("data-tps") ?? 0) > 0, null, { timeout: 30000 });
  figures.live_tps = Number(await page.getAttribute("#wl-active", "data-tps"));
  await shot("workloads-live");
  await clickMutating("#wl-stop-all");
  await page.waitForFunction(() => !/Stop oltp/.test(document.querySelector("#wl-active")?.innerHTML ?? ""), null, { timeout: 30000 });

  // Training: the test collected the data through the API; train from the page.
  await go("training");
  await page.waitForSelector("#balance-bar");
  await clickMutating("#tr-train");
  await page.waitForFunction(() => /active/.test(document.querySelector("#tr-models article")?.textContent ?? ""), null, { timeout: 180000 });
  await shot("training-model");

  // Diagnosis: a ranking, the graph, the history.
  await go("diagnosis");
  await page.waitForSelector("#ranking table", { timeout: 30000 });
  await page.waitForSelector("#node-graph");
  // Incidents come from the stored rankings: a table, or the sentence that there was none.
  await page.waitForSelector("#incidents table, #incidents p");
  await shot("diagnosis");
  await go("overview");
  await page.waitForSelector("#overview-body table");
  await shot("overview-after");

  // Access: every control labelled and reachable by keyboard.
  for (const panel of ["overview", "metrics", "diagnosis", "faults", "workloads", "training"]) {
    await go(panel);
    await page.waitForTimeout(1500);
    const problems = await page.evaluate(() => {
      const out = [];
      for (const el of document.querySelectorAll("main input, main select, main button, main a[href]")) {
        if (el.disabled || el.type === "hidden") continue;
        if (el.tabIndex < 0) out.push(`not reachable: ${el.outerHTML.slice(0, 80)}`);
        if (el.matches("input, select")) {
          const labelled = (el.id && document.querySelector(`label[for="${el.id}"]`)) || el.getAttribute("aria-label") || el.closest("label");
          if (!labelled) out.push(`no label: ${el.outerHTML.slice(0, 80)}`);
        }
        if (el.matches("button") && !(el.textContent.trim() || el.getAttribute("aria-label"))) out.push(`button without a name: ${el.outerHTML.slice(0, 80)}`);
      }
      return out;
    });
    await check(problems.length === 0, `${panel}: ${problems.join("\n")}`);
  }
  // Tab moves focus through the navigation by keyboard alone.
  await page.keyboard.press("Tab");
  await page.keyboard.press("Tab");
  const focused = await page.evaluate(() => document.activeElement?.tagName);
  await check(focused && focused !== "BODY", "keyboard focus does not move");

  // The API viewer at /docs renders every operation from the coordinator
  // alone: no request leaves it (its assets are vendored in the binary).
  const elsewhere = [];
  page.on("request", (r) => { if (!r.url().startsWith(base) && !r.url().startsWith("data:")) elsewhere.push(r.url()); });
  await page.goto(`${base}/docs/`);
  await page.waitForSelector(".swagger-ui .opblock", { timeout: 30000 });
  const doc = await (await fetch(`${base}/api/openapi.json`)).json();
  const documented = Object.values(doc.paths).reduce((n, item) => n + ["get", "post", "delete", "put", "patch"].filter((m) => item[m]).length, 0);
  const shown = await page.locator(".swagger-ui .opblock").count();
  figures.docs_operations = shown;
  await check(shown === documented, `/docs shows ${shown} operations, the document has ${documented}`);
  await check(elsewhere.length === 0, `/docs reached beyond the coordinator: ${elsewhere.join(", ")}`);
  await shot("docs");
}

if (mode === "perf") {
  // Interactive: from navigation until the chart of 10 nodes is drawn.
  const nodes = Array.from({ length: 10 }, (_, i) => `node=sim${i}`).join("&");
  const t0 = Date.now();
  await page.goto(`${base}/#metrics?${nodes}&metric=m17&range=3600000`);
  await page.waitForFunction(() => document.querySelector("#chart-info")?.dataset.loadedMs, null, { timeout: 30000 });
  figures.interactive_ms = Date.now() - t0;
  figures.navigation_to_chart_ms = await page.evaluate(() => performance.now());
  figures.fetch_and_draw_ms = Number(await page.getAttribute("#chart-info", "data-loaded-ms"));
  figures.points = Number((await page.textContent("#chart-info")).split(" ")[0]);
  // Live updates: main-thread time of each (appending the new points and redrawing).
  await page.evaluate(() => {
    window.__long = [];
    new PerformanceObserver((l) => window.__long.push(...l.getEntries().map((e) => e.duration))).observe({ type: "longtask", buffered: false });
  });
  const updates = [];
  for (let i = 0; i < 6; i++) {
    await page.waitForFunction((prev) => document.querySelector("#chart")?.dataset.updateMs && document.querySelector("#chart").dataset.updateMs !== prev, updates.at(-1) ?? "", { timeout: 10000 });
    updates.push(await page.getAttribute("#chart", "data-update-ms"));
    await page.evaluate(() => (document.querySelector("#chart").dataset.updateMs = ""));
  }
  figures.update_ms = updates.map(Number);
  figures.long_tasks_during_updates = await page.evaluate(() => window.__long);
  await shot("metrics-10-nodes");
}

await check(errors.length === 0, `errors in the page:\n${errors.join("\n")}`);
console.log(JSON.stringify(figures));
await browser.close();
