// Diagnosis: the ranked (node, type) list with probability, excess and
// PageRank, each entry's top metrics linking to their charts, the node
// graph with its edge weights, and the recent history — live over SSE.
import { api, streamUrl, type S } from "../api";
import { h, num, table, time } from "../ui";
import type { Panel } from "../main";

function rankTable(r: S["Ranking"]) {
  return table(
    ["#", "node", "type", "score", "p", "excess", "PageRank", "top metrics"],
    r.ranks.map((e, i) => [
      i + 1,
      e.node,
      e.type,
      e.score.toFixed(4),
      e.probability.toFixed(3),
      (e.excess ?? 0).toFixed(3),
      e.pagerank.toFixed(3),
      h("span", {}, ...e.top_metrics.slice(0, 4).flatMap(([m, w], j) => [j ? ", " : "", h("a", { href: `#metrics?node=${encodeURIComponent(e.node)}&metric=${encodeURIComponent(m.split("|")[0])}`, title: `weight ${w.toFixed(3)}` }, m)])),
    ]),
    `${r.note} — window ending ${time(r.timestamp)}`,
  );
}

function graph(g: S["GraphAnswer"]): HTMLElement {
  const size = 360;
  const c = size / 2;
  const rad = size / 2 - 50;
  const pos = new Map(g.nodes.map((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, g.nodes.length) - Math.PI / 2;
    return [n.id, [c + rad * Math.cos(a), c + rad * Math.sin(a)] as [number, number]];
  }));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${size} ${size}`);
  svg.setAttribute("width", String(size));
  svg.setAttribute("height", String(size));
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `Node graph: ${g.nodes.length} nodes, ${g.edges.length} edges`);
  svg.setAttribute("id", "node-graph");
  const add = (tag: string, attrs: Record<string, string | number>, text?: string) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    svg.append(e);
  };
  for (const e of g.edges) {
    const [a, b] = [pos.get(e.source)!, pos.get(e.target)!];
    add("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1], "stroke-width": 1 + 5 * e.weight, class: "edge" });
    add("text", { x: (a[0] + b[0]) / 2, y: (a[1] + b[1]) / 2, class: "edge-w" }, e.weight.toFixed(2));
  }
  for (const n of g.nodes) {
    const [x, y] = pos.get(n.id)!;
    add("circle", { cx: x, cy: y, r: 10 + 40 * n.pagerank, class: n.score > 0 ? "gnode hot" : "gnode" });
    add("text", { x, y: y + 4, class: "gnode-l" }, n.id);
    add("text", { x, y: y + 22 + 40 * n.pagerank, class: "gnode-s" }, `PR ${n.pagerank.toFixed(2)}${n.type ? ` · ${n.type}` : ""}`);
  }
  return h("figure", {}, svg as unknown as HTMLElement, h("figcaption", {}, "Edge weight: mean |Pearson r| of the nodes' series in the window; circle size: PageRank"));
}

export const diagnosis: Panel = {
  id: "diagnosis",
  title: "Diagnosis",
  mount(root) {
    const current = h("section", { id: "ranking", "aria-live": "polite" }, "Waiting for a ranking…");
    const graphBox = h("section", { id: "graph" });
    const hist = h("section", { id: "rank-history" });
    const incidentsBox = h("section", { id: "incidents" });
    const liveNote = h("p", { id: "sse-state" });
    root.append(liveNote, current, h("h3", {}, "Incidents, last 24 hours"), incidentsBox, h("h3", {}, "Node graph"), graphBox, h("h3", {}, "Last 15 minutes"), hist);
    let alive = true;
    let incidentsAt = 0;
    const showLatest = (r: S["Ranking"]) => {
      current.replaceChildren(r.ranks.length ? rankTable(r) : h("p", {}, r.note));
    };
    const refresh = async () => {
      // Incidents read a day of stored rankings: once a minute is enough.
      const wantIncidents = Date.now() - incidentsAt > 60000;
      if (wantIncidents) incidentsAt = Date.now();
      const [g, hr, inc] = await Promise.all([
        api.GET("/api/anomaly/ranks/graph"),
        api.GET("/api/anomaly/ranks", { params: { query: { from: "-15m", limit: 1 } } }),
        wantIncidents ? api.GET("/api/anomaly/incidents", { params: { query: { from: "-24h" } } }) : Promise.resolve(null),
      ]);
      if (!alive) return;
      if (inc) {
        const incidents = inc.data ? inc.data.incidents : [];
        incidentsBox.replaceChildren(
          incidents.length
            ? table(["node", "type", "since", "until", "for", "rankings", "max p"], incidents.slice().reverse().map((i) => [
                i.node, i.type, time(i.start_ms), time(i.end_ms), `${Math.round((i.end_ms - i.start_ms) / 1000)} s`, String(i.rankings), i.max_probability.toFixed(2),
              ]))
            : h("p", {}, "No incident: no ranking named a node in the last 24 hours."),
        );
      }
      if (g.data) graphBox.replaceChildren(graph(g.data as S["GraphAnswer"]));
      const h15 = hr.data && "history" in hr.data ? (hr.data as S["RankHistory"]).history : [];
      hist.replaceChildren(table(["time", "method", "top", "p", "score"], h15.slice(-30).reverse().map((r) => {
        const t = r.ranks[0];
        return [time(r.timestamp), r.method ?? "–", t ? `${t.type} @ ${t.node}` : "–", t ? t.probability.toFixed(2) : "–", t ? num(t.score, 3) : "–"];
      })));
    };
    api.GET("/api/anomaly/ranks", { params: { query: { limit: 20 } } }).then((r) => r.data && "ranks" in r.data && showLatest(r.data as S["Ranking"]));
    refresh();
    const es = new EventSource(streamUrl("/api/anomaly/ranks/stream"));
    es.addEventListener("ranks", (ev) => {
      showLatest(JSON.parse((ev as MessageEvent).data));
      liveNote.textContent = `live: ranking at ${new Date().toLocaleTimeString()}`;
      refresh();
    });
    es.onerror = () => (liveNote.textContent = "live stream interrupted; retrying");
    return () => {
      alive = false;
      es.close();
    };
  },
};
