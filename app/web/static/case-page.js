// The case page: its details, searches with their ranked candidates, blind reviews (with
// sequential unmasking or without) and the conclusion history.

import { api, ImageScope } from "./api.js";
import { STATUSES } from "./cases.js";
import {
  badge,
  capitalise,
  field,
  formatSimilarity,
  formatTime,
  h,
  plural,
  select,
  separator,
  table,
  title,
  uid,
} from "./dom.js";
import { BOUNDED_MEANING, evidenceCell, openSetPanel } from "./evidence.js";
import { conclusionFindings, rankingNote } from "./findings.js";
import { showDone, submitting } from "./messages.js";
import { preventStrayDrops, searchPanel } from "./search-upload.js";

export function compareHref(caseId, searchId, rank) {
  return `#/cases/${caseId}/searches/${searchId}/compare/${rank}`;
}

/** The comparison under sequential unmasking names no rank: the reviewer is shown none. */
export const MASKED_RANK = 0;

/**
 * A search as the case page names it: its place in the case, oldest first, and its id, which the
 * service, the audit trail and the report use ("Search 3 (#11)").
 */
export function searchName(searches, searchId) {
  const place = searches.findIndex((search) => search.search_id === searchId) + 1;
  return place ? `Search ${place} (#${searchId})` : `Search #${searchId}`;
}

export async function caseView(ctx) {
  const caseId = ctx.params.caseId;
  const [detail, examiners, limits] = await Promise.all([
    api(`/cases/${caseId}`),
    api("/examiners"),
    api("/limits"),
  ]);
  const page = {
    ctx,
    caseId,
    detail,
    limits,
    names: new Map(examiners.map((key) => [key.id, key.name])),
    reviewers: examiners.filter((key) => key.id !== ctx.me.id && key.role === "examiner"),
    head: h("div", { class: "page-head" }),
    facts: h("dl", { class: "facts" }),
    searches: h("div"),
    history: h("div", { class: "conclusion-history" }),
  };
  page.reload = async () => {
    page.detail = await api(`/cases/${caseId}`);
    if (ctx.alive()) renderCase(page);
  };

  ctx.root.classList.add("case-page");
  ctx.root.replaceChildren(
    h(
      "nav",
      { class: "breadcrumbs", "aria-label": "Breadcrumb" },
      h("a", { href: "#/cases" }, "Cases"),
      separator(),
    ),
    page.head,
    h("div", { class: "columns" }, detailsPanel(page), searchPanel(page)),
    h(
      "section",
      { class: "panel", "aria-labelledby": "searches-title" },
      h("h2", { id: "searches-title" }, "Searches"),
      page.searches,
    ),
    h(
      "section",
      { class: "panel", "aria-labelledby": "history-title" },
      h("h2", { id: "history-title" }, "Conclusion history"),
      page.history,
    ),
  );
  renderCase(page);
  preventStrayDrops(ctx);
}

function renderCase(page) {
  const { detail } = page;
  page.ctx.setTitle(`Case ${detail.number}`);
  page.head.replaceChildren(
    title(1, `Case ${detail.number}`),
    badge(capitalise(detail.status), detail.status),
    reportButton(page),
    exportControl(page),
  );
  page.facts.replaceChildren(
    h("dt", {}, "Created"),
    h("dd", {}, formatTime(detail.created_at)),
    h("dt", {}, "Last changed"),
    h("dd", {}, formatTime(detail.updated_at)),
    h("dt", {}, "Searches"),
    h("dd", {}, String(detail.searches.length)),
  );
  renderSearches(page);
  page.history.replaceChildren(...conclusionHistory(page).filter(Boolean));
}

// ---- Case report --------------------------------------------------------------------------------

/**
 * The case report (PDF) for an identification board. It needs the key, which a plain link would
 * not send: it is fetched as a blob and saved under the name the service gives it.
 */
function reportButton(page) {
  const button = h("button", { type: "button", class: "button-quiet" }, "Report (PDF)");
  button.addEventListener(
    "click",
    submitting(button, async () => {
      const url = await new ImageScope().fetchBlob(`/cases/${page.caseId}/report.pdf`);
      h("a", { href: url, download: reportFileName(page.detail.number) }).click();
      // The download keeps its own copy once it has started.
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      showDone(`Report of case ${page.detail.number} downloaded`);
    }),
  );
  return button;
}

