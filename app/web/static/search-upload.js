// A new search in a case: options, a drop zone with a file picker, and the upload's progress.

import { upload } from "./api.js";
import { field, h, plural, select, uid } from "./dom.js";
import { inboxList } from "./inbox.js";
import { announce, clearError, report, showError } from "./messages.js";

export function searchPanel(page) {
  const options = searchOptions(page.limits.max_search_k, page.detail.prior_in_gallery);
  const input = h("input", {
    type: "file",
    class: "visually-hidden",
    accept:
      ".dcm,.dicom,.png,.jpg,.jpeg,.tif,.tiff,application/dicom,image/png,image/jpeg,image/tiff",
  });
  // The input sits inside its label, the drop zone, so that keyboard focus outlines the zone.
  const zone = h(
    "label",
    { class: "dropzone" },
    h("span", { class: "dropzone-title" }, "Choose a radiograph to search with"),
    h("span", { class: "hint" }, "or drop a DICOM, PNG, JPEG or TIFF file here"),
    input,
  );
  const progress = h("progress", { max: 100, value: 0 });
  const progressText = h("span", { id: uid("progress-text") });
  progress.setAttribute("aria-labelledby", progressText.id);
  const status = h("div", { class: "upload-status", hidden: true }, progress, progressText);

  let busy = false;
  const run = async (file) => {
    if (busy) {
      showError("A search is running; wait for its results before starting another.");
      return;
    }
    if (!options.valid()) {
      input.value = ""; // so that choosing the same file again, once corrected, starts it
      return;
    }
    if (file.size > page.limits.max_upload_bytes) {
      const megabytes = (bytes) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
      showError(
        `${file.name} is ${megabytes(file.size)}; the service accepts files up to ` +
          `${megabytes(page.limits.max_upload_bytes)}.`,
      );
      input.value = "";
      return;
    }
    await submit(file.name, `/cases/${page.caseId}/searches`, options.form(file));
  };

  const searchWith = async (item, name) => {
    if (busy) {
      showError("A search is running; wait for its results before starting another.");
      return;
    }
    if (options.valid()) {
      await submit(name, `/cases/${page.caseId}/inbox/${item.id}/searches`, options.form(null));
    }
  };

  const submit = async (name, path, form) => {
    busy = true;
    clearError();
    input.disabled = true;
    zone.setAttribute("aria-disabled", "true");
    status.hidden = false;
    progress.value = 0;
    progressText.textContent = `Uploading ${name}…`;
    try {
      const result = await upload(path, form, {
        onProgress: (fraction) => {
          if (fraction === null) return;
          progress.value = Math.round(fraction * 100);
          progressText.textContent = `Uploading ${name}: ${Math.round(fraction * 100)}%`;
        },
        onSent: () => {
          progress.removeAttribute("value"); // indeterminate while the server works
          progressText.textContent = "Searching…";
        },
      });
      announce(`Search ${result.search_id} done: ${plural(result.candidates.length, "candidate")}`);
      await page.reload();
      focusSearch(result.search_id);
    } catch (error) {
      report(error);
    } finally {
      busy = false;
      input.disabled = false;
      input.value = "";
      zone.removeAttribute("aria-disabled");
      status.hidden = true;
    }
  };

  input.addEventListener("change", () => {
    if (input.files.length) run(input.files[0]);
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragover");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragover"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragover");
    const files = event.dataTransfer ? event.dataTransfer.files : [];
    if (files.length > 1) showError("Drop one radiograph at a time.");
    else if (files.length === 1) run(files[0]);
  });

  return h(
    "section",
    { class: "panel", "aria-labelledby": "new-search-title" },
    h("h2", { id: "new-search-title" }, "New search"),
    options.element,
    zone,
    status,
    inboxList(page, searchWith),
  );
}

function searchOptions(maxCandidates, casePrior) {
  const k = h("input", {
    type: "number",
    min: 1,
    max: maxCandidates,
    step: 1,
    value: Math.min(10, maxCandidates),
    required: true,
  });
  const spacing = h("input", {
    type: "number",
    min: 0.001,
    max: 10,
    step: "any",
    inputmode: "decimal",
  });
  const side = select([
    ["", "Any"],
    ["L", "Left"],
    ["R", "Right"],
  ]);
  const sex = select([
    ["", "Any"],
    ["F", "Female"],
    ["M", "Male"],
    ["X", "Other / unknown"],
  ]);
  const bodyPart = h("input", {
    type: "text",
    maxlength: 32,
    placeholder: "e.g. KNEE",
    autocomplete: "off",
  });
  const evidence = evidenceOptions(casePrior);
  const element = h(
    "fieldset",
    {},
    h("legend", {}, "Search options"),
    h(
      "div",
      { class: "field-row" },
      field("Candidates to list", k),
      field("Pixel spacing (mm)", spacing, "For PNG, JPEG, TIFF; DICOM says"),
    ),
    h(
      "div",
      { class: "field-row" },
      field("Side", side),
      field("Sex", sex),
      field("Body part", bodyPart),
    ),
    evidence.element,
  );
  return {
    element,
    valid: () => [k, spacing, ...evidence.inputs].every((input) => input.reportValidity()),
    /** The options as a search's form, with the file to search with, if it is uploaded. */
    form(file) {
      const form = new FormData();
      if (file) form.append("file", file, file.name);
      form.append("k", k.value);
      if (spacing.value) form.append("pixel_spacing_mm", spacing.value);
      if (side.value) form.append("side", side.value);
      if (sex.value) form.append("sex", sex.value);
      if (bodyPart.value.trim()) form.append("body_part", bodyPart.value.trim());
      evidence.addTo(form);
      return form;
    },
  };
}

/** What the evidence of the candidates depends on: the query's date and the prior. */
function evidenceOptions(casePrior) {
  const queryDate = h("input", { type: "date", name: "query_date" });
  const prior = h("input", {
    type: "number",
    name: "prior",
    min: 0,
    max: 1,
    step: "any",
    inputmode: "decimal",
  });
  // 0 and 1 are no priors: no evidence could move them.
  prior.addEventListener("input", () => {
    const value = Number(prior.value);
    const outside = prior.value !== "" && (value <= 0 || value >= 1);
    prior.setCustomValidity(outside ? "Enter a probability above 0 and below 1." : "");
  });
  const fallback = casePrior ? `the case's, ${casePrior}` : "0.5 (the case sets none)";
  return {
    inputs: [queryDate, prior],
    element: h(
      "div",
      { class: "field-row" },
      field(
        "Date of the query radiograph",
        queryDate,
        "Optional; overrides a DICOM file's date. The years between it and each candidate's " +
          "image choose the calibration",
      ),
      field(
        "Prior probability that the person is in the gallery",
        prior,
        `Optional, above 0 and below 1; blank: ${fallback}`,
      ),
    ),
    addTo(form) {
      if (queryDate.value) form.append("query_date", queryDate.value);
      if (prior.value) form.append("prior", prior.value);
    },
  };
}

function focusSearch(searchId) {
  const heading = document.getElementById(`search-${searchId}-title`);
  if (!heading) return;
  heading.scrollIntoView({ block: "start" });
  heading.focus({ preventScroll: true });
}

/** A file dropped beside the drop zone would otherwise replace the page with the image. */
export function preventStrayDrops(ctx) {
  const stop = (event) => {
    if (!event.target.closest || !event.target.closest(".dropzone")) event.preventDefault();
  };
  window.addEventListener("dragover", stop);
  window.addEventListener("drop", stop);
  ctx.onLeave(() => {
    window.removeEventListener("dragover", stop);
    window.removeEventListener("drop", stop);
  });
}
