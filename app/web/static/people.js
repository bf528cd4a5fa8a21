// A person in the gallery: their record, their radiographs over time, and the searches in which
// they were a candidate.

import { api } from "./api.js";
import { compareHref, similarityCell } from "./case-page.js";
import {
  byVisit,
  capitalise,
  formatTime,
  h,
  imageWhat,
  imageWhen,
  separator,
  table,
  title,
} from "./dom.js";

const SEXES = { F: "Female", M: "Male", X: "Other / unknown" };

export async function personView(ctx) {
  const id = ctx.params.personId;
  const [person, appearances] = await Promise.all([
    api(`/people/${id}`),
    api(`/people/${id}/searches`),
  ]);
  ctx.setTitle(`Person ${person.external_ref}`);
  ctx.root.replaceChildren(
    h(
      "nav",
      { class: "breadcrumbs", "aria-label": "Breadcrumb" },
      h("a", { href: "#/cases" }, "Cases"),
      separator(),
    ),
    h("div", { class: "page-head" }, title(1, `Person ${person.external_ref}`)),
    record(person),
    radiographs(ctx, person),
    searches(appearances),
  );
}

function record(person) {
  const facts = [
    ["Reference", person.external_ref],
    ["Record id", String(person.id)],
    ["Sex", SEXES[person.sex] || "Not recorded"],
    ["Birth year", person.birth_year ? String(person.birth_year) : "Not recorded"],
    ["Added", formatTime(person.created_at)],
    ["Notes", person.notes || "None"],
  ];
  return h(
    "section",
    { class: "panel", "aria-labelledby": "record-title" },
    h("h2", { id: "record-title" }, "Record"),
    h(
      "dl",
      { class: "facts" },
      facts.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]),
    ),
  );
}

function radiographs(ctx, person) {
  const images = [...person.images].sort(byVisit);
  return h(
    "section",
    { class: "panel", "aria-labelledby": "images-title" },
    h("h2", { id: "images-title" }, `Radiographs over time (${images.length})`),
    images.length === 0
      ? h("p", { class: "empty" }, "No radiographs on record.")
      : h(
          "ul",
          { class: "gallery" },
          images.map((image) =>
            h(
              "li",
              {},
              h(
                "figure",
                {},
                ctx.scope.image(
                  `/images/${image.id}/preview.png?size=360`,
                  `${person.external_ref}, ${imageWhen(image).toLowerCase()}`,
                ),
                h(
                  "figcaption",
                  {},
                  h("strong", {}, imageWhen(image)),
                  h("br"),
                  capitalise(imageWhat(image)),
                  h("br"),
                  `${image.format.toUpperCase()}${image.pixel_spacing_mm ? `, ${image.pixel_spacing_mm} mm/pixel` : ""}`,
                  h("br"),
                  `Image #${image.id}, uploaded ${formatTime(image.uploaded_at)}`,
                ),
              ),
            ),
          ),
        ),
  );
}

function searches(appearances) {
  const rows = appearances.map((item) =>
    h(
      "tr",
      {},
      h("td", {}, formatTime(item.created_at)),
      h(
        "td",
        {},
        item.case_id === null
          ? h("span", { class: "muted" }, "Not in a case")
          : h(
              "a",
              { href: `#/cases/${item.case_id}` },
              `Case ${item.case_number}`,
            ),
      ),
      h("td", {}, `#${item.search_id}`),
      h("td", { class: "number" }, String(item.rank)),
      h("td", {}, similarityCell(item.similarity)),
      h(
        "td",
        {},
        item.case_id === null
          ? null
          : h(
              "a",
              {
                class: "button button-quiet",
                href: compareHref(item.case_id, item.search_id, item.rank),
              },
              "Compare",
              h("span", { class: "visually-hidden" }, ` in search #${item.search_id}`),
            ),
      ),
    ),
  );
  return h(
    "section",
    { class: "panel", "aria-labelledby": "appearances-title" },
    h("h2", { id: "appearances-title" }, "Searches they appeared in"),
    table(
      "Searches with this person among the candidates, newest first",
      [
        "Searched",
        "Case",
        "Search",
        { text: "Rank", class: "number" },
        "Similarity",
        h("span", { class: "visually-hidden" }, "Actions"),
      ],
      rows,
      "This person has not been a candidate in any search.",
    ),
  );
}
