// The keyed API, called with the function key this tab was given once. The key comes from
// ?code= on the first load (then removed from the address bar and history) or from the key
// form, lives in sessionStorage (this tab only, gone when it closes) and travels only in the
// x-functions-key header of same-origin requests: never in a URL, a link or a log line.

const KEY = "acs-email-insights.function-key";
// The API lives beside the console: /api/console/api.js → /api/
const BASE = new URL("../", import.meta.url);

export function adoptKeyFromAddress() {
  const url = new URL(window.location.href);
  const code = url.searchParams.get("code");
  if (code === null) return;
  if (code) sessionStorage.setItem(KEY, code);
  url.searchParams.delete("code");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
}

export const hasKey = () => Boolean(sessionStorage.getItem(KEY));
export const setKey = (value) => sessionStorage.setItem(KEY, value.trim());
export const forgetKey = () => sessionStorage.removeItem(KEY);

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function request(path, { method = "GET", body, accept = "application/json" } = {}) {
  const headers = { accept, "x-functions-key": sessionStorage.getItem(KEY) || "" };
  if (body !== undefined) headers["content-type"] = "application/json";
  return fetch(new URL(path, BASE), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin", // App Service Authentication's session cookie, when it is on
    cache: "no-store",
    redirect: "error",
  });
}

async function failure(resp) {
  if (resp.status === 401) {
    forgetKey();
    return new ApiError(401, { title: "The function key is missing or wrong." });
  }
  let problem = null;
  try {
    problem = await resp.json();
  } catch {
    problem = { title: `The app answered HTTP ${resp.status}.` };
  }
  return new ApiError(resp.status, problem);
}

export async function api(path, options) {
  const resp = await request(path, options);
  if (!resp.ok) throw await failure(resp);
  return resp.json();
}

// `path` with its query from an object, leaving out empty values.
export function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v) params.set(k, v);
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

// A CSV export, every page (the Link: rel="next" of each), saved as one file.
export async function downloadCsv(path, filename, maxPages = 50) {
  let next = path;
  const parts = [];
  for (let page = 0; next && page < maxPages; page += 1) {
    const resp = await request(next, { accept: "text/csv" });
    if (!resp.ok) throw await failure(resp);
    let body = await resp.text();
    if (page > 0) body = body.slice(body.indexOf("\n") + 1); // one header row
    parts.push(body);
    const link = /<\?([^>]*)>;\s*rel="next"/.exec(resp.headers.get("link") || "");
    next = link ? `${path.split("?")[0]}?${link[1]}` : null;
  }
  const url = URL.createObjectURL(new Blob(["\ufeff", ...parts], { type: "text/csv" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
