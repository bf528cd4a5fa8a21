// The examiner's marks and measurements on a comparison: numbered marks on the same feature in
// both images, each with a short label, and distances and angles on either image. Points are kept
// in the original's pixels, unflipped, as the service takes them; they are drawn on each image's
// overlay, so that they zoom, pan and flip with it. They are sent with the conclusion and cleared
// once it is recorded.
//
// A mark is placed by a click on its feature in one image and a click in the other, in either
// order: a click in an image completes the lowest-numbered mark still missing its point there, or
// starts a new mark. Enter on a focused image places the point at the centre of the view, so that
// the keyboard alone (Shift+arrows to pan, + and − to zoom) can place every point.
//
// A recorded conclusion's marks and measurements can be shown again, dashed and apart from the
// unsaved ones, on the candidate's image they were made on.

import { h, svg } from "./dom.js";
import { formatValue, PIXELS_NOTE } from "./findings.js";
import { CANDIDATE, QUERY } from "./viewer-controls.js";

const SIDES = ["query", "candidate"];
const MAX_MARKS = 50;
const MAX_MEASUREMENTS = 50;
const MAX_NUMBER = 99;
const POINTS = { distance: 2, angle: 3 };
// Drawn at these sizes on screen whatever the zoom.
const MARK_RADIUS = 7;
const DOT_RADIUS = 3;
const FONT_SIZE = 14;
const STROKE = 2;

export const TOOLS = [
  ["pan", "Pan", "Escape", "Drag to pan; clicks place nothing"],
  ["mark", "Mark features", "m", "Click a feature on one image, then the same on the other"],
  ["distance", "Measure distance", "d", "Click the two ends, on one image"],
  ["angle", "Measure angle", "a", "Click one end, the vertex, then the other end, on one image"],
];

/** An angle one of whose ends is its vertex: it has no value. */
function armless(angle) {
  const [a, vertex, b] = angle.points;
  return [a, b].some((end) => end.x === vertex.x && end.y === vertex.y);
}

/** A distance in mm where the image's pixel spacing is known, else in pixels; an angle in
 * degrees at its middle point. */
function measure(kind, points, spacingMm) {
  if (kind === "distance") {
    const [a, b] = points;
    const pixels = Math.hypot(b.x - a.x, b.y - a.y);
    return spacingMm ? { value: pixels * spacingMm, unit: "mm" } : { value: pixels, unit: "px" };
  }
  const [a, vertex, b] = points;
  const first = [a.x - vertex.x, a.y - vertex.y];
  const second = [b.x - vertex.x, b.y - vertex.y];
  const cross = first[0] * second[1] - first[1] * second[0];
  const dot = first[0] * second[0] + first[1] * second[1];
  return { value: (Math.abs(Math.atan2(cross, dot)) * 180) / Math.PI, unit: "°" };
}

export class Annotations {
  constructor(viewer) {
    this.viewer = viewer;
    this.marks = []; // {number, label, points: [query point | null, candidate point | null]}
    this.measurements = []; // {pane, kind, points, label}
    this.pending = null; // a measurement being placed: {pane, kind, points}
    this.recorded = null; // a recorded conclusion whose marks are shown, read-only
    this.recordedNote = h("div", { class: "note", id: "recorded-shown", hidden: true });
    this.tool = "pan";
    this.candidateImageId = null;
    this.toolButtons = new Map();
    this.nextLabel = h("input", { type: "text", maxlength: 200, id: "next-mark-label" });
    this.step = h("p", { class: "hint annotation-step", "aria-live": "polite" });
    this.cleared = h("p", { class: "note", id: "annotations-cleared", hidden: true });
    this.markList = h("ol", { class: "annotation-list", "aria-label": "Marks" });
    this.measurementList = h("ul", { class: "annotation-list", "aria-label": "Measurements" });
    this.listed = h("div");
    this.toolbar = this.makeToolbar();
    this.panel = h(
      "section",
      { class: "panel", "aria-labelledby": "annotations-title" },
      h("h2", { id: "annotations-title" }, "Marks and measurements"),
      h(
        "p",
        { class: "hint" },
        "Kept with the conclusion you record next, with the candidate's image shown. Showing " +
          "another image of the candidate, or another candidate, clears the points on the " +
          "candidate's side; those on the query stay. Points are stored in the original " +
          "images' pixels, unflipped.",
      ),
      this.recordedNote,
      this.cleared,
      this.listed,
    );
    viewer.onChange(() => this.draw());
    this.render();
  }

