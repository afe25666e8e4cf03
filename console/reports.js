// #/reports?window=24h|7d|30d: deliverability as pictures, drawn from /api/reports/deliverability
// and /api/reports/failures. Charts are inline SVG built node by node (no library, nothing from
// another origin); every number drawn is also there as text (labels, role="img" names, tables).

import { api, withQuery } from "./api.js";
import { duration, h, svg, tableIn, text } from "./dom.js";

const WINDOWS = {
  "24h": { label: "Last 24 hours", hours: 24, series: "hour" },
  "7d": { label: "Last 7 days", hours: 7 * 24, series: "hour" },
  "30d": { label: "Last 30 days", hours: 30 * 24, series: "day" },
};
const DEFAULT_WINDOW = "24h";

// The stacked bar's parts, in the order drawn; together they are every recipient counted.
// ACS `Failed` is a soft outcome too (expired, mailbox full): drawn with the soft bounces.
const PARTS = [
  ["delivered", "Delivered", (g) => g.delivered],
  ["soft", "Soft bounce or failed", (g) => g.softBounced + g.failed],
  ["hard", "Hard bounce", (g) => g.hardBounced],
  ["spam", "Spam or quarantined", (g) => g.spamFiltered + g.quarantined],
  ["suppressed", "Suppressed (not sent)", (g) => g.suppressed],
  ["expanded", "Expanded (a list)", (g) => g.expanded],
];

const PROVIDERS = {
  google: "Google",
  microsoft: "Microsoft",
  yahoo: "Yahoo / AOL",
  apple: "Apple iCloud",
  gmx: "GMX / web.de",
  orange: "Orange",
  comcast: "Comcast",
  mimecast: "Mimecast",
  proofpoint: "Proofpoint",
  cisco: "Cisco",
  barracuda: "Barracuda",
  zoho: "Zoho",
  yandex: "Yandex",
  mailru: "Mail.ru",
  proton: "Proton",
  other: "Other",
};

export function percent(rate) {
  if (rate === null || rate === undefined) return "—";
  const n = Math.round(rate * 1000) / 10;
  return `${Number.isInteger(n) ? n : n.toFixed(1)} %`;
}

export async function reportsView(params) {
  const key = Object.hasOwn(WINDOWS, params.get("window")) ? params.get("window") : DEFAULT_WINDOW;
  const win = WINDOWS[key];
  const to = new Date();
  const from = new Date(to.getTime() - win.hours * 3600 * 1000);
  const range = { from: from.toISOString(), to: to.toISOString() };
  const [providers, series, failures] = await Promise.all([
    api(withQuery("reports/deliverability", { ...range, groupBy: "mailboxProvider", limit: "12" })),
    api(withQuery("reports/deliverability", { ...range, groupBy: win.series })),
    api(withQuery("reports/failures", { ...range, limit: "8" })),
  ]);
  return h(
    "section",
    { class: "reports" },
    h(
      "div",
      { class: "result-head" },
      h("h1", {}, "Deliverability"),
      windowPicker(key),
    ),
    h(
      "p",
      { class: "muted" },
      `${win.label}: `,
      when(providers.from),
      " to ",
      when(providers.to),
      ". Each recipient counts once, in the hour of its outcome.",
    ),
    headline(providers.totals, providers.sloMinutes),
    h(
      "div",
      { class: "report-grid" },
      providerChart(providers),
      failureChart(failures),
      latencyChart(series, providers.sloMinutes, win),
    ),
  );
}

function when(iso) {
  return h("time", { datetime: iso }, utc(iso, true));
}

// "2026-03-04 10:00 UTC" (the console shows UTC everywhere).
function utc(iso, withZone = false) {
  const text = new Date(iso).toISOString().slice(0, 16).replace("T", " ");
  return withZone ? `${text} UTC` : text;
}

function windowPicker(current) {
  return h(
    "nav",
    { class: "segmented", "aria-label": "Time window" },
    Object.entries(WINDOWS).map(([key, win]) =>
      h(
        "a",
        { href: `#/reports?window=${key}`, "aria-current": key === current ? "true" : null },
        win.label,
      ),
    ),
  );
}

function headline(totals, sloMinutes) {
  const tiles = [
    ["Recipients", String(totals.recipients), "recipients"],
    ["Delivered", percent(totals.deliveryRate), "deliveryRate"],
    ["Hard bounces", percent(totals.hardBounceRate), "hardBounceRate"],
    ["Spam filtered", percent(totals.spamRate), "spamRate"],
    ["Median delivery time", duration(totals.latencyMs.p50), "p50"],
    [`Delivered within ${sloMinutes} min`, percent(totals.withinSlo), "withinSlo"],
  ];
  return h(
    "dl",
    { class: "tiles" },
    tiles.map(([label, value, name]) =>
      h("div", { "data-stat": name }, h("dt", {}, label), h("dd", {}, value)),
    ),
  );
}

