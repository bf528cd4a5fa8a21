// The comparison view: the query beside one candidate's radiographs, every visit of that person
// to choose from, shortcuts to move through the candidates, marks and measurements, the
// similarity explained over both images, and the examiner's conclusion. Under sequential
// unmasking (the search comes back `masked`) it shows the one candidate the reviewer was given,
// with no rank, score, similarity or evidence, until the reviewer's conclusion on them is
// recorded; then the full view follows.

import { api } from "./api.js";
import { compareHref, hiddenNote, MASKED_RANK } from "./case-page.js";
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
import { Annotations, TOOLS } from "./annotations.js";
import { Explanation } from "./explanation.js";
import { conclusionFindings, rankingNote } from "./findings.js";
import { announce, report, showError, submitting } from "./messages.js";
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

/** The one candidate a sequential-unmasking review shows, as the ranked ones are given. */
function maskedCandidate(masked) {
  return {
    rank: null,
    person_id: masked.person_id,
    external_ref: masked.external_ref,
    images: [],
    evidence: null,
    similarity: null,
  };
}

export async function compareView(ctx) {
  const { caseId, searchId } = ctx.params;
  const detail = await api(`/cases/${caseId}`);
  const search = detail.searches.find((item) => item.search_id === searchId);
  if (!search) throw new Error(`Case ${detail.number} has no search #${searchId}.`);
  if (!search.masked && ctx.params.rank === MASKED_RANK && search.candidates.length) {
    // The masked view's address once the ranking is shown: the first candidate instead.
    location.replace(compareHref(caseId, searchId, search.candidates[0].rank));
    return;
  }

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
  state.shortcuts = h("div");
  state.annotations = new Annotations(state.viewer);
  state.explanation = new Explanation(state.viewer, searchId);

  ctx.root.classList.add("compare-page");
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
    state.annotations.toolbar,
    state.explanation.toolbar,
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
        state.annotations.panel,
        state.conclusion,
      ),
      h("div", {}, state.evidence, state.shortcuts),
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
    state.viewer.setOriginalSize(QUERY, facts.width, facts.height);
    return facts;
  } catch (error) {
    pane.facts.replaceChildren(
      h("p", { class: "muted" }, `The query's facts cannot be read: ${error.message}`),
    );
    return null;
  }
}

function step(state, direction) {
  if (state.search.masked) return;
  const rank = state.candidate.rank + direction;
  if (!state.search.candidates.some((candidate) => candidate.rank === rank)) {
    announce(direction > 0 ? "This is the last candidate" : "This is the first candidate");
    return;
  }
  location.hash = compareHref(state.ctx.params.caseId, state.search.search_id, rank);
}

async function showCandidate(state, rank) {
  const masked = state.search.masked;
  const candidate = masked
    ? maskedCandidate(masked)
    : state.search.candidates.find((item) => item.rank === rank);
  if (!candidate) {
    throw new Error(`Search #${state.search.search_id} has no candidate ranked ${rank}.`);
  }
  // Moving quickly through the candidates: only the last one asked for may fill the page.
  state.shown += 1;
  const ticket = state.shown;
  state.candidate = candidate;
  if (masked) showMasked(state);
  else showRanked(state);
  state.explanation.setAvailable(!masked);
  state.explanation.showFor(candidate.person_id, null);
  state.shortcuts.replaceChildren(shortcutList(Boolean(masked)));
  // A flip was for the previous candidate's image.
  state.viewer.unflip(CANDIDATE);
  state.viewer.panes[CANDIDATE].facts.replaceChildren();
  state.viewer.show(CANDIDATE, null, "Loading…");
  state.visits.replaceChildren(h("p", { class: "loading" }, "Loading…"));
  const recorded = state.recorded?.person_id === candidate.person_id ? state.recorded : null;
  state.recorded = null;
  renderConclusion(state, recorded);
  if (recorded) document.getElementById("conclusion-saved").focus();

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
  announce(state.heading.textContent);
}

function showRanked(state) {
  const { candidate, search } = state;
  const count = search.candidates.length;
  state.heading.textContent =
    `Compare with candidate ${candidate.rank} of ${count}: ${candidate.external_ref}`;
  state.ctx.setTitle(`Candidate ${candidate.rank} · Case ${state.detail.number}`);
  state.previous.hidden = false;
  state.next.hidden = false;
  state.previous.disabled = candidate.rank <= search.candidates[0].rank;
  state.next.disabled = candidate.rank >= search.candidates[count - 1].rank;
  state.summary.replaceChildren(
    "Person ",
    h("a", { href: `#/people/${candidate.person_id}` }, candidate.external_ref),
    candidate.evidence
      ? ` · ${lrText(candidate.evidence)}, ${verbalText(candidate.evidence)}`
      : " · no calibration",
    ` · similarity ${formatSimilarity(candidate.similarity)} (best image) · `,
    `${candidate.images.length} of their images retrieved by search #${search.search_id}`,
  );
  renderEvidence(state);
}

