// The admin view: the service's state, model versions, the index, and the jobs that change them.

import { api, ApiError, readiness } from "./api.js";
import { calibrationPanel, METHODS } from "./admin-calibration.js";
import { column, columnHelp, factList } from "./admin-help.js";
import {
  badge,
  capitalise,
  field,
  formatSimilarity,
  formatTime,
  h,
  select,
  table,
  title,
} from "./dom.js";
import { announce, clearError, guarded, report, submitting } from "./messages.js";

const POLL_MS = 2000;
const UNFINISHED = ["queued", "running"];
const SECONDS = { seconds: true };

export async function adminView(ctx) {
  ctx.setTitle("Administration");
  if (ctx.me.role !== "admin") {
    ctx.root.replaceChildren(
      title(1, "Administration"),
      h("p", { class: "note" }, "This view needs an admin key. Ask your administrator."),
    );
    return;
  }
  const admin = {
    ctx,
    service: h("div", {}, h("p", { class: "loading" }, "Loading…")),
    models: h("div", {}, h("p", { class: "loading" }, "Loading…")),
    jobs: h("div", {}, h("p", { class: "loading" }, "Loading…")),
    timer: null,
    unfinished: new Set(),
  };
  ctx.onLeave(() => clearTimeout(admin.timer));
  admin.calibration = calibrationPanel(ctx, () => refreshJobs(admin));

  ctx.root.replaceChildren(
    h("div", { class: "page-head" }, title(1, "Administration")),
    h(
      "div",
      { class: "columns" },
      h(
        "section",
        { class: "panel", "aria-labelledby": "service-title" },
        h("h2", { id: "service-title" }, "Service"),
        admin.service,
        rebuildButton(admin),
      ),
      registerForm(admin),
    ),
    h(
      "section",
      { class: "panel", "aria-labelledby": "models-title" },
      h("h2", { id: "models-title" }, "Model versions"),
      admin.models,
    ),
    admin.calibration.element,
    h(
      "section",
      { class: "panel", "aria-labelledby": "jobs-title" },
      h("h2", { id: "jobs-title" }, "Jobs"),
      h("p", { class: "hint" }, "Refreshed every 2 seconds while a job is queued or running."),
      admin.jobs,
    ),
  );
  await Promise.all([refreshService(admin), refreshJobs(admin)]);
}

// ---- Service and models ---------------------------------------------------------------------------

async function refreshService(admin) {
  const [ready, models] = await Promise.all([readiness(), api("/admin/models")]);
  if (!admin.ctx.alive()) return;
  const checks = ready.checks;
  const active = models.find((model) => model.active);
  const facts = [
    ["Ready", ready.ready ? "Yes" : "No"],
    ["Database", checks.database ?? "—"],
    ["Model", checks.model ?? "—"],
    ["Index", checks.index ?? "—"],
    ["Index kind", checks.index_kind ?? "—"],
    ["Index size", checks.index_size !== undefined ? `${checks.index_size} images` : "—"],
    [
      "Index generation",
      checks.index_generation !== undefined ? String(checks.index_generation) : "—",
    ],
    ["Index build", active ? String(active.index_build) : "—"],
    ["Last rebuilt", lastRebuilt(active)],
    [
      "Active model version",
      active
        ? `#${active.id} (sha256 ${active.sha256.slice(0, 12)}…)`
        : checks.model_version !== undefined
          ? `#${checks.model_version}`
          : "None",
    ],
  ];
  admin.service.replaceChildren(factList(facts));
  admin.models.replaceChildren(...modelTable(admin, models));
  admin.calibration.update(models);
}

function lastRebuilt(active) {
  if (!active) return "—";
  if (!active.index_published_at) return "Not since the server built it from the database";
  return (
    `${formatTime(active.index_published_at, SECONDS)}` +
    (active.index_published_by_job ? ` by job #${active.index_published_by_job}` : "")
  );
}

function valMap(model) {
  const value = model.metrics ? model.metrics.val_mAP : undefined;
  return typeof value === "number" ? formatSimilarity(value) : "—";
}

