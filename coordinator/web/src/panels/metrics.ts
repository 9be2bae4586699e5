// Metrics: any metric of several nodes overlaid on one chart (uPlot, made
// for many points), a time range (relative, absolute, or dragged on the
// chart), live updates that append only the new points, and every fault
// period drawn as a shaded band and every sure diagnosis as a marker.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { api, type S } from "../api";
import { field, h, say } from "../ui";
import type { Panel } from "../main";

const RANGES: [string, number][] = [["5 min", 300e3], ["15 min", 900e3], ["1 h", 3600e3], ["6 h", 21600e3], ["24 h", 86400e3]];
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"];

interface View {
  nodes: string[];
  metric: string;
  from: number;
  to: number;
  relative: number | null; // ms back from now, when live
}

/** Points of one node on a common grid (bucket starts), gaps as null. */
function align(series: Map<string, [number, number][]>, nodes: string[]): uPlot.AlignedData {
  const xs = new Set<number>();
  for (const pts of series.values()) for (const p of pts) xs.add(p[0]);
  const x = [...xs].sort((a, b) => a - b);
  const index = new Map(x.map((t, i) => [t, i]));
  const cols = nodes.map((n) => {
    const col: (number | null)[] = new Array(x.length).fill(null);
    for (const [t, v] of series.get(n) ?? []) col[index.get(t)!] = v;
    return col;
  });
  return [x.map((t) => t / 1000), ...cols] as uPlot.AlignedData;
}

