// Fault control: any fault type with its parameters, nodes, duration and
// the collect-training-data switch (the API's own messages say what is
// wrong with a request); active faults with stop buttons; stop all; history.
import { api, mutate, type S } from "../api";
import { act, badge, field, h, table, time } from "../ui";
import type { Panel } from "../main";

/** Each type's parameters: name, kind, default shown as a placeholder. */
const PARAMS: Record<string, [string, "int" | "float" | "text" | "list", string][]> = {
  cpu_stress: [["workers", "int", "1"], ["load_percent", "int", "100"]],
  memory_stress: [["bytes", "int", "268435456"], ["percent_of_available", "float", ""]],
  disk_stress: [["workers", "int", "1"], ["bytes", "int", "268435456"], ["path", "text", "agent's state dir"]],
  network_delay: [["latency_ms", "int", "100"], ["jitter_ms", "int", "0"], ["interface", "text", "default route's"], ["peers", "list", "10.0.0.0/24, ..."], ["ports", "list", "3306, ..."]],
  network_loss: [["percent", "float", "10"], ["interface", "text", "default route's"], ["peers", "list", ""], ["ports", "list", ""]],
  network_bandwidth: [["rate_kbit", "int", "1000"], ["interface", "text", "default route's"]],
  cache_bottleneck: [["database", "text", "the only one"], ["percent", "int", "10 (OceanBase)"], ["bytes", "int", "8388608 (MySQL)"]],
  too_many_indexes: [["database", "text", "the only one"], ["count", "int", "10"], ["tables", "list", "sbtest1"]],
  workload_surge: [["workload_id", "text", "the running one"], ["threads", "int", "4× its threads"]],
  lock_contention: [["database", "text", "the only one"], ["table", "text", "sbtest1"], ["rows", "int", "4"], ["sessions", "int", "8"], ["hold_ms", "int", "200"]],
};
const DB_TYPES = ["cache_bottleneck", "too_many_indexes", "workload_surge", "lock_contention"];

function stateBadge(s: string) {
  return badge(s, s === "applied" ? "warn" : s === "reverted" || s === "expired" ? "good" : s === "pending" ? "none" : "bad");
}