/** One candidate, and nothing of the ranking: no rank, score, similarity or evidence. */
function showMasked(state) {
  const { candidate } = state;
  state.heading.textContent = `Compare the query with ${candidate.external_ref}`;
  state.ctx.setTitle(`${candidate.external_ref} · Case ${state.detail.number}`);
  state.previous.hidden = true;
  state.next.hidden = true;
  state.summary.replaceChildren(
    h(
      "span",
      { class: "note note-blind masked-note" },
      "Sequential unmasking: you were asked to compare the query with ",
      h("a", { href: `#/people/${candidate.person_id}` }, candidate.external_ref),
      " before seeing the search's ranking. The other candidates, the scores and the strength " +
        "of evidence are shown once you record your conclusion on this person.",
    ),
  );
  state.evidence.replaceChildren();
}

/** Which image of the candidate is in the right-hand pane; the visit list follows. */
function showImage(state, imageId) {
  state.imageId = imageId;
  state.annotations.candidateImage(imageId);
  renderVisits(state);
  const image = state.person.images.find((item) => item.id === imageId);
  state.explanation.showFor(state.candidate.person_id, image ? imageId : null);
  const pane = state.viewer.panes[CANDIDATE];
  if (!image) {
    pane.caption.textContent = `${state.candidate.external_ref} · no image on record`;
    pane.facts.replaceChildren();
    state.viewer.setPhysical(CANDIDATE, null, null);
    state.viewer.setOriginalSize(CANDIDATE, null, null);
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
  state.viewer.setOriginalSize(
    CANDIDATE,
    image.image_metadata?.width ?? null,
    image.image_metadata?.height ?? null,
  );
  const match = state.candidate.images.find((item) => item.image_id === imageId);
  const retrieval = match
    ? `similarity ${formatSimilarity(match.similarity)}`
    : "not retrieved by this search";
  pane.caption.textContent = [
    `Candidate ${state.candidate.external_ref}`,
    imageWhen(image),
    imageWhat(image),
    state.search.masked ? null : retrieval,
  ]
    .filter(Boolean)
    .join(" · ");
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
              state.search.masked ? null : [h("br"), retrieval(matches, image.id)],
            ),
          ),
        ),
      ),
    ),
  );
}

function retrieval(matches, imageId) {
  return matches.has(imageId)
    ? `Similarity ${formatSimilarity(matches.get(imageId))}`
    : "Not retrieved";
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
    e: () => state.explanation.toggle(),
    ...Object.fromEntries(
      TOOLS.map(([tool, , key]) => [key, () => state.annotations.setTool(tool)]),
    ),
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
            saved.unmasked ? ` ${UNMASKED}` : null,
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
                rankingNote(entry),
                conclusionFindings(entry),
                showRecordedButton(state, entry),
              ),
            ),
          )
        : h("p", { class: "muted" }, "No conclusion on this candidate yet."),
      conclusionForm(state),
    ),
  );
}

function showRecordedButton(state, entry) {
  if (!entry.marks?.length && !entry.measurements?.length) return null;
  return h(
    "button",
    { type: "button", class: "button-quiet", onClick: () => showRecorded(state, entry) },
    "Show on the images",
  );
}

/** A recorded conclusion's marks and measurements, on the candidate's image they were made on. */
function showRecorded(state, entry) {
  const imageId = entry.candidate_image_id;
  if (!state.person) return;
  if (imageId !== null && imageId !== state.imageId) {
    if (!state.person.images.some((image) => image.id === imageId)) {
      showError("The candidate's image these marks were made on is no longer on record.");
      return;
    }
    showImage(state, imageId);
  }
  state.annotations.showRecorded(entry, formatTime(entry.created_at));
  document.querySelector(".compare-page .panes").scrollIntoView({ block: "start" });
}

const UNMASKED =
  "Sequential unmasking is over: the search's ranking, scores and strength of evidence are " +
  "now shown.";

/** The reviewer's conclusion under sequential unmasking is recorded: the full view follows, on
 * the same person at their rank. */
async function unmask(state, saved) {
  const search = state.detail.searches.find((item) => item.search_id === state.search.search_id);
  const ranked = search?.candidates.find((item) => item.person_id === saved.person_id);
  if (!search || search.masked || !ranked) {
    renderConclusion(state, saved);
    return;
  }
  state.search = search;
  state.recorded = { ...saved, unmasked: true };
  announce(`Conclusion recorded: ${saved.conclusion}. ${UNMASKED}`);
  const href = compareHref(state.ctx.params.caseId, search.search_id, ranked.rank);
  if (location.hash === href) await showCandidate(state, ranked.rank);
  else location.replace(href);
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
        const problem = state.annotations.problem();
        if (problem) {
          showError(problem);
          return;
        }
        const masked = Boolean(state.search.masked);
        const saved = await api(`/cases/${state.ctx.params.caseId}/conclusions`, {
          method: "POST",
          body: {
            search_id: state.search.search_id,
            person_id: candidate.person_id,
            conclusion: scale.value,
            comment: comment.value,
            ...state.annotations.payload(),
          },
        });
        draft.forget();
        state.annotations.clear();
        // Recording one ends a blind review: the case now shows everyone's conclusions.
        state.detail = await api(`/cases/${state.ctx.params.caseId}`);
        if (masked) {
          await unmask(state, saved);
          return;
        }
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