export const metrics: Panel = {
  id: "metrics",
  title: "Metrics",
  mount(root, query) {
    const initial = RANGES.find(([, ms]) => ms === Number(query.get("range")))?.[1] ?? 900e3;
    const view: View = { nodes: [], metric: query.get("metric") ?? "cpu.user", from: 0, to: 0, relative: initial };
    const wanted = query.getAll("node");
    const nodeBox = h("fieldset", { class: "nodes" }, h("legend", {}, "Nodes"));
    const metricInput = h("input", { type: "search", list: "metric-names", value: view.metric, size: 40, autocomplete: "off" }) as HTMLInputElement;
    const names = h("datalist", { id: "metric-names" });
    const rangeSel = h("select", {}, ...RANGES.map(([l, ms]) => h("option", { value: ms, selected: ms === initial }, `last ${l}`)), h("option", { value: "abs" }, "from … to …")) as HTMLSelectElement;
    const fromIn = h("input", { type: "datetime-local", step: 1 }) as HTMLInputElement;
    const toIn = h("input", { type: "datetime-local", step: 1 }) as HTMLInputElement;
    const live = h("input", { type: "checkbox", checked: true }) as HTMLInputElement;
    const info = h("p", { id: "chart-info", role: "status" });
    const chartBox = h("div", { id: "chart", class: "chart" });
    const legend = h("p", { class: "legend" }, "Shaded: fault periods of the shown nodes. Red ticks: a diagnosis naming a shown node with p ≥ 0.5. Drag on the chart to zoom.");
    root.append(
      h("form", { class: "controls", onsubmit: (e: Event) => { e.preventDefault(); apply(); } },
        nodeBox,
        field("Metric", metricInput, "type to search the nodes' catalogs"), names,
        field("Range", rangeSel), field("From", fromIn), field("To", toIn),
        field("Live", live, "append new samples every 2 s"),
        h("button", { type: "submit" }, "Show")),
      info, chartBox, legend,
    );

    let plot: uPlot | null = null;
    let bands: S["FaultRecord"][] = [];
    let marks: { t: number; label: string }[] = [];
    let series = new Map<string, [number, number][]>();
    let step = 1000;
    let alive = true;
    let timer = 0;

    const draw = (u: uPlot) => {
      const { ctx, bbox } = u;
      ctx.save();
      for (const f of bands) {
        const a = (f.applied_ms ?? f.requested_ms) / 1000;
        const b = (f.ended_ms ?? Date.now()) / 1000;
        const x0 = Math.max(u.valToPos(a, "x", true), bbox.left);
        const x1 = Math.min(u.valToPos(b, "x", true), bbox.left + bbox.width);
        if (x1 <= x0) continue;
        ctx.fillStyle = "rgba(255, 160, 0, 0.18)";
        ctx.fillRect(x0, bbox.top, x1 - x0, bbox.height);
        ctx.fillStyle = "rgba(160, 90, 0, 0.9)";
        ctx.font = `${12 * devicePixelRatio}px sans-serif`;
        ctx.fillText(`${f.type}@${f.node}`, x0 + 4, bbox.top + 14 * devicePixelRatio);
      }
      ctx.strokeStyle = "#c00";
      ctx.lineWidth = 2 * devicePixelRatio;
      for (const m of marks) {
        const x = u.valToPos(m.t / 1000, "x", true);
        if (x < bbox.left || x > bbox.left + bbox.width) continue;
        ctx.beginPath();
        ctx.moveTo(x, bbox.top + bbox.height);
        ctx.lineTo(x, bbox.top + bbox.height - 14 * devicePixelRatio);
        ctx.stroke();
      }
      ctx.restore();
    };

    const build = () => {
      plot?.destroy();
      const data = align(series, view.nodes);
      plot = new uPlot(
        {
          width: Math.max(400, chartBox.clientWidth || 900),
          height: 360,
          title: view.metric,
          scales: { x: { time: true } },
          cursor: { drag: { x: true, y: false, setScale: false } },
          series: [{}, ...view.nodes.map((n, i) => ({ label: n, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: false }))],
          axes: [{}, { size: 70 }],
          hooks: {
            draw: [draw],
            setSelect: [
              (u: uPlot) => {
                if (u.select.width < 4) return;
                view.from = Math.round(u.posToVal(u.select.left, "x") * 1000);
                view.to = Math.round(u.posToVal(u.select.left + u.select.width, "x") * 1000);
                view.relative = null;
                live.checked = false;
                rangeSel.value = "abs";
                setInputs();
                u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
                load();
              },
            ],
          },
        },
        data,
        chartBox,
      );
    };

    const setInputs = () => {
      const iso = (ms: number) => new Date(ms - new Date().getTimezoneOffset() * 60e3).toISOString().slice(0, 19);
      fromIn.value = iso(view.from);
      toIn.value = iso(view.to);
    };

    const fetchNode = async (node: string, from: number, to: number) => {
      const r = await api.GET("/api/metrics", { params: { query: { node, metric: view.metric, from: String(from), to: String(to), step: String(step) } } });
      if (!r.data || !("points" in r.data)) {
        const e = r.error as { error?: string } | undefined;
        throw new Error(`${node}: ${e?.error ?? r.response.status}`);
      }
      return (r.data as S["Series"]).points as [number, number][];
    };

    const overlays = async () => {
      const [hist, ranks] = await Promise.all([
        api.GET("/api/anomaly/history", { params: { query: { from: String(view.from), to: String(view.to) } } }),
        api.GET("/api/anomaly/ranks", { params: { query: { from: String(view.from), to: String(view.to), limit: 1 } } }),
      ]);
      bands = (hist.data?.anomalies ?? []).filter((f) => view.nodes.includes(f.node) || f.node === "cluster");
      const rh = ranks.data && "history" in ranks.data ? (ranks.data as S["RankHistory"]).history : [];
      marks = rh
        .filter((r) => r.ranks[0] && r.ranks[0].probability >= 0.5 && view.nodes.includes(r.ranks[0].node))
        .map((r) => ({ t: r.timestamp!, label: `${r.ranks[0].type}@${r.ranks[0].node}` }));
    };

    const load = async () => {
      if (view.relative !== null) {
        view.to = Date.now();
        view.from = view.to - view.relative;
        setInputs();
      }
      if (view.nodes.length === 0) {
        info.textContent = "Choose at least one node.";
        return;
      }
      step = Math.max(1000, Math.ceil((view.to - view.from) / 1500 / 1000) * 1000);
      const t0 = performance.now();
      try {
        const parts = await Promise.all(view.nodes.map((n) => fetchNode(n, view.from, view.to)));
        series = new Map(view.nodes.map((n, i) => [n, parts[i]]));
        await overlays();
      } catch (e) {
        say(`metrics: ${(e as Error).message}`, true);
        return;
      }
      if (!alive) return;
      build();
      const points = [...series.values()].reduce((a, p) => a + p.length, 0);
      info.textContent = `${points} points of ${view.metric} on ${view.nodes.join(", ")}, step ${step / 1000} s, ${bands.length} fault periods, ${marks.length} diagnoses; drawn in ${Math.round(performance.now() - t0)} ms`;
      info.dataset.loadedMs = String(performance.now() - t0);
    };

    /** Live: only the points after the last one shown, appended. */
    const tick = async () => {
      if (!alive || !live.checked || view.relative === null || !plot) return;
      const last = Math.max(...[...series.values()].map((p) => (p.length ? p[p.length - 1][0] : view.from)));
      try {
        const parts = await Promise.all(view.nodes.map((n) => fetchNode(n, last + 1, Date.now())));
        await overlays();
        const t0 = performance.now();
        view.nodes.forEach((n, i) => series.get(n)?.push(...parts[i].filter((p) => p[0] > last)));
        view.to = Date.now();
        view.from = view.to - view.relative;
        for (const [n, pts] of series) series.set(n, pts.filter((p) => p[0] >= view.from));
        plot.setData(align(series, view.nodes));
        chartBox.dataset.updateMs = String(performance.now() - t0);
      } catch (e) {
        say(`live update: ${(e as Error).message}`, true);
      }
    };

    const apply = () => {
      view.nodes = [...nodeBox.querySelectorAll<HTMLInputElement>("input:checked")].map((c) => c.value);
      view.metric = metricInput.value.trim();
      if (rangeSel.value === "abs") {
        view.relative = null;
        view.from = new Date(fromIn.value).getTime();
        view.to = new Date(toIn.value).getTime();
        if (!(view.from < view.to)) return say("the range needs From before To", true);
      } else {
        view.relative = Number(rangeSel.value);
      }
      load();
    };
    rangeSel.addEventListener("change", () => rangeSel.value !== "abs" && apply());

    (async () => {
      const r = await api.GET("/api/nodes");
      const ns = r.data?.nodes ?? [];
      const chosen = wanted.length ? wanted : ns.filter((n) => n.kind === "agent").map((n) => n.node).slice(0, 3);
      for (const n of ns) {
        const cb = h("input", { type: "checkbox", value: n.node, checked: chosen.includes(n.node), id: `node-${n.node}` });
        nodeBox.append(h("span", { class: "check" }, cb, h("label", { for: `node-${n.node}` }, n.node)));
      }
      const catalogs = await Promise.all(chosen.slice(0, 3).map((n) => api.GET("/api/nodes/{node}", { params: { path: { node: n } } })));
      const all = new Set<string>();
      for (const c of catalogs) for (const m of c.data?.catalog ?? []) all.add(m.name);
      names.replaceChildren(...[...all].sort().map((m) => h("option", { value: m })));
      apply();
    })();
    timer = window.setInterval(tick, 2000);
    return () => {
      alive = false;
      clearInterval(timer);
      plot?.destroy();
    };
  },
};
