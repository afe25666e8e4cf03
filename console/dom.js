// Every node the console shows is built here. Text always goes in as text (a text node or
// textContent), never through an HTML parser: bounce texts and addresses come from outside.

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "href") el.setAttribute("href", route(value));
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  add(el, children);
  return el;
}

// An SVG element (charts). Presentation goes in attributes and classes from console.css: the
// CSP (`style-src 'self'`) refuses style="…" attributes, not SVG attributes like `fill`.
const SVG_NS = "http://www.w3.org/2000/svg";
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false || name === "style") continue;
    el.setAttribute(name, value === true ? "" : String(value));
  }
  add(el, children);
  return el;
}

export function add(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

// Links only ever point inside the console: a data value can never become a javascript: URL.
function route(value) {
  const text = String(value);
  return text.startsWith("#/") || text === "#main" ? text : "#/";
}

export function link(hash, ...children) {
  return h("a", { href: hash }, ...children);
}

// An address that may wrap after its "@" (a <wbr>), not in the middle of a word.
export function address(value) {
  const text = String(value ?? "");
  const at = text.lastIndexOf("@");
  return at < 0 ? text : [text.slice(0, at + 1), h("wbr"), text.slice(at + 1)];
}

export const emailHref = (id) => `#/emails/${encodeURIComponent(id)}`;
export const recipientHref = (address) => `#/recipients/${encodeURIComponent(address)}`;

// A message id in a table: its first 8 characters shown, the whole id its accessible name.
export function messageLink(id) {
  const text = String(id ?? "");
  const short = text.length > 12;
  return h(
    "a",
    { href: emailHref(text), title: text, "aria-label": short ? text : null },
    h("code", { class: "id" }, short ? `${text.slice(0, 8)}…` : text),
  );
}

export function clear(el) {
  el.replaceChildren();
  return el;
}

const STATUS_LABELS = {
  accepted: "accepted",
  sent: "sent",
  delivered: "delivered",
  expanded: "expanded",
  bounced: "bounced",
  failed: "failed",
  suppressed: "suppressed",
  quarantined: "quarantined",
  spam_filtered: "spam filtered",
  unknown: "unknown",
  active: "not suppressed",
};

export function badge(status) {
  const known = Object.hasOwn(STATUS_LABELS, status) ? status : "unknown";
  return h("span", { class: `badge s-${known}` }, STATUS_LABELS[known] ?? String(status));
}

// "2026-03-04 10:15:30 UTC" in a <time>, with the local time as its tooltip.
export function when(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return h("span", {}, String(iso));
  const text = d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  return h("time", { datetime: d.toISOString(), title: `${d.toLocaleString()} (${ago(d)})` }, text);
}

export function ago(date) {
  const s = Math.round((Date.now() - date.getTime()) / 1000);
  if (Math.abs(s) < 60) return `${s} s ago`;
  if (Math.abs(s) < 3600) return `${Math.round(s / 60)} min ago`;
  if (Math.abs(s) < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

export function duration(ms) {
  if (ms === null || ms === undefined || ms === "") return "—";
  const n = Number(ms);
  if (n < 1000) return `${n} ms`;
  if (n < 120000) return `${(n / 1000).toFixed(1)} s`;
  if (n < 7200000) return `${Math.round(n / 60000)} min`;
  return `${(n / 3600000).toFixed(1)} h`;
}

export function text(value) {
  return value === null || value === undefined || value === "" ? "—" : String(value);
}

// A definition list from [label, value] pairs; values may be nodes.
export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs
      .filter(([, value]) => value !== undefined)
      .map(([label, value]) => h("div", {}, h("dt", {}, label), h("dd", {}, value ?? "—"))),
  );
}

// A table that turns into labelled cards on a narrow screen (each cell carries its column).
export function table(caption, columns, rows, empty = "Nothing to show.") {
  if (!rows.length) return h("p", { class: "empty" }, empty);
  return tableIn({ class: "table-wrap" }, caption, columns, rows);
}

// The same table in a wrapper with these attributes (e.g. a focusable scrolling region).
export function tableIn(wrapper, caption, columns, rows) {
  return h(
    "div",
    wrapper,
    h(
      "table",
      {},
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
      h(
        "tbody",
        {},
        rows.map((cells) =>
          h("tr", {}, cells.map((cell, i) => h("td", { "data-label": columns[i] }, cell))),
        ),
      ),
    ),
  );
}

// The next-page button of a paged list: `load(continuation)` draws the next page.
export function moreButton(more, continuation, load, label) {
  clear(more);
  if (!continuation) return;
  const onclick = async () => {
    try {
      await load(continuation);
    } catch (error) {
      more.append(problem(error));
    }
  };
  more.append(h("button", { type: "button", onclick }, label));
}

export function problem(error) {
  const items = (error.problem?.errors || []).map((e) => h("li", {}, `${e.field}: ${e.message}`));
  return h(
    "div",
    { class: "problem", role: "alert" },
    h("strong", {}, error.problem?.title || error.message || "Something went wrong"),
    items.length ? h("ul", {}, items) : null,
  );
}

export function announce(message) {
  const region = document.getElementById("status");
  if (region) region.textContent = message;
}

export function spinner(label = "Loading…") {
  return h("p", { class: "loading", "aria-busy": "true" }, label);
}

// Show `hash`: a new one through the address bar (so Back works), the same one drawn again.
export function go(hash) {
  if (window.location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else window.location.hash = hash;
}