  makeToolbar() {
    const buttons = TOOLS.map(([tool, text, key, help]) => {
      const button = h(
        "button",
        {
          type: "button",
          class: "button-quiet",
          "aria-pressed": "false",
          "aria-keyshortcuts": key,
          title: help,
          onClick: () => this.setTool(tool),
        },
        text,
      );
      this.toolButtons.set(tool, button);
      return button;
    });
    return h(
      "div",
      { class: "controls annotation-tools", role: "group", "aria-label": "Marking and measuring" },
      h("div", { class: "control-group", role: "group", "aria-label": "Tool" }, buttons),
      h(
        "div",
        { class: "control-group" },
        h("label", { for: this.nextLabel.id }, "Label of the next mark"),
        this.nextLabel,
      ),
      this.step,
    );
  }

  setTool(tool) {
    this.tool = tool;
    this.pending = null;
    this.viewer.setPicker(tool === "pan" ? null : (index, point) => this.place(index, point));
    this.render();
  }

  /** A point picked on pane `index` (null: off the image, or its original size is unknown). */
  place(index, point) {
    if (!point) {
      const pane = this.viewer.panes[index];
      this.say(
        pane.original
          ? "That is off the image: nothing was placed."
          : `The ${SIDES[index]} image's size in pixels is not on record: nothing can be ` +
              "placed on it.",
      );
      return;
    }
    const refusal =
      this.tool === "mark"
        ? this.placeMark(index, point)
        : this.placeMeasurementPoint(index, point);
    this.render();
    if (refusal) this.say(refusal);
  }

  /** Returns why nothing was placed, if so. */
  placeMark(index, point) {
    const open = this.marks.find((mark) => !mark.points[index]);
    if (open) {
      open.points[index] = point;
      return null;
    }
    if (this.marks.length >= MAX_MARKS) return `At most ${MAX_MARKS} marks go with one conclusion.`;
    const points = [null, null];
    points[index] = point;
    this.marks.push({ number: this.freeNumber(), label: this.nextLabel.value.trim(), points });
    this.nextLabel.value = "";
    return null;
  }

  /** One more than the highest in use, so that a drawn number never changes its meaning. */
  freeNumber() {
    const used = new Set(this.marks.map((mark) => mark.number));
    const next = Math.max(0, ...used) + 1;
    if (next <= MAX_NUMBER) return next;
    let number = 1;
    while (used.has(number)) number += 1;
    return number;
  }

  /** Returns why nothing was placed, if so. */
  placeMeasurementPoint(index, point) {
    const kind = this.tool;
    if (!this.pending || this.pending.pane !== index || this.pending.kind !== kind) {
      this.pending = { pane: index, kind, points: [] };
    }
    this.pending.points.push(point);
    if (this.pending.points.length < POINTS[kind]) return null;
    const complete = this.pending;
    this.pending = null;
    if (this.measurements.length >= MAX_MEASUREMENTS) {
      return `At most ${MAX_MEASUREMENTS} measurements go with one conclusion.`;
    }
    this.measurements.push({ ...complete, label: "" });
    return null;
  }

  say(text) {
    this.step.textContent = text;
  }

  /** What the next click does, in words. */
  nextStep() {
    if (this.tool === "pan") {
      return "Choose Mark features, Measure distance or Measure angle to place points.";
    }
    const keys = " (or focus an image and press Enter for the centre of the view)";
    if (this.tool === "mark") {
      const open = this.marks.find((mark) => !mark.points[QUERY] || !mark.points[CANDIDATE]);
      if (open) {
        const missing = open.points[QUERY] ? "candidate" : "query";
        return `Mark ${open.number}: click the same feature on the ${missing}${keys}.`;
      }
      return `Click a feature on either image for mark ${this.freeNumber()}${keys}.`;
    }
    const wanted = ["first end", "vertex", "other end"];
    const done = this.pending ? this.pending.points.length : 0;
    const which = this.tool === "distance" ? ["one end", "other end"][done] : wanted[done];
    const where = this.pending ? ` on the ${SIDES[this.pending.pane]}` : "";
    return `${this.tool === "distance" ? "Distance" : "Angle"}: click the ${which}${where}${keys}.`;
  }

