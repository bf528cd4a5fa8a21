// The comparison view: the query beside one candidate's radiographs, every visit of that person
// to choose from, shortcuts to move through the candidates, and the examiner's conclusion.

import { api } from "./api.js";
import { compareHref, hiddenNote } from "./case-page.js";
import {
  byVisit,
  capitalise,
  field,
  formatSimilarity,
  formatTime,
  h,
  imageWhat,
  imageWhen,
  select,
  separator,
  title,
} from "./dom.js";
import {
  boundedMarker,
  elubText,
  likelihoodSentence,
  lrText,
  supportSentence,
  verbalText,
  yearsText,
} from "./evidence.js";
import { announce, report, submitting } from "./messages.js";
import { keepDraft } from "./conclusion-draft.js";
import { PairViewer } from "./viewer.js";
import { CANDIDATE, controls, QUERY, shortcutList } from "./viewer-controls.js";
import {
  defaultImage,
  factsList,
  imageFacts,
  mismatchWarning,
  queryFacts,
} from "./comparison-facts.js";

const PREVIEW_SIZE = 1024;
const SCALE = [
  ["identification", "Identification"],
  ["probable", "Probable"],
  ["possible", "Possible"],
  ["insufficient", "Insufficient"],
  ["excluded", "Excluded"],
];

export async function compareView(ctx) {
  const { caseId, searchId } = ctx.params;
  const detail = await api(`/cases/${caseId}`);
  const search = detail.searches.find((item) => item.search_id === searchId);
  if (!search) throw new Error(`Case ${detail.number} has no search #${searchId}.`);

  const state = {
    ctx,
    detail,
    search,
    query: null,
    candidate: null,
    person: null,
    imageId: null,
    shown: 0,
  };
  state.viewer = new PairViewer([
    `Query radiograph of search #${searchId}`,
    "Candidate radiograph",
  ]);
  state.heading = title(1, "");
  state.summary = h("p", { class: "candidate-summary" });
  state.previous = h(
    "button",
    {
      type: "button",
      class: "button-quiet",
      "aria-keyshortcuts": "ArrowLeft p",
      onClick: () => step(state, -1),
    },
    "‹ Previous candidate",
  );
  state.next = h(
    "button",
    {
      type: "button",
      class: "button-quiet",
      "aria-keyshortcuts": "ArrowRight n",
      onClick: () => step(state, 1),
    },
    "Next candidate ›",
  );
  state.visits = h("div");
  state.conclusion = h("div");
  state.evidence = h("div");

  ctx.root.replaceChildren(
    h(
      "nav",
      { class: "breadcrumbs", "aria-label": "Breadcrumb" },
      h("a", { href: "#/cases" }, "Cases"),
      separator(),
      h("a", { href: `#/cases/${caseId}` }, `Case ${detail.number}`),
      separator(),
    ),
    h(
      "div",
      { class: "compare-head" },
      state.heading,
      h("div", { class: "actions" }, state.previous, state.next),
    ),
    state.summary,
    controls(state.viewer),
    h(
      "div",
      { class: "panes" },
      state.viewer.panes.map((pane) => pane.element),
    ),
    h(
      "div",
      { class: "columns" },
      h(
        "div",
        {},
        h(
          "section",
          { class: "panel", "aria-labelledby": "visits-title" },
          h("h2", { id: "visits-title" }, "The candidate's radiographs"),
          state.visits,
        ),
        state.conclusion,
      ),
      h("div", {}, state.evidence, shortcutList()),
    ),
  );
  state.viewer.panes[QUERY].caption.textContent =
    `Query · search #${searchId} · ${formatTime(search.created_at)}`;
  state.viewer.changed();
  showQuery(state);
  state.query = await loadQueryFacts(state);
  listenToKeys(state);
  ctx.onUpdate((params) => showCandidate(state, params.rank));
  await showCandidate(state, ctx.params.rank);
}

function showQuery(state) {
  const path = `/searches/${state.search.search_id}/query/preview.png?size=${PREVIEW_SIZE}`;
  state.ctx.scope.url(path).then(
    (url) => state.viewer.show(QUERY, url),
    (error) => state.viewer.show(QUERY, null, `The query cannot be shown: ${error.message}`),
  );
}

