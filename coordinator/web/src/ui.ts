// Small DOM helpers: elements, numbers, times, messages.
type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | undefined>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === "function") e.addEventListener(k.replace(/^on/, ""), v);
    else if (v === true) e.setAttribute(k, "");
    else e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function num(v: number | null | undefined, digits = 1): string {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(digits) + " G";
  if (a >= 1e6) return (v / 1e6).toFixed(digits) + " M";
  if (a >= 1e4) return (v / 1e3).toFixed(digits) + " k";
  return v.toFixed(digits);
}

export function time(ms: number | null | undefined): string {
  if (!ms) return "–";
  return new Date(ms).toLocaleTimeString();
}

export function ago(ms: number | null | undefined): string {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

let toastTimer = 0;
/** A message for the user (and for screen readers, through role=status). */
export function say(text: string, bad = false) {
  const t = document.getElementById("toast")!;
  t.textContent = text;
  t.className = bad ? "bad" : "ok";
  clearTimeout(toastTimer);
  toastTimer = window.setTimeout(() => (t.textContent = ""), 8000);
}

/** Runs an action, saying what it did or why it failed. */
export async function act(what: string, f: () => Promise<string | void>) {
  try {
    const msg = await f();
    say(msg || `${what}: done`);
  } catch (e) {
    say(`${what}: ${(e as Error).message}`, true);
  }
}

/** A state as a word and a colour (colour is never the only signal). */
export function badge(word: string, kind: "good" | "warn" | "bad" | "none"): HTMLElement {
  return h("span", { class: `badge ${kind}` }, word);
}

export function table(head: string[], rows: Child[][], caption?: string): HTMLTableElement {
  return h(
    "table",
    {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, ...head.map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, ...rows.map((r) => h("tr", {}, ...r.map((c) => h("td", {}, c))))),
  );
}

export function field(label: string, input: HTMLElement, hint?: string): HTMLElement {
  const id = input.id || `f-${label.replace(/\W+/g, "-").toLowerCase()}-${Math.random().toString(36).slice(2, 7)}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", {}, hint) : null);
}