  /** A new image in the candidate's pane: points on the previous one are no use on it. */
  candidateImage(imageId) {
    if (imageId === this.candidateImageId) return;
    if (this.recorded) this.showRecorded(null);
    const before = this.candidateImageId;
    this.candidateImageId = imageId;
    if (this.pending && this.pending.pane === CANDIDATE) this.pending = null;
    const marks = this.marks.filter((mark) => mark.points[CANDIDATE]).length;
    const measurements = this.measurements.filter((item) => item.pane === CANDIDATE).length;
    if (before === null || (marks === 0 && measurements === 0)) {
      this.render();
      return;
    }
    for (const mark of this.marks) mark.points[CANDIDATE] = null;
    this.measurements = this.measurements.filter((item) => item.pane !== CANDIDATE);
    const parts = [];
    if (marks) parts.push(`the candidate's points of ${marks} ${marks === 1 ? "mark" : "marks"}`);
    if (measurements) {
      parts.push(`${measurements} ${measurements === 1 ? "measurement" : "measurements"}`);
    }
    this.cleared.textContent =
      `Another candidate image is shown: ${parts.join(" and ")} on the previous one ` +
      "were cleared. Marks and measurements go with one image of the candidate; those on the " +
      "query are kept.";
    this.cleared.hidden = false;
    this.render();
  }

  /** Draw a recorded conclusion's marks and measurements (the candidate's image they were made
   * on must be shown); null stops. */
  showRecorded(entry, when = "") {
    this.recorded = entry;
    this.recordedNote.hidden = !entry;
    this.recordedNote.replaceChildren(
      ...(entry
        ? [
            `Shown dashed on the images: the marks and measurements of the conclusion recorded ` +
              `by ${entry.examiner}${when ? ` at ${when}` : ""}. `,
            h(
              "button",
              { type: "button", class: "button-quiet", onClick: () => this.showRecorded(null) },
              "Hide them",
            ),
          ]
        : []),
    );
    this.draw();
  }

  /** Everything cleared (the conclusion they went with is recorded). */
  clear() {
    this.marks = [];
    this.measurements = [];
    this.pending = null;
    this.cleared.hidden = true;
    this.render();
  }

  isEmpty() {
    return this.marks.length === 0 && this.measurements.length === 0;
  }

  /** Why the marks cannot be sent as they are; null when they can. */
  problem() {
    for (const mark of this.marks) {
      const missing = SIDES.filter((_, index) => !mark.points[index]);
      if (missing.length) {
        const where = missing.join(" or the ");
        return `Mark ${mark.number} has no point on the ${where} yet: place it or remove the mark.`;
      }
      if (!mark.label) return `Mark ${mark.number} needs a label: what the feature is.`;
    }
    const flat = this.measurements.findIndex((item) => item.kind === "angle" && armless(item));
    if (flat >= 0) {
      return (
        `Measurement ${flat + 1} is an angle with an end on its vertex: remove it and place ` +
        "it again."
      );
    }
    if (this.marks.length && this.candidateImageId === null) {
      return "Marks need the candidate's image they were placed on, and none is shown.";
    }
    return null;
  }

  /** The fields of a conclusion's body (POST /cases/{id}/conclusions); none when empty. */
  payload() {
    if (this.isEmpty()) return {};
    return {
      candidate_image_id: this.candidateImageId,
      marks: this.marks.map((mark) => ({
        number: mark.number,
        label: mark.label,
        query: mark.points[QUERY],
        candidate: mark.points[CANDIDATE],
      })),
      measurements: this.measurements.map((item) => ({
        image: SIDES[item.pane],
        kind: item.kind,
        points: item.points,
        label: item.label,
      })),
    };
  }

  valueOf(item) {
    const spacing = this.viewer.panes[item.pane].physical?.spacing ?? null;
    return measure(item.kind, item.points, spacing);
  }

  render() {
    for (const [tool, button] of this.toolButtons) {
      button.setAttribute("aria-pressed", String(tool === this.tool));
    }
    this.say(this.nextStep());
    this.markList.replaceChildren(...this.marks.map((mark) => this.markItem(mark)));
    this.measurementList.replaceChildren(
      ...this.measurements.map((item, index) => this.measurementItem(item, index + 1)),
    );
    const shown = [
      this.marks.length ? [h("h3", {}, "Marks"), this.markList] : [],
      this.measurements.length ? [h("h3", {}, "Measurements"), this.measurementList] : [],
    ].flat();
    this.listed.replaceChildren(
      ...(shown.length
        ? shown
        : [h("p", { class: "muted" }, "None yet: choose a tool above the images.")]),
    );
    this.draw();
  }

  markItem(mark) {
    const label = h("input", {
      type: "text",
      maxlength: 200,
      required: true,
      value: mark.label,
      "aria-label": `Label of mark ${mark.number}`,
    });
    label.addEventListener("input", () => {
      mark.label = label.value.trim();
    });
    const missing = SIDES.filter((_, index) => !mark.points[index]);
    return h(
      "li",
      { class: "annotation" },
      h("span", { class: "mark-number" }, String(mark.number)),
      label,
      h(
        "span",
        { class: missing.length ? "annotation-missing" : "muted" },
        missing.length ? `not yet on the ${missing.join(" or the ")}` : "on both images",
      ),
      this.removeButton(`Remove mark ${mark.number}`, () => {
        this.marks = this.marks.filter((item) => item !== mark);
      }),
    );
  }

