// The distdiag dashboard: one panel at a time, chosen by the URL's hash
// (#overview, #metrics?node=..&metric=.., ...), every panel reading the
// typed API and refreshing itself.
import "./style.css";
import { api, readAccess } from "./api";
import { h } from "./ui";
import { overview } from "./panels/overview";
import { metrics } from "./panels/metrics";
import { diagnosis } from "./panels/diagnosis";
import { faults } from "./panels/faults";
import { workloads } from "./panels/workloads";
import { training } from "./panels/training";

export interface Panel {
  id: string;
  title: string;
  /** Renders into `root`; returns what stops its timers and streams. */
  mount(root: HTMLElement, query: URLSearchParams): () => void;
}

const panels: Panel[] = [overview, metrics, diagnosis, faults, workloads, training];
const nav = document.getElementById("nav")!;
const main = document.getElementById("main")!;
let stop: () => void = () => {};

for (const p of panels) {
  nav.append(h("a", { href: `#${p.id}`, id: `nav-${p.id}` }, p.title));
}

function route() {
  const [id, q] = location.hash.slice(1).split("?");
  const panel = panels.find((p) => p.id === id) ?? panels[0];
  stop();
  main.replaceChildren(h("h2", {}, panel.title));
  for (const a of nav.querySelectorAll("a")) {
    if (a.id === `nav-${panel.id}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `distdiag — ${panel.title}`;
  stop = panel.mount(main, new URLSearchParams(q ?? ""));
}

window.addEventListener("hashchange", route);
readAccess().then(route);

// The coordinator's liveness, in words.
async function health() {
  const el = document.getElementById("conn")!;
  const { data } = await api.GET("/health").catch(() => ({ data: undefined }));
  const storage = data?.storage;
  if (data && storage && !storage.writable) {
    // Ingest is refused until the store can write again: say why and since when.
    const since = storage.since_ms ? new Date(storage.since_ms).toLocaleTimeString() : "?";
    const free = storage.free_bytes != null ? `, ${(storage.free_bytes / 1048576).toFixed(1)} MiB free` : "";
    el.textContent = `coordinator ${data.version}: storage not writable since ${since} (${storage.error ?? "unknown error"}${free}); agents keep their data until it is`;
    el.className = "bad";
    return;
  }
  el.textContent = data ? `coordinator ${data.version}: ${data.connected_agents} agents connected, ${data.nodes} nodes` : "coordinator unreachable";
  el.className = data ? "good" : "bad";
}
health();
setInterval(health, 5000);
