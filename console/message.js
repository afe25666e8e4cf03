// #/emails/{messageId}: one message, each recipient's outcome, engagement and timeline.

import { api } from "./api.js";
import { badge, duration, facts, h, recipientHref, table, text, when } from "./dom.js";

export async function messageView(messageId) {
  const view = await api(`emails/${encodeURIComponent(messageId)}`);
  const tags = Object.entries(view.tags || {});
  return h(
    "section",
    { class: "message" },
    h("p", { class: "crumbs" }, h("a", { href: "#/activity" }, "Activity"), " / message"),
    h("h1", {}, "Message ", h("code", { class: "id" }, view.messageId)),
    facts([
      ["Sender", text(view.sender)],
      ["Accepted", when(view.acceptedAt)],
      ["Send state", text(view.sendState ?? "sent outside this app")],
      ["Recipients", String(view.recipientCount)],
      ["Tags", tags.length ? tagList(tags) : "—"],
    ]),
    h("h2", {}, "Recipients"),
    view.recipients.map(recipientCard),
    view.unattributedEngagement
      ? h(
          "section",
          { class: "card" },
          h("h3", {}, "Engagement not tied to one recipient"),
          engagement(view.unattributedEngagement),
        )
      : null,
  );
}

export function tagList(tags) {
  return h(
    "ul",
    { class: "tags" },
    tags.map(([k, v]) => h("li", {}, h("span", { class: "tag" }, `${k}: ${v}`))),
  );
}

function recipientCard(r) {
  const codes = [r.smtpCode, r.enhancedCode].filter(Boolean).join(" ");
  return h(
    "article",
    { class: `card recipient s-border-${r.status}` },
    h(
      "header",
      { class: "card-head" },
      h("h3", {}, h("a", { href: recipientHref(r.address) }, r.address)),
      badge(r.status),
    ),
    r.explanation ? h("p", { class: "explanation" }, r.explanation) : null,
    r.action ? h("p", { class: "action" }, h("strong", {}, "What to do: "), r.action) : null,
    facts([
      ["Bounce type", text(r.bounceType)],
      ["Reason", text(r.reason)],
      ["SMTP codes", text(codes)],
      ["ACS status", text(r.acsStatus)],
      ["Accepted", when(r.acceptedAt)],
      ["Sent to ACS", when(r.sentAt)],
      ["Outcome at", when(r.finalAt)],
      ["Latency", duration(r.latencyMs)],
      ["Mail server", text(r.mailServer)],
      ["Message-ID", r.internetMessageId ? h("code", {}, r.internetMessageId) : "—"],
    ]),
    r.statusMessage
      ? h(
          "details",
          { class: "raw" },
          h("summary", {}, "Status message from the receiving server"),
          h("pre", {}, r.statusMessage),
        )
      : null,
    h("h4", {}, "Engagement"),
    engagement(r.engagement),
    h("h4", {}, "Timeline"),
    table(
      `Timeline for ${r.address}`,
      ["Time", "Event", "What", "Detail"],
      r.timeline.map((e) => [
        when(e.at),
        e.kind === "delivery" ? "delivery report" : "engagement",
        e.kind === "delivery" ? text(e.acsStatus) : text(e.engagementType),
        e.kind === "delivery"
          ? h("span", { class: "detail" }, text(e.statusMessage))
          : h("span", { class: "detail" }, text(e.context || e.userAgent)),
      ]),
      "No reports yet: ACS has not said anything about this recipient.",
    ),
  );
}

function engagement(e) {
  if (!e || (!e.opens && !e.clicks)) {
    return h("p", { class: "muted" }, "No opens or clicks recorded.");
  }
  return h(
    "div",
    {},
    facts([
      ["Opens", String(e.opens)],
      ["First open", when(e.firstOpenAt)],
      ["Clicks", String(e.clicks)],
      ["Last click", when(e.lastClickAt)],
      ["Last user agent", text(e.lastUserAgent)],
    ]),
    e.clickedUrls.length
      ? h(
          "ul",
          { class: "urls" },
          e.clickedUrls.map((u) => h("li", {}, h("code", {}, u.url), ` × ${u.clicks}`)),
        )
      : null,
  );
}