function card(id, title, intro, ...children) {
  return h(
    "section",
    { class: `card chart ${id}`, "aria-labelledby": `${id}-title` },
    h("h2", { id: `${id}-title` }, title),
    intro ? h("p", { class: "muted chart-intro" }, intro) : null,
    ...children,
  );
}

function legend(items) {
  return h(
    "ul",
    { class: "legend", "aria-hidden": "true" }, // the same words are in every bar's name
    items.map(([cls, label]) => h("li", {}, h("span", { class: `swatch ${cls}` }), label)),
  );
}

function numbers(caption, columns, rows) {
  return h(
    "details",
    { class: "numbers" },
    h("summary", {}, "The numbers"),
    // may scroll sideways inside its card: focusable, so a keyboard can scroll it too
    tableIn(
      { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption },
      caption,
      columns,
      rows,
    ),
  );
}

// (a) One 100 % bar per mailbox provider: what share of its recipients ended how.
function providerChart(report) {
  const groups = report.groups.filter((g) => g.recipients > 0);
  const title = "Outcomes by mailbox provider";
  if (!groups.length) return card("providers", title, null, h("p", { class: "empty" }, "No outcomes in this window."));
  const present = PARTS.filter(([, , count]) => groups.some((g) => count(g) > 0));
  const rows = groups.map((g) => {
    const name = PROVIDERS[g.key] ?? g.key;
    const parts = present.map(([cls, label, count]) => [cls, label, count(g)]);
    const summary = parts
      .filter(([, , n]) => n > 0)
      .map(([, label, n]) => `${label.toLowerCase()} ${n} (${percent(n / g.recipients)})`)
      .join(", ");
    let x = 0;
    const rects = [];
    for (const [cls, label, n] of parts) {
      if (!n) continue;
      const w = (n / g.recipients) * 100;
      rects.push(
        svg(
          "rect",
          { class: `part ${cls}`, x: x.toFixed(3), y: 0, width: w.toFixed(3), height: 10, "data-count": n },
          svg("title", {}, `${label}: ${n} of ${g.recipients} (${percent(n / g.recipients)})`),
        ),
      );
      x += w;
    }
    return h(
      "li",
      { class: "hbar", "data-key": g.key },
      h("span", { class: "hbar-label" }, name),
      svg(
        "svg",
        {
          class: "hbar-bar",
          viewBox: "0 0 100 10",
          preserveAspectRatio: "none",
          role: "img",
          "aria-label": `${name}: ${g.recipients} recipients; ${summary}`,
        },
        rects,
      ),
      h(
        "span",
        { class: "hbar-value" },
        h("strong", { class: "rate" }, percent(g.deliveryRate)),
        " delivered",
        h("span", { class: "muted" }, ` · ${g.recipients} sent`),
      ),
    );
  });
  return card(
    "providers",
    title,
    "Each bar is 100 % of the recipients at that provider.",
    legend(present.map(([cls, label]) => [cls, label])),
    h("ul", { class: "hbars" }, rows),
    numbers(
      title,
      ["Provider", "Recipients", "Delivered", "Soft / failed", "Hard", "Spam / quarantined", "Suppressed", "Delivery rate", "Hard bounce rate", "Spam rate"],
      groups.map((g) => [
        PROVIDERS[g.key] ?? g.key,
        g.recipients,
        g.delivered,
        g.softBounced + g.failed,
        g.hardBounced,
        g.spamFiltered + g.quarantined,
        g.suppressed,
        percent(g.deliveryRate),
        percent(g.hardBounceRate),
        percent(g.spamRate),
      ]),
    ),
  );
}

// (c) The top failure reasons, longest bar for the most frequent, what it means and what to do.
function failureChart(report) {
  const title = "Top failure reasons";
  if (!report.reasons.length) return card("failures", title, null, h("p", { class: "empty" }, "No failures in this window."));
  const most = Math.max(...report.reasons.map((r) => r.count));
  return card(
    "failures",
    title,
    `${report.failures} failed recipient${report.failures === 1 ? "" : "s"} in this window, by the classifier's reason.`,
    h(
      "ol",
      { class: "reasons" },
      report.reasons.map((r) =>
        h(
          "li",
          { class: "reason", "data-reason": r.reason },
          h(
            "div",
            { class: "reason-head" },
            h("h3", {}, h("code", {}, r.reason)),
            r.bounceType ? h("span", { class: `badge ${r.bounceType === "hard" ? "s-bounced" : "s-failed"}` }, r.bounceType) : null,
            h("span", { class: "reason-count" }, h("strong", {}, String(r.count)), ` · ${percent(r.share)}`),
          ),
          svg(
            "svg",
            {
              class: "reason-bar",
              viewBox: "0 0 100 10",
              preserveAspectRatio: "none",
              role: "img",
              "aria-label": `${r.reason}: ${r.count} recipients, ${percent(r.share)} of failures`,
            },
            svg("rect", { class: "track", x: 0, y: 0, width: 100, height: 10 }),
            svg(
              "rect",
              {
                class: `part ${r.bounceType === "hard" ? "hard" : "soft"}`,
                x: 0,
                y: 0,
                width: ((r.count / most) * 100).toFixed(3),
                height: 10,
              },
              svg("title", {}, `${r.reason}: ${r.count} (${percent(r.share)} of failures)`),
            ),
          ),
          h("p", { class: "explanation" }, text(r.explanation)),
          r.action ? h("p", { class: "action" }, h("strong", {}, "What to do: "), r.action) : null,
          reasonDetails(r),
        ),
      ),
    ),
  );
}

