// The typed client of the coordinator's API (types generated from
// docs/openapi.json by openapi-typescript: a changed API breaks this
// build, not the user) and the bearer token, kept in this tab only.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema";

export type S = components["schemas"];
export const api = createClient<paths>({ baseUrl: location.origin });

const KEY = "distdiag-token";

// Reads carry the token too once there is one: a coordinator that listens
// beyond loopback wants a read (or admin) token for every GET under /api.
api.use({
  onRequest({ request }) {
    const t = sessionStorage.getItem(KEY);
    if (t && !request.headers.has("Authorization")) request.headers.set("Authorization", `Bearer ${t}`);
    return request;
  },
});

/** Asks for a token before the panels start when reads need one here
 * (the coordinator says so in /health, which is always open). */
export async function readAccess(): Promise<void> {
  const h = await api.GET("/health").catch(() => undefined);
  if (h?.data?.reads_need_token) await token();
}

/** An event stream's URL: EventSource sends no headers, so the token goes in the query. */
export function streamUrl(path: string): string {
  const t = sessionStorage.getItem(KEY);
  return t ? `${path}?access_token=${encodeURIComponent(t)}` : path;
}

function askToken(): Promise<string | null> {
  const dialog = document.getElementById("token-dialog") as HTMLDialogElement;
  const input = document.getElementById("token-input") as HTMLInputElement;
  const cancel = document.getElementById("token-cancel") as HTMLButtonElement;
  input.value = "";
  return new Promise((resolve) => {
    const done = (t: string | null) => {
      dialog.close();
      resolve(t);
    };
    cancel.onclick = () => done(null);
    dialog.onclose = () => resolve(dialog.returnValue === "ok" && input.value ? input.value.trim() : null);
    dialog.showModal();
    input.focus();
  });
}

/** The token, asked for once per tab (null when the user declines). */
export async function token(): Promise<string | null> {
  const t = sessionStorage.getItem(KEY);
  if (t) return t;
  const asked = await askToken();
  if (asked) sessionStorage.setItem(KEY, asked);
  return asked;
}

type Answer<T> = { data?: T; error?: unknown; response: Response };

/** Runs a mutating call with the token; asks again once after a 401. */
export async function mutate<T>(call: (headers: Record<string, string>) => Promise<Answer<T>>): Promise<T> {
  for (let attempt = 0; attempt < 2; attempt++) {
    const t = await token();
    if (!t) throw new Error("no token: nothing was changed");
    const r = await call({ Authorization: `Bearer ${t}` });
    if (r.response.status === 401) {
      sessionStorage.removeItem(KEY);
      continue;
    }
    return unwrap(r);
  }
  throw new Error("the token was refused");
}

/** The answer's data, or an Error with the API's own message. */
export function unwrap<T>(r: Answer<T>): T {
  if (r.data !== undefined && r.response.ok) return r.data;
  const e = r.error as { error?: string } | undefined;
  throw new Error(`${r.response.status}: ${e?.error ?? r.response.statusText}`);
}