function modelTable(admin, models) {
  const rows = models.map((model) =>
    h(
      "tr",
      {},
      h("td", {}, `#${model.id}`),
      h("td", { class: "mono", title: model.sha256 }, `${model.sha256.slice(0, 12)}…`),
      h("td", { class: "mono" }, model.checkpoint_path),
      h("td", { class: "number" }, valMap(model)),
      h(
        "td",
        {},
        model.calibration
          ? `#${model.calibration.id} (${model.calibration.method})`
          : h("span", { class: "muted" }, "None"),
      ),
      h("td", { class: "number" }, String(model.dimension)),
      h("td", { class: "number" }, String(model.embedded_images)),
      h("td", {}, formatTime(model.created_at)),
      h(
        "td",
        {},
        model.active
          ? badge("Active", "active")
          : h(
              "button",
              {
                type: "button",
                class: "button-quiet",
                onClick: guarded(async () => {
                  const question =
                    `Activate model version #${model.id}? Every image is embedded again and a new ` +
                    "index built; searches go on with the current model meanwhile.";
                  if (!window.confirm(question)) return;
                  clearError();
                  const job = await api(`/admin/models/${model.id}/activate`, { method: "POST" });
                  announce(`Activation of model version ${model.id} queued as job ${job.id}`);
                  await refreshJobs(admin);
                }),
              },
              "Activate",
              h("span", { class: "visually-hidden" }, ` model version #${model.id}`),
            ),
      ),
    ),
  );
  const shown = table(
    "Registered model versions",
    [
      "Version",
      "SHA-256",
      "Checkpoint",
      column("val_mAP", true),
      column("Calibration"),
      column("Dimension", true),
      column("Embedded images", true),
      "Registered",
      "Status",
    ],
    rows,
    "No model version is registered.",
  );
  return [shown, columnHelp(["val_mAP", "Calibration", "Dimension", "Embedded images"])];
}

function registerForm(admin) {
  const path = h("input", {
    type: "text",
    required: true,
    maxlength: 4096,
    autocomplete: "off",
    spellcheck: "false",
  });
  const manifest = h("input", {
    type: "text",
    maxlength: 4096,
    autocomplete: "off",
    spellcheck: "false",
  });
  const method = select(METHODS);
  const submit = h("button", { type: "submit" }, "Register model");
  return h(
    "section",
    { class: "panel", "aria-labelledby": "register-title" },
    h("h2", { id: "register-title" }, "Register a model"),
    h(
      "form",
      {
        onSubmit: submitting(submit, async () => {
          const body = { checkpoint_path: path.value.trim() };
          if (manifest.value.trim()) {
            Object.assign(body, {
              calibration_manifest: manifest.value.trim(),
              calibration_method: method.value,
            });
          }
          const model = await api("/admin/models", { method: "POST", body });
          path.value = "";
          manifest.value = "";
          announce(`Model version ${model.id} registered`);
          await Promise.all([refreshService(admin), refreshJobs(admin)]);
        }),
      },
      field(
        "Checkpoint path",
        path,
        "A file from radmatch train, on the server's disk; it is registered, not activated",
      ),
      h(
        "div",
        { class: "field-row" },
        field(
          "Calibration manifest (optional)",
          manifest,
          "People never trained on, to fit its calibration on; blank: the checkpoint's own",
        ),
        field("Calibration method", method),
      ),
      submit,
    ),
  );
}