// Example codes ("-" stands for none: ACS reports without an SMTP reply) and domains hit.
function reasonDetails(r) {
  const codes = (r.enhancedCodes || []).filter((c) => c.code && c.code !== "-");
  const domains = r.recipientDomains || [];
  const parts = [];
  if (codes.length) parts.push(`Codes ${codes.map((c) => `${c.code} ×${c.count}`).join(", ")}`);
  if (domains.length) parts.push(`Domains ${domains.map((d) => `${d.domain} ×${d.count}`).join(", ")}`);
  return parts.length ? h("p", { class: "muted small" }, parts.join(" · ")) : null;
}

// (b) Delivery time per hour (or day): p90 as the pale bar, p50 as the dark one inside it, and
// below them the share delivered within the SLO. Drawn at the box's own width (text stays
// legible on a phone) and again when that width changes.
function latencyChart(report, sloMinutes, win) {
  const periods = report.groups;
  const per = win.series === "hour" ? "hour" : "day";
  const title = `Delivery time by ${per}`;
  const withData = periods.filter((p) => p.latencyMs.p50 !== null);
  const t = report.totals;
  const desc = withData.length
    ? `Median ${duration(t.latencyMs.p50)}, 90th percentile ${duration(t.latencyMs.p90)} over the window; ` +
      `${percent(t.withinSlo)} delivered within ${sloMinutes} min. ` +
      `${withData.length} of ${periods.length} ${per}s had deliveries; ` +
      `slowest p90 ${duration(Math.max(...withData.map((p) => p.latencyMs.p90)))}.`
    : "No deliveries of mail sent through this app in this window.";
  const holder = h("div", { class: "plot" });
  const chart = card(
    "latency",
    title,
    `Time from send to delivered, for recipients delivered in each ${per}. The SLO is ${sloMinutes} min.`,
    legend([
      ["p50", "Median (p50)"],
      ["p90", "90th percentile (p90)"],
      ["slo", `Share delivered within ${sloMinutes} min`],
    ]),
    holder,
    numbers(
      title,
      [per === "hour" ? "Hour (UTC)" : "Day (UTC)", "Recipients", "Delivered", "p50", "p90", "p99", `Within ${sloMinutes} min`],
      periods
        .filter((p) => p.recipients > 0)
        .map((p) => [
          per === "hour" ? utc(p.key) : p.key.slice(0, 10),
          p.recipients,
          p.delivered,
          duration(p.latencyMs.p50),
          duration(p.latencyMs.p90),
          duration(p.latencyMs.p99),
          percent(p.withinSlo),
        ]),
    ),
  );
  let drawnWidth = 0;
  const observer = new ResizeObserver(() => {
    if (!holder.isConnected) {
      observer.disconnect();
      return;
    }
    const width = Math.floor(holder.clientWidth);
    if (width < 40 || width === drawnWidth) return; // the height is fixed in CSS: no loop
    drawnWidth = width;
    holder.replaceChildren(drawLatency(periods, sloMinutes, per, width, title, desc));
  });
  observer.observe(holder);
  return chart;
}

const NICE_MS = [
  50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 15000, 30000, 60000, 120000, 300000, 600000,
  900000, 1800000, 3600000, 7200000, 14400000, 43200000, 86400000,
];

