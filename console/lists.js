// #/suppressions?domain= and #/alerts: the suppression list and the alerts raised, paged.

import { api, downloadCsv, withQuery } from "./api.js";
import { address, announce, clear, messageLink, h, moreButton, problem, recipientHref, table, text, when, go } from "./dom.js";

export async function suppressionsView(params) {
  const domain = params.get("domain") || "";
  const path = (continuation) => withQuery("suppressions", { domain, limit: "50", continuation });
  const page = await api(path());
  const results = h("div", {});
  const more = h("div", { class: "actions" });
  const draw = (current, earlier) => {
    const items = [...earlier, ...current.suppressions];
    clear(results).append(
      table(
        "Suppressed addresses",
        ["Address", "Reason", "Since", "Expires"],
        items.map((s) => [
          h("a", { href: recipientHref(s.address), class: "addr" }, address(s.address)),
          text(s.reason),
          when(s.since),
          s.expiresAt ? when(s.expiresAt) : "never",
        ]),
        domain ? `No address at ${domain} is suppressed.` : "The suppression list is empty.",
      ),
    );
    moreButton(more, current.continuation, async (c) => draw(await api(path(c)), items), "More");
  };
  draw(page, []);
  const input = h("input", { id: "s-domain", value: domain, placeholder: "example.com", spellcheck: "false" });
  return h(
    "section",
    {},
    h("h1", {}, "Suppression list"),
    h(
      "form",
      {
        class: "filters card inline",
        onsubmit: (event) => {
          event.preventDefault();
          go(withQuery("#/suppressions", { domain: input.value.trim() }));
        },
      },
      h("div", {}, h("label", { for: "s-domain" }, "Recipient domain (empty: all)"), input),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Show")),
    ),
    h(
      "div",
      { class: "result-head" },
      h("p", { class: "muted" }, domain ? `Active suppressions at ${domain}.` : "Every active suppression."),
      h(
        "button",
        {
          type: "button",
          class: "link",
          onclick: async () => {
            try {
              await downloadCsv(withQuery("suppressions", { domain }), "suppressions.csv");
              announce("CSV export downloaded");
            } catch (error) {
              results.prepend(problem(error));
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

export async function alertsView(params) {
  const type = params.get("type") || "";
  const path = (continuation) => withQuery("alerts", { type, limit: "50", continuation });
  const page = await api(path());
  const results = h("div", {});
  const more = h("div", { class: "actions" });
  const draw = (current, earlier) => {
    const items = [...earlier, ...current.alerts];
    clear(results).append(
      table(
        "Alerts raised, newest first",
        ["Time", "Type", "Subject", "Message", "Domain", "Published"],
        items.map((a) => [
          when(a.time),
          h("span", { class: "alert-type" }, String(a.type || "").replace(/^AcsEmailInsights\./, "")),
          h("span", { class: "detail" }, text(a.subject)),
          a.messageId ? messageLink(a.messageId) : "—",
          text(a.recipientDomain),
          text(a.publishState),
        ]),
        "No alerts in the last 7 days.",
      ),
    );
    moreButton(more, current.continuation, async (c) => draw(await api(path(c)), items), "Older alerts");
  };
  draw(page, []);
  return h(
    "section",
    {},
    h("h1", {}, "Alerts"),
    h("p", { class: "muted" }, "Every alert this app raised in the last 7 days, and whether it reached the alerts topic."),
    results,
    more,
  );
}