export const faults: Panel = {
  id: "faults",
  title: "Faults",
  mount(root) {
    const typeSel = h("select", { id: "fault-type" }, ...Object.keys(PARAMS).map((t) => h("option", { value: t }, t))) as HTMLSelectElement;
    const nodeBox = h("fieldset", { class: "nodes", id: "fault-nodes" }, h("legend", {}, "Nodes (agent faults)"));
    const paramBox = h("fieldset", { id: "fault-params" }, h("legend", {}, "Parameters (empty: the default)"));
    const duration = h("input", { id: "fault-duration", value: "60s", size: 8 }) as HTMLInputElement;
    const collect = h("input", { type: "checkbox", id: "fault-collect" }) as HTMLInputElement;
    const scenario = h("input", { id: "fault-scenario", size: 20 }) as HTMLInputElement;
    const activeBox = h("section", { id: "active-faults" });
    const histBox = h("section", { id: "fault-history" });
    const drawParams = () => {
      const t = typeSel.value;
      paramBox.replaceChildren(h("legend", {}, "Parameters (empty: the default)"),
        ...PARAMS[t].map(([name, kind, def]) => field(name, h("input", { name, "data-kind": kind, placeholder: def, inputmode: kind === "int" || kind === "float" ? "decimal" : undefined, id: `p-${name}` }))));
      nodeBox.disabled = DB_TYPES.includes(t);
    };
    typeSel.addEventListener("change", drawParams);
    drawParams();

    const start = () =>
      act("start fault", async () => {
        const params: Record<string, unknown> = {};
        for (const i of paramBox.querySelectorAll<HTMLInputElement>("input")) {
          const v = i.value.trim();
          if (!v) continue;
          const kind = i.dataset.kind;
          params[i.name] = kind === "int" || kind === "float" ? Number(v) : kind === "list" ? v.split(",").map((x) => x.trim()).map((x) => (i.name === "ports" ? Number(x) : x)) : v;
        }
        const nodes = [...nodeBox.querySelectorAll<HTMLInputElement>("input:checked")].map((c) => c.value);
        const body: S["StartRequest"] = { type: typeSel.value, params, duration: duration.value.trim() || undefined } as S["StartRequest"];
        if (!DB_TYPES.includes(typeSel.value) && nodes.length) body.nodes = nodes;
        if (collect.checked) {
          body.collect_training_data = true;
          if (scenario.value.trim()) body.scenario = scenario.value.trim();
        }
        const r = await mutate((headers) => api.POST("/api/anomaly/start", { body, headers }));
        draw();
        return `${r.message}: ${r.anomalies.map((a) => `${a.id} on ${a.node} (${a.state})`).join(", ")}${r.case ? `; training case ${r.case.id}` : ""}`;
      });
    const stop = (id?: string) =>
      act(id ? `stop ${id}` : "stop all", async () => {
        const r = await mutate((headers) => api.POST("/api/anomaly/stop", { body: id ? { id } : {}, headers }));
        draw();
        return `${r.message}: ${r.stopped.length} stopped${(r.failed ?? []).length ? `, ${(r.failed ?? []).length} not: ${(r.failed ?? []).map((f) => f.error).join("; ")}` : ""}`;
      });

    root.append(
      h("form", { class: "controls", id: "fault-form", onsubmit: (e: Event) => { e.preventDefault(); start(); } },
        field("Type", typeSel), nodeBox, paramBox,
        field("Duration", duration, "seconds or 90s, 5m"),
        field("Collect as a training case", collect), field("Scenario label", scenario),
        h("button", { type: "submit", id: "fault-start" }, "Start fault")),
      h("h3", {}, "Active"), h("button", { type: "button", id: "fault-stop-all", onclick: () => stop() }, "Stop all faults"), activeBox,
      h("h3", {}, "History (24 h)"), histBox,
    );

    let alive = true;
    const draw = async () => {
      const [nodes, active, hist] = await Promise.all([
        api.GET("/api/nodes"),
        api.GET("/api/anomaly/active"),
        api.GET("/api/anomaly/history", { params: { query: { from: "-24h" } } }),
      ]);
      if (!alive) return;
      const checked = new Set([...nodeBox.querySelectorAll<HTMLInputElement>("input:checked")].map((c) => c.value));
      const agents = (nodes.data?.nodes ?? []).filter((n) => n.kind === "agent");
      nodeBox.replaceChildren(h("legend", {}, "Nodes (agent faults; none chosen: the only connected agent)"),
        ...agents.map((n) => h("span", { class: "check" }, h("input", { type: "checkbox", value: n.node, id: `fn-${n.node}`, checked: checked.has(n.node), disabled: !n.connected }), h("label", { for: `fn-${n.node}` }, `${n.node}${n.connected ? "" : " (disconnected)"}`))));
      activeBox.replaceChildren(table(["id", "node", "type", "state", "since", "until", ""],
        (active.data?.anomalies ?? []).map((f) => [f.id, f.node, f.type, stateBadge(f.state), time(f.applied_ms), time(f.deadline_ms),
          h("button", { type: "button", class: "stop", "data-id": f.id, onclick: () => stop(f.id), "aria-label": `Stop ${f.type} on ${f.node}` }, "Stop")])));
      histBox.replaceChildren(table(["id", "node", "type", "state", "applied", "ended", "detail"],
        (hist.data?.anomalies ?? []).slice(-50).reverse().map((f) => [f.id, f.node, f.type, stateBadge(f.state), time(f.applied_ms), time(f.ended_ms), f.detail])));
    };
    draw();
    const t = setInterval(draw, 3000);
    return () => {
      alive = false;
      clearInterval(t);
    };
  },
};
