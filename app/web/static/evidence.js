// Likelihood ratios as an examiner reads them: "LR 2,300" or "LR 1/40" (two significant figures),
// the verbal scale beside the number, the sentence in the ENFSI form, and the open-set answer of a
// search. radmatch weighs evidence; it never declares an identification.

import { capitalise, h, plural } from "./dom.js";

const SAME = "same person";
const DIFFERENT = "different people";
export const BOUNDED_MEANING =
  "Bounded (ELUB): the calibration data support no stronger value, so the likelihood ratio is " +
  "capped at the empirical lower and upper bounds of its calibration curve.";
export const NO_IDENTIFICATION =
  "radmatch never declares an identification: it weighs the similarity as evidence, and whether " +
  "a candidate is the person is the examiner's conclusion.";

/** A positive number to two significant figures, with thousands separators: 2,300 · 1.3 · 40. */
function twoFigures(value) {
  return Number(value.toPrecision(2)).toLocaleString("en-US", { maximumSignificantDigits: 2 });
}

/** A likelihood ratio from its log10: "2,300" above 1, "1/40" below, "1" where it rounds to 1. */
export function formatLr(log10Lr) {
  if (log10Lr >= 0) return twoFigures(10 ** log10Lr);
  const inverse = twoFigures(10 ** -log10Lr);
  return inverse === "1" ? "1" : `1/${inverse}`;
}

export function lrText(evidence) {
  return `LR ${formatLr(evidence.log10_lr)}`;
}

/** The empirical bounds of a curve, as likelihood ratios: "1/40 to 2,300". */
export function elubText(elub) {
  if (!Array.isArray(elub) || elub.length !== 2) return "—";
  return `${formatLr(elub[0])} to ${formatLr(elub[1])}`;
}

/** "moderately strong support: same person", or "no support either way" at LR 1. */
export function verbalText(evidence) {
  if (evidence.supports === "neither") return "no support either way";
  return `${evidence.verbal} support: ${evidence.supports}`;
}

export function boundedMarker() {
  return h(
    "span",
    { class: "badge badge-bounded", title: BOUNDED_MEANING },
    "bounded",
    h("span", { class: "visually-hidden" }, " (the calibration data support no stronger value)"),
  );
}

/** The candidates table's cell: the number, a bounded marker where capped, the verbal scale. */
export function evidenceCell(evidence) {
  if (!evidence) {
    return h(
      "span",
      { class: "muted", title: "This model version has no calibration" },
      "no calibration",
    );
  }
  return h(
    "span",
    { class: `evidence evidence-${evidence.supports.replace(/ /g, "-")}` },
    h("strong", { class: "lr" }, lrText(evidence)),
    evidence.bounded ? boundedMarker() : null,
    h("span", { class: "verbal" }, verbalText(evidence)),
  );
}

// ---- The evaluative statement (ENFSI form) ------------------------------------------------------

const IMAGES = "the query and the candidate's image";

/** How much more probable the similarity is under one proposition than under the other. */
export function likelihoodSentence(evidence) {
  const rounded = formatLr(evidence.log10_lr);
  if (rounded === "1") {
    return (
      `The similarity observed is about as probable if ${IMAGES} are of the same person as if ` +
      "they are of different people."
    );
  }
  if (evidence.log10_lr > 0) {
    return (
      `The similarity observed is about ${rounded} times more probable if ${IMAGES} are of the ` +
      "same person than if they are of different people."
    );
  }
  return (
    `The similarity observed is about ${formatLr(-evidence.log10_lr)} times more probable if ` +
    `${IMAGES} are of different people than if they are of the same person.`
  );
}

/** "This is moderately strong support for the same person rather than different people." */
export function supportSentence(evidence) {
  if (evidence.supports === "neither") {
    return "This supports neither the same person nor different people.";
  }
  const [supported, against] =
    evidence.supports === SAME ? [`the ${SAME}`, DIFFERENT] : [DIFFERENT, `the ${SAME}`];
  return `This is ${evidence.verbal} support for ${supported} rather than ${against}.`;
}

/** The years between the two images, or why the calibration over all intervals was used. */
export function yearsText(evidence) {
  const years = evidence.years_between;
  const known = typeof years === "number" ? `${years.toFixed(1)} years` : null;
  if (evidence.note) return known ? `${known}; ${evidence.note}` : capitalise(evidence.note);
  return known || "Dates unknown: pooled calibration";
}

// ---- The open-set answer ------------------------------------------------------------------------

const PRIOR_SOURCES = {
  request: "given with this search",
  case: "the case's",
  default: "the default: neither the search nor the case gave one",
};

/** A probability to two decimals, without rounding a near-certainty to 1.00 or 0.00. */
export function formatProbability(value) {
  if (typeof value !== "number") return "—";
  if (value > 0.99) return "above 0.99";
  if (value < 0.01) return "below 0.01";
  return value.toFixed(2);
}

/** Is the person in the searched gallery at all? The decision first, then what it rests on. */
export function openSetPanel(search) {
  const answer = search.open_set;
  const titleId = `search-${search.search_id}-open-set`;
  if (!answer) {
    return h(
      "p",
      { class: "note open-set-none" },
      `Model version #${search.model_version.id} had no calibration when this search ran: its ` +
        "candidates carry no likelihood ratios and there is no open-set answer. " +
        "The similarities only rank them.",
    );
  }
  const facts = [
    ["Probability the person is in the gallery", formatProbability(answer.p_in_gallery)],
    ["Probability the first candidate is the person", formatProbability(answer.p_top_candidate)],
    [
      "Prior probability",
      `${answer.prior} (${PRIOR_SOURCES[answer.prior_source] || answer.prior_source})`,
    ],
    ["People searched", plural(answer.gallery_people, "person", "people")],
  ];
  return h(
    "section",
    { class: "open-set", "aria-labelledby": titleId },
    h("h4", { id: titleId }, "Is the person in the gallery?"),
    h(
      "p",
      { class: `decision decision-${answer.decision.replace(/ /g, "-")}` },
      "Open-set answer: ",
      h("strong", {}, capitalise(answer.decision)),
    ),
    h(
      "dl",
      { class: "facts facts-compact" },
      facts.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]),
    ),
    h("p", {}, answer.statement),
    h("p", { class: "hint" }, NO_IDENTIFICATION),
  );
}