/**
 * The case as a DICOM File-set for another lab (a zip), de-identified unless the examiner unticks
 * it. Fetched with the key, as the report is; the service refuses, with a reason shown here, a
 * case without conclusions or an image whose pixels carry burned-in text when de-identifying.
 */
function exportControl(page) {
  const deidentify = h("input", { type: "checkbox", checked: true });
  const button = h("button", { type: "button", class: "button-quiet" }, "Export DICOM");
  button.addEventListener(
    "click",
    submitting(button, async () => {
      const query = `deidentify=${deidentify.checked}`;
      const url = await new ImageScope().fetchBlob(`/cases/${page.caseId}/export.zip?${query}`);
      h("a", { href: url, download: `case-${page.caseId}.zip` }).click();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      const how = deidentify.checked ? "de-identified" : "as stored";
      showDone(`DICOM export of case ${page.detail.number} downloaded, ${how}`);
    }),
  );
  return h(
    "span",
    { class: "export-control" },
    button,
    h("label", { class: "check-label" }, deidentify, " de-identify"),
  );
}

/** As the service names it (app/cases/report.py, report_filename). */
function reportFileName(number) {
  const safe = [...number].map((c) => (/[A-Za-z0-9._-]/.test(c) ? c : "_")).join("");
  return `case-${safe.replace(/^[._]+|[._]+$/g, "") || "report"}-report.pdf`;
}

/** Status, description and prior, editable; the case number is the lab's and stays as it is. */
function detailsPanel(page) {
  const { detail } = page;
  const status = select(STATUSES);
  status.value = detail.status;
  const description = h("textarea", { maxlength: 10000, rows: 4 });
  description.value = detail.description;
  const prior = h("input", { type: "number", min: "0.001", max: "0.999", step: "any" });
  prior.value = detail.prior_in_gallery ?? "";
  const save = h("button", { type: "submit" }, "Save case details");
  return h(
    "section",
    { class: "panel", "aria-labelledby": "details-title" },
    h("h2", { id: "details-title" }, "Case details"),
    page.facts,
    h(
      "form",
      {
        class: "case-details",
        onSubmit: submitting(save, async () => {
          const updated = await api(`/cases/${page.caseId}`, {
            method: "PATCH",
            body: {
              status: status.value,
              description: description.value,
              ...(prior.value === "" ? {} : { prior_in_gallery: Number(prior.value) }),
            },
          });
          Object.assign(page.detail, updated);
          renderCase(page);
          showDone(`Case saved: status ${updated.status}`);
        }),
      },
      h("div", { class: "field-row" }, field("Status", status)),
      field("Description", description),
      field(
        "Prior for this case: probability the person is in the gallery",
        prior,
        "Between 0 and 1, for the open-set answer of this case's searches that give none of " +
          "their own; 0.5 while it is not set",
      ),
      save,
    ),
  );
}

// ---- Searches and candidates --------------------------------------------------------------------

function latestConclusions(detail) {
  const latest = new Map();
  for (const entry of detail.conclusions.items) {
    latest.set(`${entry.search_id}:${entry.person_id}`, entry);
  }
  return latest;
}

function renderSearches(page) {
  const { detail } = page;
  if (detail.searches.length === 0) {
    page.searches.replaceChildren(
      h("p", { class: "empty" }, "No searches yet. Choose or drop a radiograph under New search."),
    );
    return;
  }
  const latest = latestConclusions(detail);
  const newestFirst = [...detail.searches].reverse();
  page.searches.replaceChildren(
    ...newestFirst.map((search) => searchSection(page, search, latest)),
  );
}

function searchSection(page, search, latest) {
  const id = search.search_id;
  const blind = page.detail.conclusions.blind_searches.includes(id);
  const headingId = `search-${id}-title`;
  const name = searchName(page.detail.searches, id);
  return h(
    "section",
    { class: "search", "aria-labelledby": headingId },
    h(
      "div",
      { class: "search-head" },
      h("h3", { id: headingId, tabindex: "-1" }, name),
      h("span", { class: "muted" }, formatTime(search.created_at)),
      blind ? badge("Blind review", "blind") : null,
    ),
    blind
      ? h(
          "p",
          { class: "note note-blind" },
          "You were asked to review this search blind: other examiners' conclusions in this case, " +
            "and changes to its status and description since you were asked, stay hidden until " +
            "you record yours on it.",
          search.masked ? null : " Open a candidate with Compare to record it.",
        )
      : null,
    h(
      "div",
      { class: "search-body" },
      h(
        "figure",
        { class: "query-figure" },
        page.ctx.scope.image(
          `/searches/${id}/query/preview.png?size=360`,
          `Query radiograph of ${name.toLowerCase()}`,
        ),
        h(
          "figcaption",
          {},
          "Query ",
          h(
            "span",
            { class: "mono", title: search.query_sha256 },
            `sha256 ${search.query_sha256.slice(0, 12)}…`,
          ),
        ),
      ),
      h(
        "div",
        {},
        h("p", { class: "search-meta" }, searchFacts(search)),
        search.masked
          ? maskedSearch(page, search)
          : [
              openSetPanel(search),
              candidateTable(page, search, latest),
              boundedNote(search),
            ],
        reviewsOf(page, search),
        search.masked ? null : reviewForm(page, search),
      ),
    ),
  );
}

