// What a recorded conclusion says beyond its scale and comment: the marks and measurements made
// with it, and whether its examiner had seen the ranking (not so under sequential unmasking).
// The comparison page and the case page's history show them alike.

import { h } from "./dom.js";

export const PIXELS_NOTE = "no pixel spacing is known for this image, so it is in pixels";
const BEFORE_RANKING = "Made before the ranking was shown (sequential unmasking)";

/** "23.4 mm", "245 px", "132.0°". */
export function formatValue(value, unit) {
  if (unit === "°") return `${value.toFixed(1)}°`;
  if (unit === "px") return `${value.toFixed(0)} px`;
  return `${value.toFixed(1)} ${unit}`;
}

function measurementText(item) {
  const kind = item.kind === "distance" ? "Distance" : "Angle";
  const value = formatValue(item.value, item.unit);
  const label = item.label ? ` — ${item.label}` : "";
  return `${kind} on the ${item.image}: ${value}${label}`;
}

/** Said of a conclusion made under sequential unmasking; nothing of one made with the ranking. */
export function rankingNote(entry) {
  return entry.ranking_seen === false ? h("p", { class: "before-ranking" }, BEFORE_RANKING) : null;
}

/** The marks (number and label) and measurements (with the service's values) of a conclusion;
 * nothing for one that has none. */
export function conclusionFindings(entry) {
  const marks = entry.marks || [];
  const measurements = entry.measurements || [];
  return [
    marks.length
      ? h(
          "ol",
          { class: "findings", "aria-label": "Marks with this conclusion" },
          marks.map((mark) =>
            h("li", {}, h("span", { class: "mark-number" }, String(mark.number)), ` ${mark.label}`),
          ),
        )
      : null,
    measurements.length
      ? h(
          "ul",
          { class: "findings", "aria-label": "Measurements with this conclusion" },
          measurements.map((item) =>
            h(
              "li",
              {},
              measurementText(item),
              item.unit === "px" ? h("span", { class: "muted" }, ` (${PIXELS_NOTE})`) : null,
            ),
          ),
        )
      : null,
  ].filter(Boolean);
}
