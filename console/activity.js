// #/activity?since=&until=&status=&senderDomain=&recipientDomain=&tag=: recent outcomes,
// newest first. The filters live in the address, so a search is a link to paste in a ticket.

import { api, downloadCsv, withQuery } from "./api.js";
import { address, announce, badge, clear, messageLink, h, moreButton, problem, recipientHref, table, text, when, go } from "./dom.js";
import { tagList } from "./message.js";

const STATUSES = [
  ["", "Any status"],
  ["failures", "Any failure"],
  ["delivered", "Delivered"],
  ["bounced", "Bounced"],
  ["failed", "Failed"],
  ["suppressed", "Suppressed"],
  ["spam_filtered", "Spam filtered"],
  ["quarantined", "Quarantined"],
  ["expanded", "Expanded"],
  ["unknown", "Unknown"],
];
const FILTERS = ["since", "until", "status", "senderDomain", "recipientDomain", "tag"];
const HOUR = 3600 * 1000;

function range(hours, status) {
  const now = Date.now();
  const query = {
    since: new Date(now - hours * HOUR).toISOString(),
    until: new Date(now).toISOString(),
    status,
  };
  return withQuery("#/activity", query);
}

export async function activityView(params) {
  const query = Object.fromEntries(FILTERS.map((k) => [k, params.get(k) || ""]));
  const size = params.get("limit") || "50"; // page size; a link may ask for smaller pages
  const results = h("div", {});
  const more = h("div", { class: "actions" });
  const page = await api(withQuery("emails", { ...query, limit: size }));
  drawRows(results, more, { ...query, limit: size }, page, []);
  return h(
    "section",
    {},
    h("h1", {}, "Activity"),
    h(
      "p",
      { class: "quick" },
      h("button", { type: "button", class: "danger", onclick: () => go(range(1, "failures")) }, "Last hour of failures"),
      h("button", { type: "button", onclick: () => go(range(1, "")) }, "Last hour"),
      h("button", { type: "button", onclick: () => go(range(24, "failures")) }, "Failures, last 24 h"),
      h("button", { type: "button", onclick: () => go(range(24 * 7, "")) }, "Last 7 days"),
    ),
    filterForm(query),
    h(
      "div",
      { class: "result-head" },
      h("p", { class: "muted" }, windowText(query)),
      h(
        "button",
        {
          type: "button",
          class: "link",
          onclick: async (event) => {
            event.target.disabled = true;
            try {
              await downloadCsv(withQuery("emails", query), "email-activity.csv");
              announce("CSV export downloaded");
            } catch (error) {
              results.prepend(problem(error));
            } finally {
              event.target.disabled = false;
            }
          },
        },
        "Export CSV",
      ),
    ),
    results,
    more,
  );
}

function windowText(query) {
  const from = query.since ? new Date(query.since) : null;
  const to = query.until ? new Date(query.until) : null;
  if (!from && !to) return "The last 24 hours, newest first.";
  const fmt = (d) => d.toISOString().replace("T", " ").slice(0, 16) + " UTC";
  return `From ${from ? fmt(from) : "24 h before the end"} to ${to ? fmt(to) : "now"}, newest first.`;
}

function drawRows(results, more, query, page, earlier) {
  const items = [...earlier, ...page.emails];
  clear(results).append(
    table(
      "Recipient outcomes, newest first",
      ["Time", "Recipient", "Status", "Reason", "Detail", "Sender", "Tags", "Message"],
      items.map((e) => [
        when(e.at),
        h("a", { href: recipientHref(e.recipient), class: "addr" }, address(e.recipient)),
        badge(e.status),
        text(e.reason),
        h("span", { class: "detail clip" }, text(e.detail)),
        h("span", { class: "addr" }, e.sender ? address(e.sender) : "—"),
        Object.keys(e.tags || {}).length ? tagList(Object.entries(e.tags)) : "—",
        messageLink(e.messageId),
      ]),
      "No outcomes match in this window.",
    ),
  );
  moreButton(
    more,
    page.continuation,
    async (continuation) => {
      const next = await api(withQuery("emails", { ...query, continuation }));
      drawRows(results, more, query, next, items);
      announce(`${next.emails.length} more outcomes`);
    },
    "Older outcomes",
  );
}

// datetime-local works in local time without a zone: shown and read back as such.
function toLocal(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

// An untouched field keeps its exact time (the input shows whole minutes only).
function fromLocal(value, original) {
  if (value && value === toLocal(original)) return original;
  return value ? new Date(value).toISOString() : "";
}

function field(id, label, input) {
  return h("div", {}, h("label", { for: id }, label), input);
}

function filterForm(query) {
  const since = h("input", { id: "f-since", type: "datetime-local", value: toLocal(query.since) });
  const until = h("input", { id: "f-until", type: "datetime-local", value: toLocal(query.until) });
  const status = h(
    "select",
    { id: "f-status" },
    STATUSES.map(([value, label]) =>
      h("option", { value, selected: value === query.status }, label),
    ),
  );
  const sender = h("input", { id: "f-sender", value: query.senderDomain, placeholder: "contoso.com", spellcheck: "false" });
  const recipient = h("input", { id: "f-recipient", value: query.recipientDomain, placeholder: "example.com", spellcheck: "false" });
  const tag = h("input", { id: "f-tag", value: query.tag, placeholder: "campaign=spring", spellcheck: "false" });
  return h(
    "form",
    {
      class: "filters card",
      onsubmit: (event) => {
        event.preventDefault();
        go(
          withQuery("#/activity", {
            since: fromLocal(since.value, query.since),
            until: fromLocal(until.value, query.until),
            status: status.value,
            senderDomain: sender.value.trim(),
            recipientDomain: recipient.value.trim(),
            tag: tag.value.trim(),
          }),
        );
      },
    },
    h(
      "div",
      { class: "fields" },
      field("f-since", "From (local time)", since),
      field("f-until", "To (local time)", until),
      field("f-status", "Status", status),
      field("f-sender", "Sender domain", sender),
      field("f-recipient", "Recipient domain", recipient),
      field("f-tag", "Tag", tag),
    ),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Search"),
      h("a", { href: "#/activity", class: "button-link" }, "Clear"),
    ),
  );
}