/** What a reviewer under sequential unmasking is shown of a search: the one person to compare
 * the query with, and nothing of the ranking. */
function maskedSearch(page, search) {
  const { masked } = search;
  return h(
    "div",
    { class: "masked-search" },
    h(
      "p",
      { class: "note note-blind" },
      "Sequential unmasking: you were asked to compare the query with one person before seeing " +
        "the search's ranking. Its candidates, scores and strength of evidence are shown once " +
        "you record your conclusion on them.",
    ),
    h(
      "p",
      {},
      h(
        "a",
        {
          class: "button",
          href: compareHref(page.caseId, search.search_id, MASKED_RANK),
        },
        `Compare the query with ${masked.external_ref}`,
      ),
    ),
  );
}

// Searches stored before approximate indexes existed carry no index: they were all exact.
function searchedBy(index) {
  if (!index || index.exact) return "exact search";
  const settings = Object.entries(index.parameters)
    .map(([name, value]) => `${name.replace(/_/g, " ")} ${value}`)
    .join(", ");
  return `approximate search (${index.kind.toUpperCase()}: ${settings})`;
}

function searchFacts(search) {
  const parameters = search.parameters || {};
  const facts = [
    `Model version ${search.model_version.id}`,
    `index generation ${search.index_generation} (${plural(search.index_size, "image")})`,
    searchedBy(search.index),
    `up to ${plural(parameters.k ?? search.candidates.length, "person", "people")}`,
  ];
  if (search.inference) {
    facts.push(`embedded on ${search.inference.device} in ${search.inference.precision}`);
  }
  if (search.calibration) {
    facts.push(`calibration #${search.calibration.id} (${search.calibration.method})`);
  }
  facts.push(search.query_date ? `query dated ${search.query_date}` : "query date unknown");
  if (parameters.pixel_spacing_mm) facts.push(`pixel spacing ${parameters.pixel_spacing_mm} mm`);
  const filters = Object.entries(parameters.filters || {}).filter(([, value]) => value !== null);
  if (filters.length) {
    facts.push(
      `only ${filters.map(([name, value]) => `${name.replace(/_/g, " ")} ${value}`).join(", ")}`,
    );
  }
  return facts.join(" · ");
}

function candidateTable(page, search, latest) {
  const rows = search.candidates.map((candidate) => {
    const conclusion = latest.get(`${search.search_id}:${candidate.person_id}`);
    const best = candidate.images[0];
    return h(
      "tr",
      {},
      h("td", { class: "number" }, String(candidate.rank)),
      h(
        "td",
        { class: "nowrap" },
        h("a", { href: `#/people/${candidate.person_id}` }, candidate.external_ref),
      ),
      h("td", {}, evidenceCell(candidate.evidence)),
      h(
        "td",
        {},
        candidate.evidence
          ? h("span", { class: "similarity-small" }, formatSimilarity(candidate.similarity))
          : similarityCell(candidate.similarity),
      ),
      h(
        "td",
        {},
        best
          ? page.ctx.scope.image(
              `/images/${best.image_id}/preview.png?size=144`,
              `Best matching image of ${candidate.external_ref}`,
            )
          : "—",
      ),
      h(
        "td",
        {},
        conclusion ? `${capitalise(conclusion.conclusion)} (${conclusion.examiner})` : "—",
      ),
      h(
        "td",
        {},
        h(
          "a",
          {
            class: "button button-quiet",
            href: compareHref(page.caseId, search.search_id, candidate.rank),
          },
          "Compare",
          h(
            "span",
            { class: "visually-hidden" },
            ` candidate ${candidate.rank}, ${candidate.external_ref}`,
          ),
        ),
      ),
    );
  });
  return table(
    `Candidates of ${searchName(page.detail.searches, search.search_id).toLowerCase()}, most ` +
      "similar first",
    [
      { text: "Rank", class: "number" },
      "Person",
      "Evidence (likelihood ratio)",
      "Similarity",
      "Best image",
      "Latest conclusion",
      h("span", { class: "visually-hidden" }, "Actions"),
    ],
    rows,
    "No candidates: no image in the gallery matches this search's options.",
  );
}

