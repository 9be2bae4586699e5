// Overview: nodes with their true state, what each agent can inject and
// why not the rest, active faults, running workloads, the top diagnosis,
// and a timeline of the last hour's faults and diagnoses.
import { api, type S } from "../api";
import { ago, badge, h, num, table, time } from "../ui";
import type { Panel } from "../main";

const AGENT_FAULTS = ["cpu_stress", "memory_stress", "disk_stress", "network_delay", "network_loss", "network_bandwidth"];

function stateBadge(n: S["NodeInfo"]) {
  const kind = n.state === "connected" || n.state === "probing" ? "good" : n.state === "unreachable" ? "bad" : "warn";
  return badge(n.state, kind);
}

function backends(n: S["NodeInfo"]) {
  if (n.kind !== "agent") return "–";
  const caps = n.capabilities;
  const have = new Set(caps.fault_backends.map((b) => b.kind));
  const missing = (caps as S["Capabilities"] & { missing?: { kind: string; reason: string }[] }).missing ?? [];
  return h(
    "ul",
    { class: "plain" },
    ...AGENT_FAULTS.map((k) => {
      const b = caps.fault_backends.find((x) => x.kind === k);
      const why = missing.find((m) => m.kind === k)?.reason ?? "not available on this agent";
      return h("li", {}, have.has(k) ? badge("yes", "good") : badge("no", "bad"), ` ${k}`, h("small", {}, b ? ` — ${b.mechanism}` : ` — ${why}`));
    }),
  );
}

function timeline(faults: S["FaultRecord"][], ranks: S["Ranking"][], from: number, to: number): HTMLElement {
  const w = 1000;
  const x = (t: number) => ((Math.min(Math.max(t, from), to) - from) / (to - from)) * w;
  const nodes = [...new Set(faults.map((f) => f.node))];
  const rowH = 18;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  const height = (nodes.length + 1) * rowH + 20;
  svg.setAttribute("viewBox", `0 0 ${w + 120} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Timeline: ${faults.length} faults and ${ranks.length} rankings in the last hour`);
  const add = (tag: string, attrs: Record<string, string | number>, text?: string) => {
    const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text) e.textContent = text;
    svg.append(e);
    return e;
  };
  nodes.forEach((n, i) => {
    add("text", { x: 0, y: i * rowH + 13, class: "tl-label" }, n);
    for (const f of faults.filter((f) => f.node === n)) {
      const a = f.applied_ms ?? f.requested_ms;
      const b = f.ended_ms ?? Math.min(f.deadline_ms, to);
      const r = add("rect", { x: 120 + x(a), y: i * rowH + 2, width: Math.max(2, x(b) - x(a)), height: rowH - 4, class: `tl-fault` });
      add("title", {}, `${f.type} on ${f.node}, ${time(a)}–${f.ended_ms ? time(b) : "now"} (${f.state})`);
      r.append(svg.lastChild!);
    }
  });
  const y = nodes.length * rowH + 4;
  add("text", { x: 0, y: y + 12, class: "tl-label" }, "diagnosis");
  for (const r of ranks) {
    const top = r.ranks[0];
    if (!top || !r.timestamp) continue;
    const m = add("circle", { cx: 120 + x(r.timestamp), cy: y + 8, r: 3 + 4 * top.probability, class: top.probability >= 0.5 ? "tl-diag sure" : "tl-diag" });
    add("title", {}, `${time(r.timestamp)}: ${top.type} on ${top.node} (p ${top.probability.toFixed(2)})`);
    m.append(svg.lastChild!);
  }
  return h("figure", { class: "timeline" }, svg as unknown as HTMLElement, h("figcaption", {}, "Faults (bars, per node) and the top diagnosis of each ranking (dots, larger when surer) over the last hour"));
}

export const overview: Panel = {
  id: "overview",
  title: "Overview",
  mount(root) {
    const body = h("div", { id: "overview-body" }, "Loading…");
    root.append(body);
    let alive = true;
    const draw = async () => {
      const to = Date.now();
      const from = to - 3_600_000;
      const [nodes, active, wl, ranks, hist, rh] = await Promise.all([
        api.GET("/api/nodes"),
        api.GET("/api/anomaly/active"),
        api.GET("/api/workload/active"),
        api.GET("/api/anomaly/ranks", { params: { query: { limit: 5 } } }),
        api.GET("/api/anomaly/history", { params: { query: { from: String(from), to: String(to) } } }),
        api.GET("/api/anomaly/ranks", { params: { query: { from: String(from), to: String(to), limit: 1 } } }),
      ]);
      if (!alive) return;
      const ns = nodes.data?.nodes ?? [];
      const latest = ranks.data && "ranks" in ranks.data ? (ranks.data as S["Ranking"]) : undefined;
      const history = rh.data && "history" in rh.data ? (rh.data as S["RankHistory"]).history : [];
      const top = latest?.ranks[0];
      body.replaceChildren(
        h("section", { "aria-labelledby": "ov-diag" },
          h("h3", { id: "ov-diag" }, "Current diagnosis"),
          top
            ? h("p", { class: "headline", id: "top-diagnosis" }, h("strong", {}, `${top.node}: ${top.type}`), ` — p ${top.probability.toFixed(2)}, score ${top.score.toFixed(3)}, ${latest?.method} (${time(latest?.timestamp)})`)
            : h("p", { id: "top-diagnosis" }, latest?.note ?? "no ranking yet"),
        ),
        h("section", { "aria-labelledby": "ov-nodes" },
          h("h3", { id: "ov-nodes" }, `Nodes (${ns.length})`),
          table(["node", "kind", "state", "last sample", "metrics", "fault backends"],
            ns.map((n) => [n.node, n.kind, stateBadge(n), ago(n.last_sample_ms), n.metric_count, backends(n)])),
        ),
        h("section", { "aria-labelledby": "ov-faults" },
          h("h3", { id: "ov-faults" }, `Active faults (${active.data?.anomalies.length ?? 0})`),
          table(["id", "node", "type", "state", "until"], (active.data?.anomalies ?? []).map((f) => [f.id, f.node, f.type, f.state, time(f.deadline_ms)])),
        ),
        h("section", { "aria-labelledby": "ov-wl" },
          h("h3", { id: "ov-wl" }, `Running workloads (${wl.data?.workloads.length ?? 0})`),
          table(["id", "type", "threads", "TPS", "QPS", "p95 ms"], (wl.data?.workloads ?? []).map((w) => [w.workload_id, w.type, w.threads, num(w.current?.tps), num(w.current?.qps), num(w.current?.latency_ms?.p95)])),
        ),
        h("section", { "aria-labelledby": "ov-tl" }, h("h3", { id: "ov-tl" }, "Last hour"), timeline(hist.data?.anomalies ?? [], history, from, to)),
      );
    };
    draw();
    const t = setInterval(draw, 5000);
    return () => {
      alive = false;
      clearInterval(t);
    };
  },
};
