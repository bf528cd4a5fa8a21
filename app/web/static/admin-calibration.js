// The admin view's calibrations: for a model version, what its similarity-to-LR calibration was
// fitted on and its curves, its cross-validated validation report with the four plots, and a job
// that fits it anew on a manifest.

import { column, columnHelp, factList } from "./admin-help.js";
import { api } from "./api.js";
import { field, formatTime, h, plural, select, table } from "./dom.js";
import { elubText } from "./evidence.js";
import { announce, submitting } from "./messages.js";

export const METHODS = [
  ["logistic", "Logistic regression"],
  ["kde", "Kernel density estimates"],
];
const PLOTS = [
  ["tippett", "Tippett plot: the share of same-person and of different-people pairs above each LR"],
  [
    "ece",
    "Empirical cross-entropy over prior odds, beside no information and the best calibration",
  ],
  ["pav", "The LRs against those of the best monotonic (PAV) calibration of the same scores"],
  ["scores", "Similarities of same-person and different-people pairs"],
];

/** The panel; update(models) follows the model versions as the admin view refreshes them. */
export function calibrationPanel(ctx, onJob) {
  const panel = { ctx, onJob, models: [], versionId: null, shown: null };
  panel.chooser = select([]);
  panel.chooser.addEventListener("change", () => {
    panel.versionId = Number(panel.chooser.value);
    render(panel);
  });
  panel.body = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  panel.element = h(
    "section",
    { class: "panel", "aria-labelledby": "calibration-title" },
    h("h2", { id: "calibration-title" }, "Calibration and validation"),
    h(
      "p",
      { class: "hint" },
      "A calibration turns a search's similarities into likelihood ratios. It is fitted on pairs " +
        "of images of people the model was never trained on.",
    ),
    h("div", { class: "field-row" }, field("Model version", panel.chooser)),
    panel.body,
  );
  panel.update = (models) => update(panel, models);
  return panel;
}

function update(panel, models) {
  panel.models = models;
  if (!models.some((model) => model.id === panel.versionId)) {
    const active = models.find((model) => model.active) || models[0];
    panel.versionId = active ? active.id : null;
  }
  panel.chooser.replaceChildren(
    ...models.map((model) =>
      h(
        "option",
        { value: String(model.id) },
        `#${model.id}${model.active ? " (active)" : ""}` +
          (model.calibration ? ` · calibration #${model.calibration.id}` : " · no calibration"),
      ),
    ),
  );
  if (panel.versionId !== null) panel.chooser.value = String(panel.versionId);
  // What is on screen stays (a report, a path being typed) unless the calibration changed.
  const model = chosen(panel);
  const shown = model ? `${model.id}:${model.calibration ? model.calibration.id : "none"}` : "";
  if (shown !== panel.shown) render(panel);
}

function chosen(panel) {
  return panel.models.find((model) => model.id === panel.versionId) || null;
}

function render(panel) {
  const model = chosen(panel);
  panel.shown = model ? `${model.id}:${model.calibration ? model.calibration.id : "none"}` : "";
  if (!model) {
    panel.body.replaceChildren(h("p", { class: "empty" }, "No model version is registered."));
    return;
  }
  const report = h("div", { class: "validation" });
  panel.body.replaceChildren(
    calibrationSummary(model),
    model.calibration ? validationButton(panel, model, report) : null,
    report,
    refitForm(panel, model),
  );
}

// ---- What the calibration is --------------------------------------------------------------------

function sourceText(source) {
  const people = plural(source.people, "person", "people");
  const counts = `${plural(source.images, "image")} of ${people}`;
  if (source.kind === "manifest") {
    const sha = source.manifest_sha256 ? ` (sha256 ${source.manifest_sha256.slice(0, 12)}…)` : "";
    return `${counts} from the manifest ${source.manifest}${sha}`;
  }
  return `${counts}: the training run's validation people, never trained on`;
}

function calibrationSummary(model) {
  const calibration = model.calibration;
  if (!calibration) {
    return h(
      "p",
      { class: "note" },
      `Model version #${model.id} has no calibration: its searches carry no likelihood ratios ` +
        "and no open-set answer. Fit one below on people the model was never trained on.",
    );
  }
  const facts = [
    ["Calibration", `#${calibration.id}`],
    ["Method", methodName(calibration.method)],
    ["Fitted", formatTime(calibration.created_at)],
    ["Fitted on", sourceText(calibration.source || {})],
  ];
  const rows = calibration.curves.map((curve) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, curve.label),
      h("td", { class: "number" }, String(curve.same_pairs)),
      h("td", { class: "number" }, String(curve.different_pairs)),
      h("td", { class: "number nowrap" }, elubText(curve.elub)),
    ),
  );
  const columns = ["Same-person pairs", "Different-people pairs", "Bounds (ELUB), as LRs"];
  return h(
    "div",
    {},
    factList(facts),
    table(
      `Curves of calibration #${calibration.id}: pooled, then by years between the images`,
      ["Curve", ...columns.map((name) => column(name, true))],
      rows,
    ),
    columnHelp(columns),
  );
}

function methodName(method) {
  const found = METHODS.find(([value]) => value === method);
  return found ? found[1] : method;
}

// ---- Its validation -----------------------------------------------------------------------------

