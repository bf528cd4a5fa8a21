// Where the network finds the query and the candidate's image alike: each location's share of
// their similarity, drawn over both images as a diverging colour map (warm cells pull the two
// together, cool ones push them apart, near zero clear), with a legend of the scale and the sum.
// It follows the candidate's image in the right-hand pane; under sequential unmasking there is
// no score to explain, and so no toggle.

import { api } from "./api.js";
import { formatSimilarity, h, svg } from "./dom.js";
import { report } from "./messages.js";
import { CANDIDATE, QUERY } from "./viewer-controls.js";

// The faint and the strong end of each half of the scale, as style.css's legend draws them.
const WARM = { faint: [253, 174, 97], strong: [215, 25, 28] };
const COOL = { faint: [171, 217, 233], strong: [44, 123, 182] };
// Even the strongest cell lets the radiograph show through.
const MAX_OPACITY = 0.7;

/** A cell's colour and opacity: stronger and less clear the nearer |value| is to `largest`. */
function cellPaint(value, largest) {
  const strength = largest > 0 ? Math.min(1, Math.abs(value) / largest) : 0;
  const { faint, strong } = value >= 0 ? WARM : COOL;
  const mixed = faint.map((channel, i) => Math.round(channel + (strong[i] - channel) * strength));
  return { fill: `rgb(${mixed.join(", ")})`, "fill-opacity": (MAX_OPACITY * strength).toFixed(3) };
}

/** One image's map over the square the network saw, in the original's pixels: the layer's
 * viewBox is the original, stretched over the image as it is drawn. */
function drawMap(layer, side, largest) {
  const { map, region } = side;
  layer.setAttribute("viewBox", `0 0 ${side.width} ${side.height}`);
  const cellHeight = region.height / map.length;
  const cells = map.flatMap((row, down) => {
    const cellWidth = region.width / row.length;
    return row.map((value, across) =>
      svg("rect", {
        class: "explanation-cell",
        x: region.x + across * cellWidth,
        y: region.y + down * cellHeight,
        width: cellWidth,
        height: cellHeight,
        ...cellPaint(value, largest),
      }),
    );
  });
  layer.replaceChildren(...cells);
}

function legendContent(explanation, largest) {
  const end = largest.toPrecision(2);
  return [
    h(
      "div",
      {
        class: "explanation-scale",
        role: "img",
        "aria-label": `Colour scale from −${end} (cool) through 0 (clear) to +${end} (warm)`,
      },
      h("span", { class: "explanation-end" }, `−${end}`),
      h("span", { class: "explanation-gradient" }),
      h("span", { class: "explanation-end" }, `+${end}`),
    ),
    h(
      "p",
      { class: "explanation-sentence" },
      `Each cell's share of the similarity (sum = ${formatSimilarity(explanation.similarity)}): ` +
        "warm cells make the images more alike, cool cells less.",
    ),
    h("p", { class: "hint" }, explanation.method),
  ];
}

export class Explanation {
  constructor(viewer, searchId) {
    this.viewer = viewer;
    this.searchId = searchId;
    this.on = false;
    // The candidate's image in its pane: {personId, imageId}, or null while none is shown.
    this.shown = null;
    // Counts requests: an answer is drawn only if no newer request or clearing came after it.
    this.requests = 0;
    this.button = h(
      "button",
      {
        type: "button",
        class: "button-quiet",
        "aria-pressed": "false",
        "aria-keyshortcuts": "e",
        title: "Each part of the two images' share of their similarity, drawn over them",
        onClick: () => this.toggle(),
      },
      "Explain the similarity",
    );
    this.legend = h("div", { class: "explanation-legend", id: "explanation-legend", hidden: true });
    this.toolbar = h(
      "div",
      { class: "controls explanation-tools", role: "group", "aria-label": "Similarity explained" },
      this.button,
      this.legend,
    );
  }

  /** Under sequential unmasking the similarity is not shown, so neither is its explanation. */
  setAvailable(available) {
    this.toolbar.hidden = !available;
    if (!available && this.on) this.setOn(false);
  }

  toggle() {
    if (!this.toolbar.hidden) this.setOn(!this.on);
  }

  /** The candidate's image now in its pane; null while none is. */
  showFor(personId, imageId) {
    this.shown = imageId === null ? null : { personId, imageId };
    if (this.on) this.load();
  }

  setOn(on) {
    this.on = on;
    this.button.setAttribute("aria-pressed", String(on));
    if (on) this.load();
    else this.clear();
  }

  clear() {
    this.requests += 1;
    for (const pane of this.viewer.panes) pane.mapLayer.replaceChildren();
    this.legend.hidden = true;
    this.legend.replaceChildren();
  }

  async load() {
    this.clear();
    this.legend.hidden = false;
    if (!this.shown) {
      this.legend.replaceChildren(
        h("p", { class: "muted" }, "Explained once an image of the candidate is shown."),
      );
      return;
    }
    const ticket = this.requests;
    const { personId, imageId } = this.shown;
    this.legend.replaceChildren(h("p", { class: "loading" }, "Explaining the similarity…"));
    let explanation;
    try {
      explanation = await api(
        `/searches/${this.searchId}/candidates/${personId}/explanation?image_id=${imageId}`,
      );
    } catch (error) {
      if (ticket !== this.requests) return;
      this.setOn(false);
      report(error);
      return;
    }
    if (ticket === this.requests) this.draw(explanation);
  }

  draw(explanation) {
    const sides = [explanation.query, explanation.candidate];
    const largest = Math.max(0, ...sides.flatMap((side) => side.map.flat().map(Math.abs)));
    drawMap(this.viewer.panes[QUERY].mapLayer, explanation.query, largest);
    drawMap(this.viewer.panes[CANDIDATE].mapLayer, explanation.candidate, largest);
    this.legend.replaceChildren(...legendContent(explanation, largest));
  }
}
