// The case list: every case, newest first, and the form that opens a new one.

import { api } from "./api.js";
import { badge, capitalise, field, formatTime, h, select, table, title } from "./dom.js";
import { announce, guarded, submitting } from "./messages.js";
import { reviewInbox, reviewsWaiting, showReviewCount } from "./review-inbox.js";

export const STATUSES = [
  ["open", "Open"],
  ["identified", "Identified"],
  ["closed", "Closed"],
];
const PAGE_SIZE = 50;

export async function caseListView(ctx) {
  ctx.setTitle("Cases");
  const filters = { status: "", number: "", offset: 0 };
  const listArea = h("div", {}, h("p", { class: "loading" }, "Loading cases…"));

  const refresh = async () => {
    const query = new URLSearchParams({ limit: PAGE_SIZE, offset: filters.offset });
    if (filters.status) query.set("status", filters.status);
    if (filters.number) query.set("number", filters.number);
    const page = await api(`/cases?${query}`);
    if (ctx.alive()) listArea.replaceChildren(caseTable(page, filters, guarded(refresh)));
  };

  const waiting = await reviewsWaiting();
  showReviewCount(waiting);
  ctx.root.replaceChildren(
    h("div", { class: "page-head" }, title(1, "Cases")),
    reviewInbox(waiting),
    h(
      "div",
      { class: "columns columns-wide" },
      h(
        "section",
        { class: "panel", "aria-labelledby": "cases-list-title" },
        h("h2", { id: "cases-list-title" }, "All cases"),
        caseFilters(filters, guarded(refresh)),
        listArea,
      ),
      newCaseForm(),
    ),
  );
  await refresh();
}

function caseFilters(filters, refresh) {
  const status = select([["", "Any status"], ...STATUSES]);
  const number = h("input", { type: "text", maxlength: 100, autocomplete: "off" });
  return h(
    "form",
    {
      class: "field-row",
      role: "search",
      "aria-label": "Filter cases",
      onSubmit: (event) => {
        event.preventDefault();
        Object.assign(filters, { status: status.value, number: number.value.trim(), offset: 0 });
        refresh();
      },
    },
    field("Status", status),
    field("Number (exact match)", number),
    h("div", { class: "field" }, h("button", { type: "submit", class: "button-quiet" }, "Filter")),
  );
}

function caseTable(page, filters, refresh) {
  const rows = page.items.map((item) =>
    h(
      "tr",
      {},
      h("td", { class: "nowrap" }, h("a", { href: `#/cases/${item.id}` }, item.number)),
      h("td", {}, badge(capitalise(item.status), item.status)),
      h("td", {}, shorten(item.description, 90)),
      h("td", { class: "nowrap" }, formatTime(item.created_at)),
    ),
  );
  const first = page.total === 0 ? 0 : page.offset + 1;
  const last = page.offset + page.items.length;
  const move = (offset) => () => {
    filters.offset = offset;
    refresh();
  };
  return h(
    "div",
    {},
    table(
      `Cases ${first}–${last} of ${page.total}, newest first`,
      ["Number", "Status", "Description", "Created"],
      rows,
      "No cases match. Create one with the form.",
    ),
    page.total > page.limit
      ? h(
          "div",
          { class: "actions" },
          h(
            "button",
            {
              type: "button",
              class: "button-quiet",
              disabled: page.offset === 0,
              onClick: move(Math.max(0, page.offset - page.limit)),
            },
            "Newer cases",
          ),
          h(
            "button",
            {
              type: "button",
              class: "button-quiet",
              disabled: last >= page.total,
              onClick: move(page.offset + page.limit),
            },
            "Older cases",
          ),
        )
      : null,
  );
}

function shorten(text, length) {
  if (!text) return "";
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

function newCaseForm() {
  const number = h("input", { type: "text", required: true, maxlength: 100, autocomplete: "off" });
  const description = h("textarea", { maxlength: 10000, rows: 4 });
  const submit = h("button", { type: "submit" }, "Create case");
  return h(
    "section",
    { class: "panel", "aria-labelledby": "new-case-title" },
    h("h2", { id: "new-case-title" }, "New case"),
    h(
      "form",
      {
        onSubmit: submitting(submit, async () => {
          const created = await api("/cases", {
            method: "POST",
            body: { number: number.value.trim(), description: description.value },
          });
          announce(`Case ${created.number} created`);
          location.hash = `#/cases/${created.id}`;
        }),
      },
      field("Case number", number, "The lab's reference for the unidentified person"),
      field("Description", description),
      submit,
    ),
  );
}
