// What each number on the admin view means, in one sentence: shown as a line of help under a fact,
// as a column heading's tooltip, and in a "What the columns mean" list under a table.

import { h } from "./dom.js";

export const HELP = {
  Ready: "Whether this server can answer searches now: database, model and index all ok.",
  Database: "Whether the server reaches the case database.",
  Model: "Whether the active model version's checkpoint is loaded.",
  Index:
    "Whether the searched index holds exactly the stored embeddings of the active model " +
    "(checked id by id at its generation).",
  "Index kind": "How the index searches: flat compares the query with every image (exact).",
  "Index size": "How many images the index searches: the live images with the model's embedding.",
  "Index generation":
    "Counts every addition or removal of an image for the active model; a rebuild keeps it " +
    "unless images changed meanwhile.",
  "Index build":
    "How many times an index of the active model was rebuilt and published; servers load the " +
    "newest.",
  "Last rebuilt": "When the newest index build was published, and by which job.",
  "Active model version": "The model that embeds uploads and searches; its checkpoint's sha256.",
  val_mAP:
    "Mean average precision on the training run's validation people: how well each one's " +
    "other images rank first (1 is perfect).",
  Calibration: "The fit that turns similarities into likelihood ratios, and its method.",
  Dimension: "Length of the embedding vector the model makes of each image.",
  "Embedded images": "Live images that have this version's embedding (all of them once active).",
  Progress: "Steps done of the job's total: images embedded, epochs trained, files pulled.",
  Message: "What the job is doing, and once it ends what it did or why it stopped.",
  "Same-person pairs": "Pairs of images of one person the calibration was fitted on.",
  "Different-people pairs": "Pairs of images of two people the calibration was fitted on.",
  "Bounds (ELUB), as LRs":
    "Empirical lower and upper bounds: the likelihood ratios are capped to this range, which " +
    "the amount of data supports.",
  Cllr:
    "Log-likelihood-ratio cost: the overall quality of the likelihood ratios; 0 is perfect, 1 " +
    "is no information, lower is better.",
  "Cllr_min (discrimination)":
    "The Cllr of the best possible calibration of these scores: how well they separate " +
    "same-person from different-people pairs.",
  "Cllr_cal (calibration loss)":
    "Cllr minus Cllr_min: what the calibration loses against the best one.",
  "Equal error rate":
    "Where the share of same-person pairs called different equals that of different-people " +
    "pairs called same.",
  "Same-person pairs with LR below 1":
    "Misleading evidence: same-person pairs whose likelihood ratio favours different people.",
  "Different-people pairs with LR above 1":
    "Misleading evidence: different-people pairs whose likelihood ratio favours the same person.",
  "Pairs assessed": "How many pairs the cross-validated report is computed on.",
};
// The band table's short headings mean what the report's facts mean.
HELP.Cllr_min = HELP["Cllr_min (discrimination)"];
HELP.Cllr_cal = HELP["Cllr_cal (calibration loss)"];
HELP.EER = HELP["Equal error rate"];
HELP.ELUB = HELP["Bounds (ELUB), as LRs"];
HELP["Same-person, LR < 1"] = HELP["Same-person pairs with LR below 1"];
HELP["Different people, LR > 1"] = HELP["Different-people pairs with LR above 1"];

/** A list of facts, [name, value] each; a name with help gets it as a line under its value. */
export function factList(facts, attributes = {}) {
  return h(
    "dl",
    { class: "facts", ...attributes },
    facts.map(([name, value]) => [
      h("dt", { title: HELP[name] }, name),
      h("dd", {}, value),
      HELP[name] ? h("dd", { class: "fact-help" }, HELP[name]) : null,
    ]),
  );
}

/** A column heading whose help is its tooltip. */
export function column(text, numeric = false) {
  return { text, class: numeric ? "number" : undefined, help: HELP[text] };
}

/** The help of a table's columns that have some, as a list under a disclosure. */
export function columnHelp(names) {
  const known = names.filter((name) => HELP[name]);
  return h(
    "details",
    { class: "column-help" },
    h("summary", {}, "What the columns mean"),
    h(
      "dl",
      {},
      known.map((name) => [h("dt", {}, name), h("dd", {}, HELP[name])]),
    ),
  );
}
