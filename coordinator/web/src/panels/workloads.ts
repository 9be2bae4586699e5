// Workloads: prepare with progress, start and stop, live TPS/QPS and
// latency percentiles per interval, and the stored runs.
import uPlot from "uplot";
import { api, mutate, type S } from "../api";
import { act, field, h, num, table, time } from "../ui";
import type { Panel } from "../main";

const KINDS = ["oltp_read_write", "oltp_read_only", "oltp_write_only", "oltp_point_select", "tpcc", "tpch"];

export const workloads: Panel = {
  id: "workloads",
  title: "Workloads",
  mount(root) {
    const kind = h("select", { id: "wl-type" }, ...KINDS.map((k) => h("option", { value: k }, k))) as HTMLSelectElement;
    const opt = (name: string, value: string) => h("input", { name, value, size: 10, id: `wl-${name}` }) as HTMLInputElement;
    const options = [opt("tables", "1"), opt("table_size", "10000"), opt("warehouses", "1"), opt("scale_factor", "0.01"), opt("database", ""), opt("duration_s", "0")];
    const threads = h("input", { id: "wl-threads", value: "4", size: 4, inputmode: "numeric" }) as HTMLInputElement;
    const progress = h("progress", { id: "wl-progress", max: 1, value: 0, "aria-label": "prepare progress" }) as HTMLProgressElement;
    const progressText = h("span", { id: "wl-progress-text" });
    const activeBox = h("section", { id: "wl-active" });
    const chartBox = h("div", { id: "wl-chart", class: "chart" });
    const runsBox = h("section", { id: "wl-runs" });
    const body = (): S["WorkloadRequest"] => {
      const o: Record<string, unknown> = {};
      for (const i of options) {
        const v = i.value.trim();
        if (!v) continue;
        o[i.name] = i.name === "database" ? v : Number(v);
      }
      return { type: kind.value, options: o as S["Options"], wait: false };
    };
    const prepare = () =>
      act("prepare", async () => {
        const r = await mutate((headers) => api.POST("/api/workload/prepare", { body: body(), headers }));
        const id = r.workload_id;
        for (;;) {
          const w = await api.GET("/api/workload/{id}", { params: { path: { id } } });
          const rep = w.data;
          if (!rep) throw new Error("the prepare job vanished");
          progress.value = rep.progress ?? 0;
          progressText.textContent = ` ${Math.round((rep.progress ?? 0) * 100)} % (${rep.phase})`;
          if (rep.phase === "prepared") return `${id}: prepared`;
          if (rep.phase !== "preparing") throw new Error(rep.error ?? rep.phase);
          await new Promise((r) => setTimeout(r, 500));
        }
      });
    const start = () =>
      act("start", async () => {
        const b = { ...body(), threads: Number(threads.value) };
        const r = await mutate((headers) => api.POST("/api/workload/start", { body: b, headers }));
        draw();
        return `${r.workload_id} started with ${r.threads} threads`;
      });
    const stop = (id?: string) =>
      act(id ? `stop ${id}` : "stop all", async () => {
        if (id) await mutate((headers) => api.POST("/api/workload/{id}/stop", { params: { path: { id } }, headers }));
        else await mutate((headers) => api.POST("/api/workload/stop-all", { headers }));
        draw();
      });
    root.append(
      h("form", { class: "controls", onsubmit: (e: Event) => e.preventDefault() },
        field("Benchmark", kind), ...options.map((i) => field(i.name, i)), field("Threads", threads, "1..64"),
        h("button", { type: "button", id: "wl-prepare", onclick: prepare }, "Prepare"), progress, progressText,
        h("button", { type: "button", id: "wl-start", onclick: start }, "Start"),
        h("button", { type: "button", id: "wl-stop-all", onclick: () => stop() }, "Stop all")),
      h("h3", {}, "Running"), activeBox, chartBox, h("h3", {}, "Stored runs"), runsBox,
    );
    let plot: uPlot | null = null;
    let alive = true;
    const draw = async () => {
      const [active, runs] = await Promise.all([api.GET("/api/workload/active"), api.GET("/api/workload/runs")]);
      if (!alive) return;
      const act = (active.data?.workloads ?? []).filter((w) => w.phase === "running");
      activeBox.replaceChildren(table(["id", "type", "threads", "TPS", "QPS", "errors/s", "p50 ms", "p95 ms", "p99 ms", "transactions", ""],
        act.map((w) => [w.workload_id, w.type, w.threads, num(w.current?.tps), num(w.current?.qps), num(w.current?.errors_per_s), num(w.current?.latency_ms?.p50, 2), num(w.current?.latency_ms?.p95, 2), num(w.current?.latency_ms?.p99, 2), w.totals.transactions,
          h("button", { type: "button", onclick: () => stop(w.workload_id), "aria-label": `Stop ${w.workload_id}` }, "Stop")])));
      activeBox.dataset.tps = String(act[0]?.current?.tps ?? 0);
      if (act[0]) {
        const full = await api.GET("/api/workload/{id}", { params: { path: { id: act[0].workload_id } } });
        const iv = (full.data?.intervals ?? []).slice(-300);
        const data: uPlot.AlignedData = [iv.map((i) => i.timestamp / 1000), iv.map((i) => i.tps), iv.map((i) => i.latency_ms?.p95 ?? null)];
        if (!plot) {
          plot = new uPlot({ width: Math.max(400, chartBox.clientWidth || 800), height: 220, title: `${act[0].workload_id}: TPS and p95`, series: [{}, { label: "TPS", stroke: "#1f77b4" }, { label: "p95 ms", stroke: "#d62728", scale: "ms" }], axes: [{}, {}, { scale: "ms", side: 1 }] }, data, chartBox);
        } else plot.setData(data);
      }
      runsBox.replaceChildren(table(["id", "type", "phase", "started", "transactions", "errors", "p95 ms"],
        (runs.data?.workloads ?? []).slice(-20).reverse().map((w) => [w.workload_id, w.type, w.phase, time(w.started_ms), w.totals.transactions, w.totals.errors, num(w.totals.latency_ms?.p95, 2)])));
    };
    draw();
    const t = setInterval(draw, 2000);
    return () => {
      alive = false;
      clearInterval(t);
      plot?.destroy();
    };
  },
};