/** The query's facts beside it, and its pixel spacing for true scale; null if unreadable. */
async function loadQueryFacts(state) {
  const pane = state.viewer.panes[QUERY];
  try {
    const facts = queryFacts(await api(`/searches/${state.search.search_id}/query/facts`));
    pane.facts.replaceChildren(factsList(facts, "The query radiograph's facts"));
    state.viewer.setPhysical(QUERY, facts.pixel_spacing_mm, facts.width);
    return facts;
  } catch (error) {
    pane.facts.replaceChildren(
      h("p", { class: "muted" }, `The query's facts cannot be read: ${error.message}`),
    );
    return null;
  }
}

function step(state, direction) {
  const rank = state.candidate.rank + direction;
  if (!state.search.candidates.some((candidate) => candidate.rank === rank)) {
    announce(direction > 0 ? "This is the last candidate" : "This is the first candidate");
    return;
  }
  location.hash = compareHref(state.ctx.params.caseId, state.search.search_id, rank);
}

async function showCandidate(state, rank) {
  const candidate = state.search.candidates.find((item) => item.rank === rank);
  if (!candidate) {
    throw new Error(`Search #${state.search.search_id} has no candidate ranked ${rank}.`);
  }
  // Moving quickly through the candidates: only the last one asked for may fill the page.
  state.shown += 1;
  const ticket = state.shown;
  state.candidate = candidate;
  const count = state.search.candidates.length;
  state.heading.textContent = `Compare with candidate ${rank} of ${count}: ${candidate.external_ref}`;
  state.ctx.setTitle(`Candidate ${rank} · Case ${state.detail.number}`);
  state.previous.disabled = rank <= state.search.candidates[0].rank;
  state.next.disabled = rank >= state.search.candidates[count - 1].rank;
  state.summary.replaceChildren(
    "Person ",
    h("a", { href: `#/people/${candidate.person_id}` }, candidate.external_ref),
    candidate.evidence
      ? ` · ${lrText(candidate.evidence)}, ${verbalText(candidate.evidence)}`
      : " · no calibration",
    ` · similarity ${formatSimilarity(candidate.similarity)} (best image) · `,
    `${candidate.images.length} of their images retrieved by search #${state.search.search_id}`,
  );
  renderEvidence(state);
  // A flip was for the previous candidate's image.
  state.viewer.unflip(CANDIDATE);
  state.viewer.panes[CANDIDATE].facts.replaceChildren();
  state.viewer.show(CANDIDATE, null, "Loading…");
  state.visits.replaceChildren(h("p", { class: "loading" }, "Loading…"));
  renderConclusion(state);

  let person;
  try {
    person = await api(`/people/${candidate.person_id}`);
  } catch (error) {
    if (ticket !== state.shown) return;
    state.viewer.show(CANDIDATE, null, "This person's images cannot be shown.");
    state.visits.replaceChildren(h("p", { class: "empty" }, error.message));
    report(error);
    return;
  }
  if (ticket !== state.shown || !state.ctx.alive()) return;
  state.person = person;
  // The query's side and view first, the search's best match of those; else any of theirs.
  showImage(state, defaultImage(person, candidate, state.query));
  announce(`Candidate ${rank} of ${count}: ${candidate.external_ref}`);
}

/** Which image of the candidate is in the right-hand pane; the visit list follows. */
function showImage(state, imageId) {
  state.imageId = imageId;
  renderVisits(state);
  const image = state.person.images.find((item) => item.id === imageId);
  const pane = state.viewer.panes[CANDIDATE];
  if (!image) {
    pane.caption.textContent = `${state.candidate.external_ref} · no image on record`;
    pane.facts.replaceChildren();
    state.viewer.setPhysical(CANDIDATE, null, null);
    state.viewer.show(CANDIDATE, null, "No image of this person is on record any more.");
    return;
  }
  const facts = imageFacts(image, state.person);
  const warning = mismatchWarning(state.query, image, state.person);
  const list = factsList(facts, "The candidate radiograph's facts");
  pane.facts.replaceChildren(
    ...(warning ? [h("p", { class: "pane-warning", role: "note" }, warning), list] : [list]),
  );
  state.viewer.setPhysical(CANDIDATE, facts.pixel_spacing_mm, facts.width);
  const match = state.candidate.images.find((item) => item.image_id === imageId);
  pane.caption.textContent = [
    `Candidate ${state.candidate.external_ref}`,
    imageWhen(image),
    imageWhat(image),
    match ? `similarity ${formatSimilarity(match.similarity)}` : "not retrieved by this search",
  ].join(" · ");
  pane.img.alt = `Radiograph of ${state.candidate.external_ref}, ${imageWhen(image).toLowerCase()}`;
  state.viewer.show(CANDIDATE, null, "Loading…");
  const ticket = state.shown;
  state.ctx.scope.url(`/images/${imageId}/preview.png?size=${PREVIEW_SIZE}`).then(
    (url) => {
      if (ticket === state.shown && state.imageId === imageId) state.viewer.show(CANDIDATE, url);
    },
    (error) => state.viewer.show(CANDIDATE, null, `This image cannot be shown: ${error.message}`),
  );
}

