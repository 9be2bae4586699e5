// Training: normal collection, the collect switch, the dataset's balance
// (green when balanced), cases, training with progress, and the model
// versions with their evaluation beside the statistical scorer and Dummy,
// to activate or roll back.
import { api, mutate, type S } from "../api";
import { act, badge, h, table, time } from "../ui";
import type { Panel } from "../main";

function evaluation(e: S["Evaluation"] | null | undefined): HTMLElement {
  if (!e) return h("span", {}, "not evaluated");
  const row = (name: string, m: S["MethodReports"] | null | undefined) =>
    m ? [name, m.at_fault.ac1.toFixed(3), m.at_fault.ac3.toFixed(3), (m.at_fault.node?.ac1 ?? 0).toFixed(3), m.at_fault.macro_f1.toFixed(3)] : [name, "–", "–", "–", "–"];
  const model = e.model?.at_fault;
  const types = model ? Object.entries(model.per_type) : [];
  const conf = model ? Object.entries(model.confusion) : [];
  return h("div", {},
    table(["method", "AC@1", "AC@3", "node AC@1", "macro-F1"], [row("model", e.model), row("statistical", e.statistical), row("Dummy", e.dummy)], `${e.cases} held-out cases`),
    types.length ? table(["type", "precision", "recall", "F1"], types.map(([t, p]) => [t, p.precision.toFixed(2), p.recall.toFixed(2), p.f1.toFixed(2)])) : null,
    conf.length ? table(["true \\ ranked first", "…"], conf.map(([t, m]) => [t, Object.entries(m).map(([k, v]) => `${k}: ${v}`).join(", ")]), "confusion") : null,
  );
}

export const training: Panel = {
  id: "training",
  title: "Training",
  mount(root) {
    const statsBox = h("section", { id: "tr-stats" });
    const casesBox = h("section", { id: "tr-cases" });
    const modelsBox = h("section", { id: "tr-models" });
    const jobBox = h("p", { id: "tr-job", role: "status" });
    const call = (what: string, f: (headers: Record<string, string>) => Promise<{ data?: unknown; error?: unknown; response: Response }>) =>
      act(what, async () => {
        await mutate(f);
        draw();
      });
    const train = () =>
      act("train", async () => {
        const r = await mutate((headers) => api.POST("/api/anomaly/train", { body: {}, headers }));
        for (;;) {
          const j = (await api.GET("/api/anomaly/train/{job}", { params: { path: { job: r.job } } })).data;
          if (!j) throw new Error("the job vanished");
          jobBox.textContent = `training ${Math.round(j.progress * 100)} %: ${j.message}`;
          if (j.state === "done") {
            draw();
            return `model ${j.model_id} trained and activated`;
          }
          if (j.state === "failed") throw new Error(j.message);
          await new Promise((res) => setTimeout(res, 500));
        }
      });
    root.append(
      h("div", { class: "controls" },
        h("button", { type: "button", id: "tr-normal-start", onclick: () => call("normal start", (headers) => api.POST("/api/training/normal/start", { headers })) }, "Start normal collection"),
        h("button", { type: "button", id: "tr-normal-stop", onclick: () => call("normal stop", (headers) => api.POST("/api/training/normal/stop", { headers })) }, "Stop normal collection"),
        h("button", { type: "button", id: "tr-collect", onclick: () => call("collect", (headers) => api.POST("/api/training/collect", { headers })) }, "Record every fault as a case"),
        h("button", { type: "button", id: "tr-collect-stop", onclick: () => call("stop collecting", (headers) => api.POST("/api/training/stop", { headers })) }, "Stop recording faults"),
        h("button", { type: "button", id: "tr-train", onclick: train }, "Train a model")),
      jobBox, h("h3", {}, "Collected data"), statsBox, h("h3", {}, "Cases"), casesBox, h("h3", {}, "Model versions"), modelsBox,
    );
    let alive = true;
    const draw = async () => {
      const [stats, cases, models] = await Promise.all([api.GET("/api/training/stats"), api.GET("/api/training/cases"), api.GET("/api/models")]);
      if (!alive) return;
      const s = stats.data;
      if (s) {
        const pct = Math.round(s.normal_ratio * 100);
        statsBox.replaceChildren(
          h("p", {}, `${s.total_samples} samples: ${s.normal_samples} normal, ${s.anomaly_samples} anomalous; ${s.normal_periods} normal periods, ${s.cases} cases. `,
            s.collecting_normal ? badge("normal collection running", "warn") : "", " ", s.collecting_cases ? badge("recording faults as cases", "warn") : ""),
          h("div", { class: `balance ${s.is_balanced ? "balanced" : "unbalanced"}`, role: "meter", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct, "aria-label": "normal share of the samples", id: "balance-bar" },
            h("span", { style: `width:${pct}%` }, `normal ${pct} %`), h("span", { style: `width:${100 - pct}%` }, `anomalous ${100 - pct} %`)),
          h("p", {}, s.is_balanced ? badge("balanced", "good") : badge("not balanced (the smaller share is under 30 %)", "bad")),
          table(["type", "samples"], Object.entries(s.per_type).map(([t, n]) => [t, n])),
        );
      }
      casesBox.replaceChildren(table(["case", "scenario", "types", "nodes", "start", "end"],
        (cases.data?.cases ?? []).slice(-30).reverse().map((c) => [c.case.id, c.case.scenario, c.case.types.join(", "), c.case.nodes.join(", "), time(c.case.start_ms), time(c.case.end_ms)])));
      const ms = models.data?.models ?? [];
      modelsBox.replaceChildren(...ms.slice().reverse().map((m) =>
        h("article", { class: "model", id: `model-${m.id}` },
          h("h4", {}, m.id, " ", m.active ? badge("active", "good") : badge("inactive", "none")),
          h("p", {}, `${time(m.created_ms)} from ${m.source}; types ${m.types.join(", ")}; ${m.train_cases} training cases, ${m.valid_cases} held out`,
            Object.keys(m.skipped).length ? h("span", {}, `; no classifier for ${Object.entries(m.skipped).map(([k, v]) => `${k} (${v})`).join(", ")}`) : ""),
          Object.keys(m.type_notes ?? {}).length ? h("p", { class: "type-notes" }, Object.entries(m.type_notes ?? {}).map(([k, v]) => `${k}: ${v}`).join("; ")) : null,
          m.evaluation_note ? h("p", {}, m.evaluation_note) : null,
          evaluation(m.evaluation),
          m.active ? null : h("button", { type: "button", onclick: () => call(`activate ${m.id}`, (headers) => api.POST("/api/models/{id}/activate", { params: { path: { id: m.id } }, headers })) }, `Activate ${m.id}`))),
        ms.length > 1 ? h("button", { type: "button", id: "tr-rollback", onclick: () => call("rollback", (headers) => api.POST("/api/models/rollback", { headers })) }, "Roll back to the previous model") : "");
    };
    draw();
    const t = setInterval(draw, 3000);
    return () => {
      alive = false;
      clearInterval(t);
    };
  },
};