/** What "bounded" means, in words under the table, for those who cannot hover over the marker. */
function boundedNote(search) {
  if (!search.candidates.some((candidate) => candidate.evidence && candidate.evidence.bounded)) {
    return null;
  }
  return h("p", { class: "hint" }, BOUNDED_MEANING);
}

/** The cosine similarity as a number, and as a bar from 0 to 1 (a negative one shows empty). */
export function similarityCell(similarity) {
  const fill = h("span", { class: "bar-fill" });
  fill.style.width = `${Math.max(0, Math.min(1, similarity)) * 100}%`;
  return h(
    "span",
    { class: "similarity" },
    h("span", {}, formatSimilarity(similarity)),
    h("span", { class: "bar", "aria-hidden": "true" }, fill),
  );
}

function reviewsOf(page, search) {
  const reviews = page.detail.reviews.filter((review) => review.search_id === search.search_id);
  if (reviews.length === 0) return null;
  return h(
    "ul",
    { class: "reviews", "aria-label": `Blind reviews of search #${search.search_id}` },
    reviews.map((review) =>
      h(
        "li",
        {},
        review.sequential_unmasking
          ? `Blind review with sequential unmasking by ${review.reviewer}, shown ` +
              `${personName(search, review.person_id)} first, asked by ${review.requested_by} ` +
              `on ${formatTime(review.created_at)}: `
          : `Blind review by ${review.reviewer}, asked by ${review.requested_by} ` +
              `on ${formatTime(review.created_at)}: `,
        reviewState(review),
        review.state === "open" ? withdrawButton(page, review) : null,
      ),
    ),
  );
}

function personName(search, personId) {
  if (search.masked?.person_id === personId) return search.masked.external_ref;
  const candidate = search.candidates.find((item) => item.person_id === personId);
  return candidate ? candidate.external_ref : `person ${personId}`;
}

function reviewState(review) {
  if (review.state === "completed") return `concluded ${formatTime(review.completed_at)}`;
  if (review.state === "withdrawn") {
    return `withdrawn by ${review.withdrawn_by} ${formatTime(review.withdrawn_at)}`;
  }
  return h("strong", {}, "awaiting their conclusion");
}

/** Only the one who asked, or an admin, may withdraw a request. */
function withdrawButton(page, review) {
  const me = page.ctx.me;
  if (me.id !== review.requested_by_key_id && me.role !== "admin") return null;
  const button = h(
    "button",
    {
      type: "button",
      class: "button-quiet",
      "aria-label": `Withdraw the blind review asked of ${review.reviewer}`,
    },
    "Withdraw",
  );
  button.addEventListener(
    "click",
    submitting(button, async () => {
      await api(`/cases/${page.caseId}/reviews/${review.id}/withdraw`, { method: "POST" });
      showDone(`The blind review asked of ${review.reviewer} is withdrawn`);
      await page.reload();
    }),
  );
  return h("span", {}, " ", button);
}

function reviewForm(page, search) {
  const name = searchName(page.detail.searches, search.search_id);
  if (page.reviewers.length === 0) {
    return h(
      "p",
      { class: "muted review-form" },
      "A blind review needs another examiner's key; there is none.",
    );
  }
  const reviewer = select(
    page.reviewers.map((key) => [String(key.id), key.name]),
  );
  const unmasking = sequentialChoice(search);
  const submit = h("button", { type: "submit", class: "button-quiet" }, "Ask for a blind review");
  const form = h(
    "form",
    {
      class: "field-row",
      "aria-label": `Blind review of search #${search.search_id}`,
      onSubmit: submitting(submit, async () => {
        await api(`/cases/${page.caseId}/reviews`, {
          method: "POST",
          body: {
            search_id: search.search_id,
            reviewer_key_id: Number(reviewer.value),
            ...unmasking.body(),
          },
        });
        showDone(
          `Blind review of ${name.toLowerCase()} ` +
            `asked of ${page.names.get(Number(reviewer.value))}${unmasking.said()}`,
        );
        await page.reload();
      }),
    },
    field("Reviewer", reviewer),
    unmasking.fields,
    h("div", { class: "field" }, submit),
  );
  return h(
    "fieldset",
    { class: "review-form" },
    h("legend", {}, "Blind review"),
    h(
      "p",
      { class: "hint" },
      `Until they record a conclusion on ${name.toLowerCase()}, the reviewer sees no one ` +
        "else's conclusion in this case, and the case as it is now; what they record meanwhile " +
        "is marked as made blind. With sequential unmasking they are first shown one candidate " +
        "alone, without the ranking, scores or evidence, until they conclude on that person.",
    ),
    form,
  );
}