function renderVisits(state) {
  const images = [...state.person.images].sort(byVisit);
  if (images.length === 0) {
    state.visits.replaceChildren(h("p", { class: "empty" }, "No images on record."));
    return;
  }
  const matches = new Map(state.candidate.images.map((item) => [item.image_id, item.similarity]));
  state.visits.replaceChildren(
    h("p", { class: "hint" }, "Oldest first. Choose one to show it beside the query."),
    h(
      "ul",
      { class: "visits" },
      images.map((image) =>
        h(
          "li",
          {},
          h(
            "button",
            {
              type: "button",
              class: "visit",
              "aria-pressed": String(image.id === state.imageId),
              onClick: () => showImage(state, image.id),
            },
            state.ctx.scope.image(`/images/${image.id}/preview.png?size=240`, ""),
            h(
              "span",
              { class: "visit-label" },
              h("strong", {}, imageWhen(image)),
              h("br"),
              capitalise(imageWhat(image)),
              h("br"),
              matches.has(image.id)
                ? `Similarity ${formatSimilarity(matches.get(image.id))}`
                : "Not retrieved",
            ),
          ),
        ),
      ),
    ),
  );
}

// ---- Strength of evidence -----------------------------------------------------------------------

const BOUNDED_SENTENCE =
  "The value is bounded: the calibration data support no stronger value (its empirical lower " +
  "and upper bounds, ELUB).";

/** The evaluative statement for the candidate's best image, and the conditions it holds under. */
function renderEvidence(state) {
  const { candidate, search } = state;
  const evidence = candidate.evidence;
  const body = evidence
    ? [
        h(
          "p",
          { class: "evaluative" },
          likelihoodSentence(evidence),
          " ",
          supportSentence(evidence),
          evidence.bounded ? ` ${BOUNDED_SENTENCE}` : null,
        ),
        h("dl", { class: "facts" }, evidenceConditions(search, evidence)),
        h(
          "p",
          { class: "hint" },
          "For the query and the candidate's best image in this search. Whether the candidate is " +
            "the person is the examiner's conclusion: radmatch never declares an identification.",
        ),
      ]
    : h(
        "p",
        { class: "note" },
        `No calibration: model version #${search.model_version.id} had none when this search ` +
          "ran, so there is no likelihood ratio for this candidate. The similarity ranks the " +
          "candidates; it is not a strength of evidence.",
      );
  state.evidence.replaceChildren(
    h(
      "section",
      { class: "panel evidence-panel", "aria-labelledby": "evidence-title" },
      h("h2", { id: "evidence-title" }, "Strength of evidence"),
      body,
    ),
  );
}

function evidenceConditions(search, evidence) {
  const method = search.calibration ? ` (${search.calibration.method})` : "";
  const rows = [
    ["Likelihood ratio", `${lrText(evidence)} · ${verbalText(evidence)}`],
    ["Model version", `#${search.model_version.id}`],
    ["Years between the images", yearsText(evidence)],
    ["Calibration", `#${evidence.calibration_id}${method}, curve ${evidence.band}`],
    ["Bounds (ELUB)", [elubText(evidence.elub), evidence.bounded ? [" ", boundedMarker()] : null]],
  ];
  return rows.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]);
}

/** Keys typed into a field belong to the field; arrow keys on a slider move the slider. */
function belongsToField(event) {
  const target = event.target;
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable || target.tagName === "TEXTAREA" || target.tagName === "SELECT")
    return true;
  if (target.tagName !== "INPUT") return false;
  if (target.type === "range") return /^(Arrow|Home|End|Page)/.test(event.key);
  return true;
}

