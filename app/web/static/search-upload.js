// A new search in a case: options, a drop zone with a file picker, and the upload's progress.

import { ApiError, upload } from "./api.js";
import { field, h, plural, select, uid } from "./dom.js";
import { inboxList } from "./inbox.js";
import { clearError, report, showDone, showError } from "./messages.js";

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
  // A file chosen while an option was out of range waits here, so that correcting the option
  // does not mean choosing the file again.
  const waiting = waitingFile((file) => run(file));
  const run = async (file) => {
    clearError();
    if (busy) {
      showError("A search is running; wait for its results before starting another.");
      return;
    }
    input.value = ""; // so that choosing the same file again starts it
    if (file.size > page.limits.max_upload_bytes) {
      const megabytes = (bytes) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
      showError(
        `${file.name} is ${megabytes(file.size)}; the service accepts files up to ` +
          `${megabytes(page.limits.max_upload_bytes)}.`,
      );
      waiting.hold(null);
      return;
    }
    if (!options.valid()) {
      waiting.hold(file);
      return;
    }
    waiting.hold(null);
    await submit(file.name, `/cases/${page.caseId}/searches`, options.form(file));
  };

  const searchWith = async (item, name) => {
    clearError();
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
      // The next search starts from the defaults: an option kept silently from this one (a side
      // filter, say) would narrow a search it was not meant for.
      options.reset();
      await page.reload();
      const number = page.detail.searches.findIndex((s) => s.search_id === result.search_id) + 1;
      showDone(
        `Search ${number} (#${result.search_id}) of ${name} done: ` +
          `${plural(result.candidates.length, "candidate")}. The search options are back to ` +
          "their defaults.",
      );
      focusSearch(result.search_id);
    } catch (error) {
      if (error instanceof ApiError && error.status !== 401) {
        showError(`${name} was not searched: ${error.message}`);
      } else {
        report(error);
      }
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
    options.changed,
    zone,
    waiting.element,
    status,
    inboxList(page, searchWith),
  );
}

/** The file that waits for its options to be corrected, with a button that searches with it. */
function waitingFile(search) {
  let file = null;
  const text = h("span");
  const go = h("button", { type: "button" }, "Search with it");
  const drop = h("button", { type: "button", class: "button-quiet" }, "Choose another");
  const element = h("p", { class: "waiting-file", hidden: true }, text, " ", go, " ", drop);
  const hold = (next) => {
    file = next;
    element.hidden = file === null;
    if (file) {
      text.textContent = `${file.name} is chosen and waits: correct the option marked above, then`;
      go.setAttribute("aria-label", `Search with ${file.name}`);
    }
  };
  go.addEventListener("click", () => {
    if (file) search(file);
  });
  drop.addEventListener("click", () => hold(null));
  return { element, hold };
}

function searchOptions(maxCandidates, casePrior) {
  const defaultK = String(Math.min(10, maxCandidates));
  const k = h("input", {
    type: "number",
    min: 1,
    max: maxCandidates,
    step: 1,
    value: defaultK,
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
      field(
        "Pixel spacing (mm)",
        spacing,
        "Optional. When given, it is used for the file in place of its own, even a DICOM " +
          "header's; blank: the file's own (PNG, JPEG and TIFF files carry none)",
      ),
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
  const settings = [
    setting("Candidates to list", k, defaultK, {
      problem: `enter a whole number from 1 to ${maxCandidates}`,
    }),
    setting("Pixel spacing", spacing, "", {
      shown: () => `${spacing.value} mm`,
      problem: "enter millimetres per pixel, above 0 and at most 10, or leave it blank",
    }),
    setting("Side filter", side, "", { shown: () => chosenText(side) }),
    setting("Sex filter", sex, "", { shown: () => chosenText(sex) }),
    setting("Body part filter", bodyPart, "", { shown: () => bodyPart.value.trim() }),
    setting("Query date", evidence.queryDate, "", {
      problem: "enter a whole date or leave it blank",
    }),
    setting("Prior", evidence.prior, "", {
      problem: "enter a probability above 0 and below 1, or leave it blank",
    }),
  ];
  const changed = changedOptions(settings);
  element.addEventListener("input", (event) => {
    const edited = settings.find((entry) => entry.control === event.target);
    if (edited && edited.control.validity.valid) edited.explain(null);
    changed.render();
  });
  element.addEventListener("change", changed.render);
  return {
    element,
    changed: changed.element,
    /** Every option in range; each that is not is explained beside it, and the first focused. */
    valid() {
      const wrong = settings.filter((entry) => !entry.check());
      if (wrong.length) wrong[0].control.focus();
      return wrong.length === 0;
    },
    reset() {
      for (const entry of settings) entry.reset();
      changed.render();
    },
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

function chosenText(control) {
  return control.selectedOptions.length ? control.selectedOptions[0].textContent : control.value;
}

/**
 * One search option: its default, how it reads when set, and what to say, beside it, when its
 * value is out of range (the browser's own bubble is gone once it is dismissed).
 */
function setting(name, control, fallback, { shown = () => control.value, problem = null } = {}) {
  const error = h("p", { class: "field-error", id: uid("error"), hidden: true });
  control.closest(".field").append(error);
  const explain = (message) => {
    error.hidden = message === null;
    error.textContent = message === null ? "" : `${name}: ${message}.`;
    if (message === null) control.removeAttribute("aria-invalid");
    else control.setAttribute("aria-invalid", "true");
    const described = (control.getAttribute("aria-describedby") || "").split(" ");
    const others = described.filter((id) => id && id !== error.id);
    control.setAttribute("aria-describedby", [...others, ...(message ? [error.id] : [])].join(" "));
  };
  return {
    name,
    control,
    explain,
    isDefault: () => control.value.trim() === fallback,
    shown,
    check() {
      const ok = control.validity.valid;
      const typed = control.value ? `; it is ${control.value}` : "";
      explain(ok ? null : `${problem || control.validationMessage}${typed}`);
      return ok;
    },
    reset() {
      control.value = fallback;
      control.setCustomValidity("");
      explain(null);
    },
  };
}

/** The options that differ from their defaults, shown where the file is chosen, each with a
 * button that sets it back. */
function changedOptions(settings) {
  const list = h("ul", {});
  const element = h(
    "div",
    { class: "options-changed", hidden: true },
    h("span", { class: "options-changed-title" }, "This search uses:"),
    list,
  );
  const render = () => {
    const changed = settings.filter((entry) => !entry.isDefault());
    element.hidden = changed.length === 0;
    list.replaceChildren(
      ...changed.map((entry) => {
        const clear = h(
          "button",
          { type: "button", class: "button-quiet", "aria-label": `Clear ${entry.name}` },
          "Clear",
        );
        clear.addEventListener("click", () => {
          entry.reset();
          entry.control.dispatchEvent(new Event("input", { bubbles: true }));
          entry.control.focus();
        });
        return h("li", {}, h("strong", {}, `${entry.name}: ${entry.shown()}`), " ", clear);
      }),
    );
  };
  return { element, render };
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
    queryDate,
    prior,
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