/** Sequential unmasking, ticked: the reviewer is shown the chosen candidate (the top one unless
 * changed) without the ranking, scores or evidence until they conclude on them. */
function sequentialChoice(search) {
  if (search.candidates.length === 0) return { fields: null, body: () => ({}), said: () => "" };
  const box = h("input", { type: "checkbox", id: uid("sequential") });
  const person = select(
    search.candidates.map((candidate) => [
      String(candidate.person_id),
      `${candidate.rank}. ${candidate.external_ref}`,
    ]),
  );
  const personField = field(
    "Candidate to show",
    person,
    "The only one they see, with no rank, score or evidence, until they record their " +
      "conclusion on them",
  );
  personField.hidden = true;
  box.addEventListener("change", () => {
    personField.hidden = !box.checked;
  });
  const chosen = () =>
    search.candidates.find((candidate) => String(candidate.person_id) === person.value);
  return {
    fields: [
      h(
        "div",
        { class: "field field-check" },
        h("label", { class: "check-label", for: box.id }, box, " Sequential unmasking"),
      ),
      personField,
    ],
    body: () =>
      box.checked ? { sequential_unmasking: true, person_id: Number(person.value) } : {},
    said: () => (box.checked ? `, with sequential unmasking on ${chosen().external_ref}` : ""),
  };
}

// ---- Conclusion history -------------------------------------------------------------------------

/** Who said what, oldest first, with the note a blind reviewer needs about what is withheld. */
export function conclusionHistory(page) {
  const { conclusions, searches } = page.detail;
  const refs = new Map();
  for (const search of searches) {
    for (const candidate of search.candidates) {
      refs.set(`${search.search_id}:${candidate.person_id}`, candidate);
    }
    if (search.masked) {
      const { person_id: personId, external_ref: reference } = search.masked;
      refs.set(`${search.search_id}:${personId}`, { external_ref: reference, rank: null });
    }
  }
  const rows = conclusions.items.map((entry) => {
    const candidate = refs.get(`${entry.search_id}:${entry.person_id}`);
    return h(
      "tr",
      {},
      h("td", { class: "nowrap" }, formatTime(entry.created_at)),
      h("td", {}, entry.examiner),
      h("td", { class: "nowrap" }, searchName(searches, entry.search_id).replace(/^Search /, "")),
      h(
        "td",
        {},
        h(
          "a",
          { href: `#/people/${entry.person_id}` },
          candidate ? candidate.external_ref : `person ${entry.person_id}`,
        ),
        candidate?.rank ? ` (rank ${candidate.rank})` : "",
      ),
      h(
        "td",
        {},
        h("strong", {}, capitalise(entry.conclusion)),
        entry.made_blind ? [" ", badge("Made blind", "blind")] : null,
        rankingNote(entry),
      ),
      h(
        "td",
        {},
        entry.comment || h("span", { class: "muted" }, "no comment"),
        conclusionFindings(entry),
      ),
    );
  });
  return [
    hiddenNote(conclusions),
    table(
      "Conclusions, oldest first; a later entry about the same candidate supersedes an earlier one",
      ["Recorded", "Examiner", "Search", "Candidate", "Conclusion", "Comment"],
      rows,
      conclusions.hidden > 0 ? "No conclusion you may see yet." : "No conclusions recorded yet.",
    ),
  ];
}

export function hiddenNote(conclusions) {
  if (!conclusions.hidden) return null;
  const searches = conclusions.blind_searches.map((id) => `#${id}`).join(", ");
  const verb = conclusions.hidden === 1 ? "is" : "are";
  return h(
    "p",
    { class: "note note-blind" },
    `Blind review: ${plural(conclusions.hidden, "conclusion")} by other examiners ${verb} hidden, ` +
      "and the case is shown as it was when you were asked, " +
      `until you record your own on search ${searches}.`,
  );
}
