// #/explain: paste a bounce (the status message of a report, or any SMTP reply) and get what
// it means and what to do. The text stays in the page: nothing is stored.

import { api, withQuery } from "./api.js";
import { clear, facts, h, problem, text } from "./dom.js";

export async function explainView() {
  const message = h("textarea", {
    id: "x-message",
    rows: 6,
    spellcheck: "false",
    placeholder: "550 5.1.1 <jane@example.com>: Recipient address rejected: User unknown",
  });
  const status = h("input", { id: "x-status", placeholder: "Bounced", spellcheck: "false" });
  const answer = h("div", { "aria-live": "polite" });
  const form = h(
    "form",
    {
      class: "card",
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          const result = await api(
            withQuery("explain", { message: message.value, status: status.value.trim() }),
          );
          clear(answer).append(explanation(result));
        } catch (error) {
          clear(answer).append(problem(error));
        }
      },
    },
    h("label", { for: "x-message" }, "Bounce text or SMTP reply"),
    message,
    h("label", { for: "x-status" }, "ACS status (optional: Bounced, Failed, Suppressed, …)"),
    status,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Explain")),
  );
  return h("section", {}, h("h1", {}, "Explain a bounce"), form, answer);
}

function explanation(c) {
  return h(
    "section",
    { class: "card" },
    h("h2", {}, c.reason ? `Reason: ${c.reason}` : "Delivered"),
    h("p", { class: "explanation" }, c.explanation),
    h("p", { class: "action" }, h("strong", {}, "What to do: "), c.action),
    facts([
      ["Bounce type", text(c.bounceType)],
      ["Retry can help", c.retryable ? "yes" : "no"],
      ["Suppresses the address", c.suppress ? "yes" : "no"],
      ["SMTP codes", text([c.smtpCode, c.enhancedCode].filter(Boolean).join(" "))],
      ["Rule", text(c.rule)],
    ]),
  );
}
