// The comparison viewer's controls: zoom, true scale, brightness and contrast for both images or
// one, invert, flips and their reset, and the list of keyboard shortcuts.

import { h, select } from "./dom.js";
import { BOTH } from "./viewer.js";

/** The panes of the comparison, by index. */
export const QUERY = 0;
export const CANDIDATE = 1;

function toggle(text, shortcut, onClick) {
  return h(
    "button",
    {
      type: "button",
      class: "button-quiet",
      "aria-pressed": "false",
      "aria-keyshortcuts": shortcut,
      onClick,
    },
    text,
  );
}

function slider(label, name, min, max, viewer) {
  const input = h("input", { type: "range", min, max, step: 5, value: 100 });
  const output = h("output", {}, "100%");
  input.id = `adjust-${name}`;
  output.setAttribute("for", input.id);
  input.addEventListener("input", () => viewer.setAdjustment(name, Number(input.value)));
  viewer.onChange(() => {
    input.value = viewer.adjustment(name);
    output.textContent = `${viewer.adjustment(name)}%`;
  });
  return h("div", { class: "control-group" }, h("label", { for: input.id }, label), input, output);
}

/** Which image brightness and contrast act on: both at once, or one of them. */
function adjustTarget(viewer) {
  const choice = select([
    [BOTH, "Both images"],
    [String(QUERY), "Query"],
    [String(CANDIDATE), "Candidate"],
  ]);
  choice.id = "adjust-target";
  choice.addEventListener("change", () =>
    viewer.setTarget(choice.value === BOTH ? BOTH : Number(choice.value)),
  );
  return h("div", { class: "control-group" }, h("label", { for: choice.id }, "Adjust"), choice);
}

export function controls(viewer) {
  const zoom = h("output", { "aria-live": "off" }, "100%");
  const invert = toggle("Invert", "i", () => viewer.toggleInvert());
  const flipQuery = toggle("Flip query", null, () => viewer.toggleFlip(QUERY));
  const flipCandidate = toggle("Flip candidate", "f", () => viewer.toggleFlip(CANDIDATE));
  const sameScale = toggle("Same scale", null, () => viewer.setSameScale(!viewer.sameScale));
  sameScale.title = "Both images at the same millimetres per screen pixel, from their pixel spacing";
  viewer.onChange(() => {
    zoom.textContent = `${Math.round(viewer.view.scale * 100)}%`;
    sameScale.setAttribute("aria-pressed", String(viewer.sameScale));
    invert.setAttribute("aria-pressed", String(viewer.invert));
    flipQuery.setAttribute("aria-pressed", String(viewer.panes[QUERY].flipped));
    flipCandidate.setAttribute("aria-pressed", String(viewer.panes[CANDIDATE].flipped));
  });
  return h(
    "div",
    { class: "controls", role: "group", "aria-label": "Display of both radiographs" },
    h(
      "div",
      { class: "control-group", role: "group", "aria-label": "Zoom" },
      h(
        "button",
        {
          type: "button",
          class: "button-quiet",
          "aria-label": "Zoom out",
          "aria-keyshortcuts": "-",
          onClick: () => viewer.zoomStep(-1),
        },
        "−",
      ),
      zoom,
      h(
        "button",
        {
          type: "button",
          class: "button-quiet",
          "aria-label": "Zoom in",
          "aria-keyshortcuts": "+",
          onClick: () => viewer.zoomStep(1),
        },
        "+",
      ),
      h(
        "button",
        {
          type: "button",
          class: "button-quiet",
          "aria-keyshortcuts": "0",
          onClick: () => viewer.resetView(),
        },
        "Reset view",
      ),
      sameScale,
    ),
    adjustTarget(viewer),
    slider("Brightness", "brightness", 20, 300, viewer),
    slider("Contrast", "contrast", 20, 400, viewer),
    h("div", { class: "control-group" }, invert, flipQuery, flipCandidate),
    h(
      "button",
      {
        type: "button",
        class: "button-quiet",
        title: "Brightness, contrast, invert and flips back to none, on both images",
        onClick: () => viewer.resetAdjustments(),
      },
      "Reset adjustments",
    ),
  );
}

/** The keys of the comparison; without the ones that move through the ranking or explain its
 * scores when there is no ranking shown (sequential unmasking). */
export function shortcutList(withoutRanking = false) {
  const rows = [
    ...(withoutRanking
      ? []
      : [
          [["→", "n"], "Next candidate"],
          [["←", "p"], "Previous candidate"],
        ]),
    [["+", "−"], "Zoom in, zoom out"],
    [["0"], "Reset zoom and pan"],
    [["Shift", "arrows"], "Pan"],
    [["i"], "Invert both images"],
    [["f"], "Flip the candidate horizontally"],
    ...(withoutRanking ? [] : [[["e"], "Explain the similarity over both images"]]),
    [["m"], "Mark features"],
    [["d"], "Measure a distance"],
    [["a"], "Measure an angle"],
    [["Esc"], "Back to panning"],
    [["Enter"], "With a tool, place a point at the centre of the focused image"],
  ];
  return h(
    "aside",
    { class: "panel shortcuts", "aria-labelledby": "shortcuts-title" },
    h("h2", { id: "shortcuts-title" }, "Keyboard shortcuts"),
    h(
      "dl",
      {},
      rows.map(([keys, meaning]) => [
        h(
          "dt",
          {},
          keys.map((key, index) => [
            index ? (key === "arrows" ? " + " : " or ") : "",
            h("kbd", {}, key),
          ]),
        ),
        h("dd", {}, meaning),
      ]),
    ),
    h(
      "p",
      { class: "hint" },
      "Drag either image to pan and use the wheel to zoom: both move together. Shortcuts are off while you type in a field.",
    ),
  );
}