function drawLatency(periods, sloMinutes, per, width, title, desc) {
  const height = 236;
  const left = 58;
  const right = 18;
  const top = 12;
  const plotBottom = 150;
  const stripTop = 166;
  const stripBottom = 198;
  const labelY = 222;
  const plotW = width - left - right;
  const slot = plotW / Math.max(periods.length, 1);
  const sloMs = sloMinutes * 60000;
  const highest = Math.max(0, ...periods.map((p) => p.latencyMs.p90 ?? 0));
  // Show the SLO line when it is near the data; a far-off SLO would flatten every bar.
  const span = sloMs <= highest * 2 ? Math.max(highest, sloMs) : highest;
  const step = NICE_MS.find((s) => span / s <= 4) ?? NICE_MS.at(-1);
  const max = Math.max(step, Math.ceil(span / step) * step);
  const y = (ms) => plotBottom - (ms / max) * (plotBottom - top);
  const id = `latency-${width}`;
  const parts = [
    svg("title", { id: `${id}-t` }, title),
    svg("desc", { id: `${id}-d` }, desc),
  ];
  for (let v = 0; v <= max; v += step) {
    parts.push(
      svg("line", { class: "grid", x1: left, x2: width - right, y1: y(v), y2: y(v) }),
      svg("text", { class: "axis", x: left - 6, y: y(v) + 4, "text-anchor": "end" }, v === 0 ? "0" : duration(v)),
    );
  }
  if (sloMs <= max) {
    parts.push(
      svg("line", { class: "slo-line", x1: left, x2: width - right, y1: y(sloMs), y2: y(sloMs) }),
      svg("text", { class: "axis slo-label", x: width - right, y: y(sloMs) - 4, "text-anchor": "end" }, `SLO ${sloMinutes} min`),
    );
  }
  parts.push(
    svg("rect", { class: "strip-track", x: left, y: stripTop, width: plotW, height: stripBottom - stripTop }),
    svg("text", { class: "axis", x: left - 6, y: stripBottom - 2, "text-anchor": "end" }, `≤ ${sloMinutes} min`),
    svg("text", { class: "axis", x: left - 6, y: stripTop + 9, "text-anchor": "end" }, "100 %"),
  );
  const barW = Math.max(2, Math.min(28, slot * 0.72));
  const innerW = Math.max(1, barW * 0.5);
  periods.forEach((p, i) => {
    const cx = left + slot * (i + 0.5);
    const { p50, p90 } = p.latencyMs;
    if (p50 === null && p.withinSlo === null) return;
    const label = per === "hour" ? `${utc(p.key)} UTC` : p.key.slice(0, 10);
    const bars = [
      svg(
        "title",
        {},
        `${label}: ${p.delivered} delivered; p50 ${duration(p50)}, p90 ${duration(p90)}; ` +
          `${percent(p.withinSlo)} within ${sloMinutes} min`,
      ),
    ];
    if (p90 !== null) bars.push(svg("rect", { class: "p90", x: cx - barW / 2, y: y(p90), width: barW, height: plotBottom - y(p90) }));
    if (p50 !== null) bars.push(svg("rect", { class: "p50", x: cx - innerW / 2, y: y(p50), width: innerW, height: plotBottom - y(p50) }));
    if (p.withinSlo !== null) {
      const tall = (stripBottom - stripTop) * p.withinSlo;
      bars.push(svg("rect", { class: "slo", x: cx - barW / 2, y: stripBottom - tall, width: barW, height: tall }));
    }
    // an invisible full-height target so the tooltip is reachable on a thin bar
    bars.push(svg("rect", { class: "hit", x: left + slot * i, y: top, width: slot, height: stripBottom - top }));
    parts.push(svg("g", { class: "period", "data-key": p.key }, bars));
  });
  parts.push(svg("line", { class: "baseline", x1: left, x2: width - right, y1: plotBottom, y2: plotBottom }));
  for (const [i, text] of axisLabels(periods, per, slot)) {
    const x = Math.min(Math.max(left + slot * (i + 0.5), left + 18), width - right - 18);
    parts.push(svg("text", { class: "axis", x, y: labelY, "text-anchor": "middle" }, text));
  }
  return svg(
    "svg",
    {
      class: "latency-svg",
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-labelledby": `${id}-t`,
      "aria-describedby": `${id}-d`,
    },
    parts,
  );
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

// [index, text] of the periods labelled under the axis: whole hours of the clock (every 1, 2, 3,
// 4, 6 or 12 h) or midnights (a date), as many as fit ~70 px apart.
function axisLabels(periods, per, slot) {
  const out = [];
  const date = (d) => `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
  if (per === "hour") {
    const every = [1, 2, 3, 4, 6, 12, 24, 48, 72, 168].find((k) => k * slot >= 70) ?? 168;
    periods.forEach((p, i) => {
      const d = new Date(p.key);
      const hour = d.getUTCHours();
      if (every < 24 && hour % every === 0) {
        out.push([i, hour === 0 ? date(d) : `${String(hour).padStart(2, "0")}:00`]);
      } else if (every >= 24 && hour === 0 && Math.floor(d.getTime() / 86400000) % (every / 24) === 0) {
        out.push([i, date(d)]);
      }
    });
  } else {
    const every = [1, 2, 3, 5, 7, 10, 14, 30].find((k) => k * slot >= 70) ?? 30;
    periods.forEach((p, i) => {
      if ((periods.length - 1 - i) % every === 0) out.push([i, date(new Date(p.key))]);
    });
  }
  return out;
}