  measurementItem(item, number) {
    const { value, unit } = this.valueOf(item);
    const label = h("input", {
      type: "text",
      maxlength: 200,
      value: item.label,
      placeholder: "label (optional)",
      "aria-label": `Label of measurement ${number}`,
    });
    label.addEventListener("input", () => {
      item.label = label.value.trim();
    });
    const kind = item.kind === "distance" ? "Distance" : "Angle";
    return h(
      "li",
      { class: "annotation" },
      h(
        "span",
        { class: "measurement-value" },
        `${kind} on the ${SIDES[item.pane]}: `,
        h("strong", {}, formatValue(value, unit)),
        unit === "px" ? h("span", { class: "muted" }, ` (${PIXELS_NOTE})`) : null,
      ),
      label,
      this.removeButton(`Remove measurement ${number}`, () => {
        this.measurements = this.measurements.filter((other) => other !== item);
      }),
    );
  }

  removeButton(name, remove) {
    return h(
      "button",
      {
        type: "button",
        class: "button-quiet",
        onClick: () => {
          remove();
          this.render();
        },
      },
      name,
    );
  }

  // ---- Drawing ----------------------------------------------------------------------------------

  draw() {
    const size = 1 / this.viewer.view.scale;
    this.viewer.panes.forEach((pane, index) => {
      const at = (point) => this.viewer.overlayPoint(pane, point);
      const shapes = [];
      for (const mark of this.marks) {
        if (mark.points[index]) shapes.push(...markShapes(at(mark.points[index]), mark, size));
      }
      this.measurements.forEach((item, n) => {
        if (item.pane !== index) return;
        const { value, unit } = this.valueOf(item);
        const caption = `${n + 1}: ${formatValue(value, unit)}`;
        shapes.push(...measurementShapes(item.points.map(at), caption, size));
      });
      if (this.pending && this.pending.pane === index) {
        shapes.push(...measurementShapes(this.pending.points.map(at), null, size, "pending"));
      }
      if (this.recorded) shapes.push(...recordedShapes(this.recorded, index, at, size));
      pane.overlay.replaceChildren(...shapes);
    });
  }
}

/** A recorded conclusion's marks and measurements on pane `index`, with the service's values. */
function recordedShapes(entry, index, at, size) {
  const side = SIDES[index];
  const shapes = [];
  for (const mark of entry.marks || []) {
    shapes.push(...markShapes(at(mark[side]), mark, size, "recorded"));
  }
  (entry.measurements || []).forEach((item, n) => {
    if (item.image !== side) return;
    const caption = `${n + 1}: ${formatValue(item.value, item.unit)}`;
    shapes.push(...measurementShapes(item.points.map(at), caption, size, "recorded"));
  });
  return shapes;
}

function markShapes(point, mark, size, state = "placed") {
  return [
    svg("circle", {
      class: `mark-ring mark-${state}`,
      cx: point.x,
      cy: point.y,
      r: MARK_RADIUS * size,
      "stroke-width": STROKE * size,
    }),
    svg(
      "text",
      {
        class: `overlay-text mark-text mark-${state}`,
        x: point.x + (MARK_RADIUS + 2) * size,
        y: point.y - (MARK_RADIUS + 2) * size,
        "font-size": FONT_SIZE * size,
        "stroke-width": 3 * size,
      },
      String(mark.number),
    ),
  ];
}

/** A distance's line, or an angle's two arms from its vertex (the middle point), with its ends
 * dotted and its value written beside the last point. */
function measurementShapes(points, caption, size, state = "placed") {
  const shapes = [];
  for (let i = 1; i < points.length; i += 1) {
    shapes.push(
      svg("line", {
        class: `measure-line measure-${state}`,
        x1: points[i - 1].x,
        y1: points[i - 1].y,
        x2: points[i].x,
        y2: points[i].y,
        "stroke-width": STROKE * size,
      }),
    );
  }
  for (const point of points) {
    shapes.push(
      svg("circle", {
        class: `measure-dot measure-${state}`,
        cx: point.x,
        cy: point.y,
        r: DOT_RADIUS * size,
      }),
    );
  }
  if (caption && points.length) {
    const last = points[points.length - 1];
    shapes.push(
      svg(
        "text",
        {
          class: `overlay-text measure-text measure-${state}`,
          x: last.x + 6 * size,
          y: last.y + 16 * size,
          "font-size": FONT_SIZE * size,
          "stroke-width": 3 * size,
        },
        caption,
      ),
    );
  }
  return shapes;
}