function validationButton(panel, model, report) {
  const button = h(
    "button",
    { type: "button", class: "button-quiet" },
    "Show the validation report",
    h("span", { class: "visually-hidden" }, ` of model version #${model.id}`),
  );
  button.addEventListener(
    "click",
    submitting(button, async () => {
      report.replaceChildren(h("p", { class: "loading" }, "Loading the validation report…"));
      const validation = await api(`/admin/models/${model.id}/validation`);
      if (!panel.ctx.alive()) return;
      report.replaceChildren(...validationReport(panel.ctx, validation));
      announce(`Validation report of model version ${model.id} shown`);
    }),
  );
  return h("div", { class: "actions" }, button);
}

function decimals(value) {
  return typeof value === "number" ? value.toFixed(3) : "—";
}

function percent(value) {
  return typeof value === "number" ? `${(value * 100).toFixed(1)}%` : "—";
}

function validationReport(ctx, validation) {
  const report = validation.report;
  const calibration = validation.calibration;
  const misleading = report.misleading || {};
  const facts = [
    ["Cllr", decimals(report.cllr)],
    ["Cllr_min (discrimination)", decimals(report.cllr_min)],
    ["Cllr_cal (calibration loss)", decimals(report.cllr_cal)],
    ["Equal error rate", percent(report.eer)],
    ["Bounds (ELUB), as LRs", elubText(report.elub)],
    ["Same-person pairs with LR below 1", percent(misleading.same_person_below_1)],
    ["Different-people pairs with LR above 1", percent(misleading.different_people_above_1)],
    [
      "Pairs assessed",
      `${report.same_pairs} same-person, ${report.different_pairs} different-people`,
    ],
  ];
  return [
    h("h3", { id: "validation-title" }, `Validation of calibration #${calibration.id}`),
    h(
      "p",
      { class: "hint" },
      `Cross-validated over people in ${report.folds} folds: each pair's LR comes from a ` +
        "calibration fitted without its people. Lower Cllr is better; 1 is no information.",
    ),
    factList(facts, { "aria-labelledby": "validation-title" }),
    bandTable(report.bands || {}),
    plotList(ctx, validation),
  ];
}

function bandTable(bands) {
  const rows = Object.entries(bands).map(([label, band]) =>
    h(
      "tr",
      {},
      h("th", { scope: "row" }, label),
      h("td", { class: "number" }, String(band.same_pairs)),
      h("td", { class: "number" }, String(band.different_pairs)),
      h("td", { class: "number" }, decimals(band.cllr)),
      h("td", { class: "number" }, decimals(band.cllr_min)),
      h("td", { class: "number" }, decimals(band.cllr_cal)),
      h("td", { class: "number" }, percent(band.eer)),
      h("td", { class: "number nowrap" }, elubText(band.elub)),
      h("td", { class: "number" }, percent((band.misleading || {}).same_person_below_1)),
      h("td", { class: "number" }, percent((band.misleading || {}).different_people_above_1)),
    ),
  );
  // Each band's numbers mean what the report's facts above mean: the headings carry tooltips.
  const columns = [
    "Same-person pairs",
    "Different-people pairs",
    "Cllr",
    "Cllr_min",
    "Cllr_cal",
    "EER",
    "ELUB",
    "Same-person, LR < 1",
    "Different people, LR > 1",
  ];
  return table(
    "Validation by years between the images (pairs of unknown dates count overall only)",
    ["Years", ...columns.map((name) => column(name, true))],
    rows,
    "No bands of years in this report.",
  );
}

/** The plots need the key, so they come as blobs; the calibration's id keeps a refit's apart. */
function plotList(ctx, validation) {
  const id = validation.calibration.id;
  return h(
    "ul",
    { class: "plots", "aria-label": `Validation plots of calibration #${id}` },
    PLOTS.filter(([name]) => validation.plots[name]).map(([name, caption]) => {
      const path = `${validation.plots[name].replace(/^\/api\/v1(?=\/)/, "")}?calibration=${id}`;
      return h(
        "li",
        {},
        h(
          "figure",
          { class: "plot" },
          ctx.scope.image(path, caption, "plot-image"),
          h("figcaption", {}, caption),
        ),
      );
    }),
  );
}

// ---- Fitting it anew ----------------------------------------------------------------------------

function refitForm(panel, model) {
  const manifest = h("input", {
    type: "text",
    required: true,
    maxlength: 4096,
    autocomplete: "off",
    spellcheck: "false",
  });
  const method = select(METHODS);
  const submit = h("button", { type: "submit", class: "button-quiet" }, "Refit the calibration");
  const queued = h("p", { class: "note", hidden: true });
  return h(
    "form",
    {
      class: "refit",
      "aria-labelledby": "refit-title",
      onSubmit: submitting(submit, async () => {
        const job = await api(`/admin/models/${model.id}/calibrations`, {
          method: "POST",
          body: { manifest: manifest.value.trim(), method: method.value },
        });
        queued.textContent =
          `Calibration job #${job.id} is ${job.status}: see Jobs below. Once it succeeds, ` +
          `its calibration becomes model version #${model.id}'s current one.`;
        queued.hidden = false;
        announce(`Calibration of model version ${model.id} queued as job ${job.id}`);
        await panel.onJob();
      }),
    },
    h("h3", { id: "refit-title" }, `Refit the calibration of model version #${model.id}`),
    h(
      "div",
      { class: "field-row" },
      field(
        "Calibration manifest path",
        manifest,
        "A cohort manifest on the server's disk, of people the model was never trained on",
      ),
      field("Method", method),
    ),
    submit,
    queued,
  );
}