function rebuildButton(admin) {
  const button = h("button", { type: "button", class: "button-quiet" }, "Rebuild index");
  // Visible, not only announced: what the click did, or that a rebuild was already on its way.
  const outcome = h("p", { class: "note", role: "status", hidden: true });
  button.addEventListener(
    "click",
    submitting(button, async () => {
      outcome.hidden = true;
      try {
        const job = await api("/admin/index/rebuild", { method: "POST" });
        outcome.textContent = `Index rebuild queued as job #${job.id}.`;
      } catch (error) {
        // 409: one is queued or running already, and the server named it; nothing was added.
        if (!(error instanceof ApiError) || error.status !== 409) throw error;
        outcome.textContent = error.message;
      }
      outcome.hidden = false;
      announce(outcome.textContent);
      await refreshJobs(admin);
    }),
  );
  return h(
    "div",
    {},
    h(
      "div",
      { class: "actions" },
      button,
      h(
        "span",
        { class: "hint" },
        "From the stored embeddings of the active model; searches go on meanwhile.",
      ),
    ),
    outcome,
  );
}

// ---- Jobs ---------------------------------------------------------------------------------------

async function refreshJobs(admin) {
  clearTimeout(admin.timer);
  const page = await api("/admin/jobs?limit=25");
  if (!admin.ctx.alive()) return;
  admin.jobs.replaceChildren(jobTable(admin, page));
  const unfinished = new Set(
    page.items.filter((job) => UNFINISHED.includes(job.status)).map((job) => job.id),
  );
  // A job that just finished may have changed the index or the active model.
  const finished = [...admin.unfinished].some((id) => !unfinished.has(id));
  admin.unfinished = unfinished;
  if (finished) await refreshService(admin);
  if (unfinished.size > 0) {
    admin.timer = setTimeout(() => refreshJobs(admin).catch(report), POLL_MS);
  }
}

function progress(job) {
  if (!job.progress_total) {
    return h(
      "span",
      { class: "progress-cell" },
      job.progress_done ? String(job.progress_done) : "—",
    );
  }
  const bar = h("progress", {
    max: job.progress_total,
    value: job.progress_done,
    "aria-label": `Job ${job.id} progress`,
  });
  return h("span", { class: "progress-cell" }, bar, `${job.progress_done} / ${job.progress_total}`);
}

/** What the job is doing; once finished, what it did or why it stopped (a failure in red). A
 * job re-queued after its worker stopped heartbeating also says why. */
function message(job) {
  if (job.status === "failed" || job.status === "cancelled") {
    const failed = job.status === "failed";
    return h("span", { class: failed ? "error-text" : "" }, job.error || job.progress_message);
  }
  return [
    job.progress_message || "",
    job.error ? [h("br"), h("span", { class: "muted" }, job.error)] : null,
  ];
}

function jobTable(admin, page) {
  const rows = page.items.map((job) =>
    h(
      "tr",
      {},
      h("td", {}, `#${job.id}`),
      h("td", {}, job.kind.replace(/_/g, " ")),
      h("td", {}, badge(capitalise(job.status), job.status)),
      h("td", {}, progress(job)),
      h("td", {}, message(job)),
      h("td", { class: "nowrap" }, formatTime(job.created_at, SECONDS)),
      h("td", { class: "nowrap" }, job.started_at ? formatTime(job.started_at, SECONDS) : "—"),
      h("td", { class: "nowrap" }, job.finished_at ? formatTime(job.finished_at, SECONDS) : "—"),
      h("td", {}, cancelButton(admin, job)),
    ),
  );
  return table(
    `Jobs, newest first (${page.items.length} of ${page.total})`,
    [
      "Job",
      "Kind",
      "Status",
      column("Progress"),
      column("Message"),
      "Created",
      "Started",
      "Finished",
      h("span", { class: "visually-hidden" }, "Actions"),
    ],
    rows,
    "No jobs yet.",
  );
}

function cancelButton(admin, job) {
  if (!UNFINISHED.includes(job.status)) return null;
  if (job.cancel_requested) return h("span", { class: "muted" }, "Cancel requested");
  return h(
    "button",
    {
      type: "button",
      class: "button-danger",
      onClick: guarded(async () => {
        clearError();
        await api(`/admin/jobs/${job.id}/cancel`, { method: "POST" });
        announce(`Cancel of job ${job.id} requested`);
        await refreshJobs(admin);
      }),
    },
    "Cancel",
    h("span", { class: "visually-hidden" }, ` job #${job.id}`),
  );
}
