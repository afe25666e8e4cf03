// The console's router: the address bar's #/… is the state, so every view is a deep link a
// support person can paste into a ticket.

import { adoptKeyFromAddress, api, hasKey, setKey } from "./api.js";
import { activityView } from "./activity.js";
import { clear, emailHref, go, h, problem, recipientHref, spinner } from "./dom.js";
import { alertsView, suppressionsView } from "./lists.js";
import { explainView } from "./explain.js";
import { messageView } from "./message.js";
import { recipientView } from "./recipient.js";
import { reportsView } from "./reports.js";

const ROUTES = [
  [/^emails\/(.+)$/, "activity", (m, q) => messageView(decodeURIComponent(m[1]), q)],
  [/^recipients\/(.+)$/, "activity", (m, q) => recipientView(decodeURIComponent(m[1]), q)],
  [/^message-ids\/(.+)$/, "activity", (m) => messageIdView(decodeURIComponent(m[1]))],
  [/^activity$/, "activity", (m, q) => activityView(q)],
  [/^reports$/, "reports", (m, q) => reportsView(q)],
  [/^suppressions$/, "suppressions", (m, q) => suppressionsView(q)],
  [/^alerts$/, "alerts", (m, q) => alertsView(q)],
  [/^explain$/, "explain", (m, q) => explainView(q)],
];

let generation = 0; // a view that finishes after the user moved on must not draw

async function render() {
  const main = document.getElementById("main");
  const mine = ++generation;
  const raw = window.location.hash.replace(/^#\/?/, "");
  if (raw === "main") return; // the skip link
  const [path, search] = raw.split(/\?(.*)/s);
  const query = new URLSearchParams(search || "");
  const route = ROUTES.find(([pattern]) => pattern.test(path));
  if (!route) {
    history.replaceState(history.state, "", "#/activity");
    return render();
  }
  const [pattern, tab, view] = route;
  for (const a of document.querySelectorAll("#tabs a")) {
    if (a.dataset.tab === tab) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  if (!hasKey()) {
    clear(main).append(keyForm());
    return;
  }
  clear(main).append(spinner());
  let content;
  try {
    content = await view(pattern.exec(path), query);
  } catch (error) {
    if (error.status === 401) {
      clear(main).append(keyForm(error.message));
      return;
    }
    content = h("section", {}, h("h1", {}, "Could not load this view"), problem(error));
  }
  if (mine !== generation) return;
  clear(main).append(content);
  const heading = main.querySelector("h1");
  document.title = `${heading ? heading.textContent : "Console"} · Email support console`;
  main.focus({ preventScroll: true });
}

function keyForm(message) {
  const input = h("input", {
    id: "key",
    type: "password",
    autocomplete: "off",
    required: true,
    "aria-describedby": "key-help",
  });
  const form = h(
    "form",
    {
      class: "card narrow",
      onsubmit: (event) => {
        event.preventDefault();
        setKey(input.value);
        render();
      },
    },
    h("h1", {}, "Function key"),
    message ? h("div", { class: "problem", role: "alert" }, message) : null,
    h(
      "p",
      { id: "key-help" },
      "The console reads everything through the app's API, which needs a function key. ",
      "It is kept in this tab only (sessionStorage) and sent in the x-functions-key header.",
    ),
    h("label", { for: "key" }, "Function key"),
    input,
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Open the console")),
  );
  return form;
}

// The box in the header: a message id, an address, or the Message-ID header ACS reported
// (`<…@…>`; without brackets it looks like an address, so that is tried as a Message-ID first).
async function find(event) {
  event.preventDefault();
  const input = document.getElementById("find-input");
  const value = input.value.trim();
  if (!value) return;
  input.value = "";
  if (value.startsWith("<") || (value.includes("@") && !hasKey())) {
    go(`#/message-ids/${encodeURIComponent(value)}`);
  } else if (value.includes("@")) {
    try {
      const found = await api(`emails?internetMessageId=${encodeURIComponent(value)}`);
      go(emailHref(found.messages[0].messageId));
    } catch {
      go(recipientHref(value));
    }
  } else {
    go(emailHref(value));
  }
}

// #/message-ids/<…>: the message a Message-ID belongs to (a deep link for a pasted header).
async function messageIdView(value) {
  const found = await api(`emails?internetMessageId=${encodeURIComponent(value)}`);
  if (found.messages.length === 1) {
    history.replaceState(history.state, "", emailHref(found.messages[0].messageId));
    return messageView(found.messages[0].messageId, new URLSearchParams());
  }
  return h(
    "section",
    {},
    h("h1", {}, "Messages with this Message-ID"),
    h("p", {}, h("code", {}, found.internetMessageId)),
    h(
      "ul",
      {},
      found.messages.map((m) => h("li", {}, h("a", { href: emailHref(m.messageId) }, m.messageId))),
    ),
  );
}

adoptKeyFromAddress();
document.getElementById("find").addEventListener("submit", find);
window.addEventListener("hashchange", render);
if (!window.location.hash || window.location.hash === "#/") {
  history.replaceState(history.state, "", "#/activity");
}
render();