function listenToKeys(state) {
  const viewer = state.viewer;
  const actions = {
    ArrowRight: () => step(state, 1),
    n: () => step(state, 1),
    ArrowLeft: () => step(state, -1),
    p: () => step(state, -1),
    "+": () => viewer.zoomStep(1),
    "=": () => viewer.zoomStep(1),
    "-": () => viewer.zoomStep(-1),
    _: () => viewer.zoomStep(-1),
    0: () => viewer.resetView(),
    i: () => viewer.toggleInvert(),
    f: () => viewer.toggleFlip(CANDIDATE),
  };
  const onKey = (event) => {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (belongsToField(event)) return;
    if (event.shiftKey && /^Arrow/.test(event.key)) {
      event.preventDefault();
      viewer.panStep(event.key);
      return;
    }
    const action = actions[event.key.length === 1 ? event.key.toLowerCase() : event.key];
    if (!action) return;
    event.preventDefault();
    action();
  };
  document.addEventListener("keydown", onKey);
  state.ctx.onLeave(() => document.removeEventListener("keydown", onKey));
}

// ---- Conclusion ---------------------------------------------------------------------------------

function renderConclusion(state, saved = null) {
  const { candidate, detail, search } = state;
  const blind = detail.conclusions.blind_searches.includes(search.search_id);
  const earlier = detail.conclusions.items.filter(
    (entry) => entry.search_id === search.search_id && entry.person_id === candidate.person_id,
  );
  state.conclusion.replaceChildren(
    h(
      "section",
      { class: "panel", "aria-labelledby": "conclusion-title" },
      h("h2", { id: "conclusion-title" }, `Conclusion on ${candidate.external_ref}`),
      blind
        ? h(
            "p",
            { class: "note note-blind" },
            "Blind review: other examiners' conclusions on this search are hidden until you record yours.",
          )
        : hiddenNote(detail.conclusions),
      saved
        ? h(
            "p",
            { class: "note note-success", id: "conclusion-saved", tabindex: "-1" },
            `Recorded: ${capitalise(saved.conclusion)}, by ${saved.examiner} at ${formatTime(saved.created_at)}.`,
          )
        : null,
      earlier.length
        ? h(
            "ul",
            {
              class: "conclusions",
              "aria-label": `Conclusions on ${candidate.external_ref}, oldest first`,
            },
            earlier.map((entry) =>
              h(
                "li",
                {},
                h("strong", {}, capitalise(entry.conclusion)),
                ` — ${entry.examiner}, ${formatTime(entry.created_at)}`,
                entry.comment ? `: ${entry.comment}` : "",
              ),
            ),
          )
        : h("p", { class: "muted" }, "No conclusion on this candidate yet."),
      conclusionForm(state),
    ),
  );
}

function conclusionForm(state) {
  const scale = select([["", "Choose…"], ...SCALE], { required: true });
  const comment = h("textarea", { maxlength: 10000, rows: 3 });
  const submit = h("button", { type: "submit" }, "Record conclusion");
  const candidate = state.candidate;
  const draft = keepDraft(
    {
      caseId: state.ctx.params.caseId,
      searchId: state.search.search_id,
      personId: candidate.person_id,
    },
    { scale, comment },
  );
  return h(
    "form",
    {
      onSubmit: submitting(submit, async () => {
        const saved = await api(`/cases/${state.ctx.params.caseId}/conclusions`, {
          method: "POST",
          body: {
            search_id: state.search.search_id,
            person_id: candidate.person_id,
            conclusion: scale.value,
            comment: comment.value,
          },
        });
        draft.forget();
        // Recording one ends a blind review: the case now shows everyone's conclusions.
        state.detail = await api(`/cases/${state.ctx.params.caseId}`);
        if (state.candidate === candidate) {
          renderConclusion(state, saved);
          document.getElementById("conclusion-saved").focus();
        }
        announce(`Conclusion recorded: ${saved.conclusion}`);
      }),
    },
    draft.restored
      ? h(
          "p",
          { class: "note", id: "conclusion-draft" },
          "Your unsaved draft of this conclusion is back: it is kept in this browser tab until you record it.",
        )
      : null,
    h(
      "div",
      { class: "field-row" },
      field("Conclusion", scale, "Identification is the strongest, excluded rules the person out"),
    ),
    field(
      "Comment",
      comment,
      "Features compared, reasons; it is kept with your name and never changed",
    ),
    submit,
  );
}
