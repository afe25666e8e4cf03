// #/recipients/{address}: the address's messages and its suppression state, with the
// reactivate / suppress actions (operator and reason asked for; the app audits them).

import { api, ApiError } from "./api.js";
import {
  announce,
  badge,
  clear,
  messageLink,
  facts,
  h,
  moreButton,
  problem,
  table,
  text,
  when,
} from "./dom.js";

const OPERATOR = "acs-email-insights.operator";

export async function recipientView(address) {
  const path = encodeURIComponent(address);
  const [history, state] = await Promise.all([
    api(`recipients/${path}/emails?limit=20`),
    api(`suppressions/${path}`).catch((error) => {
      if (error instanceof ApiError && error.status === 404) return null;
      throw error;
    }),
  ]);
  const suppression = h("section", { class: "card", "aria-labelledby": "supp-h" });
  drawSuppression(suppression, address, state);
  const rows = h("div", {});
  const more = h("div", { class: "actions" });
  drawHistory(rows, more, address, history, []);
  return h(
    "section",
    {},
    h("p", { class: "crumbs" }, h("a", { href: "#/activity" }, "Activity"), " / recipient"),
    h("h1", {}, h("span", { class: "addr" }, address)),
    suppression,
    h("h2", {}, "Messages, newest first"),
    rows,
    more,
  );
}

function drawHistory(rows, more, address, page, earlier) {
  const items = [...earlier, ...page.emails];
  clear(rows).append(
    table(
      `Messages sent to ${address}`,
      ["Time", "Status", "Reason", "Explanation", "Sender", "Message"],
      items.map((e) => [
        when(e.at),
        badge(e.status),
        text(e.reason),
        h("span", { class: "detail" }, text(e.explanation)),
        text(e.sender),
        messageLink(e.messageId),
      ]),
      "Nothing was sent to this address (that this app knows of).",
    ),
  );
  moreButton(
    more,
    page.continuation,
    async (continuation) => {
      const next = await api(
        `recipients/${encodeURIComponent(address)}/emails?limit=20&continuation=${encodeURIComponent(continuation)}`,
      );
      drawHistory(rows, more, address, next, items);
    },
    "Older messages",
  );
}

function drawSuppression(box, address, state) {
  const suppressed = state?.status === "suppressed";
  clear(box).append(
    h(
      "header",
      { class: "card-head" },
      h("h2", { id: "supp-h" }, "Suppression list"),
      badge(suppressed ? "suppressed" : "active"),
    ),
    state
      ? facts([
          ["Reason", text(state.reason)],
          ["Origin", text(state.origin)],
          ["Since", when(state.firstSeen)],
          ["Expires", state.expiresAt ? when(state.expiresAt) : "never"],
          ["Reactivated", when(state.reactivatedAt)],
        ])
      : h("p", {}, "This address has never been on the suppression list: sends go out."),
    actionForm(box, address, suppressed),
    state?.audit?.length
      ? h(
          "details",
          { class: "audit" },
          h("summary", {}, `Audit trail (${state.audit.length})`),
          table(
            `Suppression audit trail of ${address}`,
            ["Time", "Action", "Reason", "By"],
            state.audit.map((a) => [when(a.at), a.action, text(a.reason), text(a.origin)]),
          ),
        )
      : null,
  );
}

function actionForm(box, address, suppressed) {
  const verb = suppressed ? "Reactivate" : "Suppress";
  const operator = h("input", {
    id: "op-name",
    name: "operator",
    autocomplete: "name",
    maxlength: 256,
    value: sessionStorage.getItem(OPERATOR) || "",
    required: true,
  });
  const reason = h("input", {
    id: "op-reason",
    name: "reason",
    maxlength: 256,
    required: !suppressed,
  });
  const outcome = h("div", {});
  const form = h(
    "form",
    {
      class: "op-form",
      onsubmit: async (event) => {
        event.preventDefault();
        sessionStorage.setItem(OPERATOR, operator.value.trim());
        const body = { operator: operator.value.trim() };
        if (reason.value.trim()) body.reason = reason.value.trim();
        try {
          const state = await api(`suppressions/${encodeURIComponent(address)}`, {
            method: suppressed ? "DELETE" : "PUT",
            body,
          });
          drawSuppression(box, address, state);
          announce(suppressed ? `${address} reactivated` : `${address} suppressed`);
          box.querySelector("h2").focus?.();
        } catch (error) {
          clear(outcome).append(problem(error));
        }
      },
    },
    h("h3", {}, `${verb} this address`),
    h(
      "p",
      { class: "muted" },
      suppressed
        ? "Take it off the list when the recipient confirms the mailbox works again."
        : "Stop every send to it (for example when the recipient asks).",
      " Your name and reason go into the audit trail",
      " (with App Service Authentication on, your signed-in name is recorded instead).",
    ),
    h(
      "div",
      { class: "fields" },
      h("div", {}, h("label", { for: "op-name" }, "Operator"), operator),
      h(
        "div",
        {},
        h("label", { for: "op-reason" }, suppressed ? "Reason (optional)" : "Reason"),
        reason,
      ),
    ),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: suppressed ? "primary" : "danger" }, verb),
    ),
    outcome,
  );
  return form;
}
