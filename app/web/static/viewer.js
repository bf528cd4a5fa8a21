// Two radiographs side by side that zoom and pan together, with the display adjustments an
// examiner needs to compare them: brightness and contrast for both images or one, inversion, a
// horizontal flip for when the query and the candidate are of opposite sides, and true scale:
// both shown at the same millimetres per screen pixel from their pixel spacing, with scale bars.
// Each image carries an overlay (for marks and measurements) that zooms, pans and flips with it,
// beneath it a layer drawn in the original's pixels (for maps over the image), and a click or
// Enter on an image can be picked as a point of the original.

import { h, svg } from "./dom.js";

// A press that moves less than this is a click on the image, not a drag of it.
const CLICK_SLOP_PX = 4;

const MIN_SCALE = 0.5;
const MAX_SCALE = 20;
const STEP = 1.25;
const PAN_STEP = 40;
// Round lengths a scale bar may show, and the shortest bar worth reading.
const BAR_LENGTHS_MM = [1, 2, 5, 10, 20, 50, 100, 200, 500];
const BAR_MIN_PX = 60;
export const BOTH = "both";

function plainAdjustment() {
  return { brightness: 100, contrast: 100 };
}

export class PairViewer {
  constructor(labels) {
    this.view = { scale: 1, x: 0, y: 0 };
    this.invert = false;
    this.sameScale = true;
    // Which image the brightness and contrast controls act on: BOTH or a pane's index.
    this.target = BOTH;
    this.panes = labels.map((label) => this.makePane(label));
    this.listeners = [];
    // While set, a click (or Enter) on an image calls it with the pane's index and the point of
    // the original under the pointer (the centre of the view for Enter).
    this.picker = null;
    this.resizes = new ResizeObserver(() => this.changed());
    for (const pane of this.panes) this.resizes.observe(pane.viewport);
  }

  /** Called with the viewer's state after every change, to keep the controls in step. */
  onChange(listener) {
    this.listeners.push(listener);
  }

  changed() {
    this.layout();
    for (const pane of this.panes) {
      pane.stage.style.transform = `translate(${this.view.x}px, ${this.view.y}px) scale(${this.view.scale})`;
      pane.img.style.transform = pane.flipped ? "scaleX(-1)" : "";
      pane.img.style.filter = [
        `brightness(${pane.adjust.brightness}%)`,
        `contrast(${pane.adjust.contrast}%)`,
        this.invert ? "invert(1)" : "",
      ].join(" ");
      this.placeOverlay(pane);
      this.drawScaleBar(pane);
      pane.viewport.classList.toggle("picking", Boolean(this.picker));
    }
    for (const listener of this.listeners) listener(this);
  }

  makePane(label) {
    const img = h("img", { alt: label, draggable: "false" });
    img.addEventListener("load", () => this.changed());
    const overlay = svg("svg", { class: "overlay", "aria-hidden": "true" });
    // Its viewBox is the original's size, stretched over the image as drawn.
    const mapLayer = svg("svg", {
      class: "map-layer",
      "aria-hidden": "true",
      preserveAspectRatio: "none",
    });
    const stage = h("div", { class: "stage" }, img, mapLayer, overlay);
    const message = h("div", { class: "viewport-message" }, "Loading…");
    const barLine = h("span", { class: "scale-bar-line" });
    const barLabel = h("span", { class: "scale-bar-label" });
    const scaleBar = h("div", { class: "scale-bar", hidden: true }, barLine, barLabel);
    const scaleNote = h("p", { class: "scale-note", hidden: true });
    const viewport = h(
      "div",
      {
        class: "viewport",
        tabindex: "0",
        role: "group",
        "aria-label": `${label}: drag or Shift+arrow keys to pan, wheel or + and − to zoom`,
      },
      stage,
      message,
      scaleBar,
    );
    const caption = h("figcaption", {});
    const facts = h("div", { class: "image-facts" });
    const element = h("figure", { class: "pane" }, caption, facts, viewport, scaleNote);
    const pane = {
      img,
      overlay,
      mapLayer,
      stage,
      viewport,
      caption,
      facts,
      element,
      message,
      scaleBar,
      barLine,
      barLabel,
      scaleNote,
      flipped: false,
      adjust: plainAdjustment(),
      // Millimetres per pixel of the original, and the original's width: what true scale needs.
      physical: null,
      mmPerScreenPixel: null,
      // The original's size in pixels, which points are given in; null when not on record.
      original: null,
    };
    this.listenToPointer(pane);
    viewport.addEventListener("keydown", (event) => {
      if (!this.picker || (event.key !== "Enter" && event.key !== " ")) return;
      event.preventDefault();
      const box = viewport.getBoundingClientRect();
      this.pick(pane, box.left + box.width / 2, box.top + box.height / 2);
    });
    return pane;
  }

  /** The overlay and the map layer lie exactly over the image as laid out, in the image's
   * unscaled pixels; the map layer, drawn unflipped, is mirrored as the image is. */
  placeOverlay(pane) {
    const shown = Boolean(pane.img.getAttribute("src")) && pane.img.naturalWidth > 0;
    for (const layer of [pane.overlay, pane.mapLayer]) {
      layer.style.display = shown ? "" : "none";
      if (!shown) continue;
      const { left, top, width, height } = pane.img.style;
      Object.assign(layer.style, { left, top, width, height });
    }
    pane.mapLayer.style.transform = pane.flipped ? "scaleX(-1)" : "";
  }

  /** The original's size in pixels (null when unknown): the frame of picked points. */
  setOriginalSize(index, width, height) {
    this.panes[index].original = width && height ? { width, height } : null;
    this.changed();
  }

  setPicker(picker) {
    this.picker = picker;
    this.changed();
  }

  /** The point of the original under (clientX, clientY), unflipped; null off the image. */
  originalPoint(pane, clientX, clientY) {
    if (!pane.original || !pane.img.getAttribute("src")) return null;
    const box = pane.img.getBoundingClientRect();
    if (!box.width || !box.height) return null;
    let across = (clientX - box.left) / box.width;
    const down = (clientY - box.top) / box.height;
    if (across < 0 || across > 1 || down < 0 || down > 1) return null;
    if (pane.flipped) across = 1 - across;
    const round = (value) => Math.round(value * 100) / 100;
    return { x: round(across * pane.original.width), y: round(down * pane.original.height) };
  }

  /** Where a point of the original is drawn on the pane's overlay (CSS pixels, before zoom). */
  overlayPoint(pane, point) {
    const width = parseFloat(pane.img.style.width) || 0;
    const height = parseFloat(pane.img.style.height) || 0;
    if (!pane.original) return { x: 0, y: 0 };
    const across = point.x / pane.original.width;
    return {
      x: (pane.flipped ? 1 - across : across) * width,
      y: (point.y / pane.original.height) * height,
    };
  }

  pick(pane, clientX, clientY) {
    if (!this.picker) return;
    this.picker(this.panes.indexOf(pane), this.originalPoint(pane, clientX, clientY));
  }

  /** Show an image (an object URL) in pane `index`; null with a message says why there is none. */
  show(index, url, message = "") {
    const pane = this.panes[index];
    pane.message.textContent = message;
    pane.message.hidden = Boolean(url);
    if (url) pane.img.src = url;
    else pane.img.removeAttribute("src");
    this.changed();
  }

  /** The pane's original: its pixel spacing (null when unknown) and width in pixels. */
  setPhysical(index, pixelSpacingMm, originalWidth) {
    this.panes[index].physical =
      pixelSpacingMm && originalWidth ? { spacing: pixelSpacingMm, width: originalWidth } : null;
    this.changed();
  }

  setSameScale(on) {
    this.sameScale = on;
    this.changed();
  }

  /** Millimetres per pixel of the shown picture (a preview may be smaller than the original). */
  mmPerImagePixel(pane) {
    if (!pane.physical || !pane.img.naturalWidth || !pane.img.getAttribute("src")) return null;
    return (pane.physical.spacing * pane.physical.width) / pane.img.naturalWidth;
  }

  /** Screen pixels per image pixel at 100%, for every pane: each fits its viewport, and with
   * "Same scale" the panes that know their pixel spacing share the coarsest mm per screen pixel
   * that lets both fit. A pane without pixel spacing stays at pixel scale (fitted). */
  layout() {
    const fits = this.panes.map((pane) => {
      const width = pane.img.naturalWidth;
      const height = pane.img.naturalHeight;
      if (!width || !height || !pane.img.getAttribute("src")) return null;
      return Math.min(pane.viewport.clientWidth / width, pane.viewport.clientHeight / height);
    });
    const fitted = this.panes.map((pane, i) =>
      fits[i] ? (this.mmPerImagePixel(pane) ?? 0) / fits[i] : 0,
    );
    const shared = this.sameScale ? Math.max(0, ...fitted) : 0;
    this.panes.forEach((pane, i) => {
      if (!fits[i]) {
        pane.mmPerScreenPixel = null;
        return;
      }
      const perImagePixel = this.mmPerImagePixel(pane);
      const zoom = perImagePixel && shared ? perImagePixel / shared : fits[i];
      const width = pane.img.naturalWidth * zoom;
      const height = pane.img.naturalHeight * zoom;
      Object.assign(pane.img.style, {
        width: `${width}px`,
        height: `${height}px`,
        left: `${(pane.viewport.clientWidth - width) / 2}px`,
        top: `${(pane.viewport.clientHeight - height) / 2}px`,
      });
      pane.mmPerScreenPixel = perImagePixel ? perImagePixel / zoom : null;
    });
  }

  drawScaleBar(pane) {
    const shown = Boolean(pane.img.getAttribute("src")) && pane.img.naturalWidth > 0;
    pane.scaleNote.hidden = !shown || pane.mmPerScreenPixel !== null;
    pane.scaleNote.textContent =
      "No pixel spacing is known for this image: it is shown at pixel scale, without a scale bar.";
    if (!shown || pane.mmPerScreenPixel === null) {
      pane.scaleBar.hidden = true;
      pane.viewport.removeAttribute("data-mm-per-pixel");
      return;
    }
    const mmPerPixel = pane.mmPerScreenPixel / this.view.scale;
    const length =
      BAR_LENGTHS_MM.find((mm) => mm / mmPerPixel >= BAR_MIN_PX) ??
      BAR_LENGTHS_MM[BAR_LENGTHS_MM.length - 1];
    pane.scaleBar.hidden = false;
    pane.barLine.style.width = `${length / mmPerPixel}px`;
    pane.barLabel.textContent = `${length} mm`;
    pane.scaleBar.setAttribute("aria-label", `Scale bar: ${length} millimetres`);
    pane.viewport.dataset.mmPerPixel = mmPerPixel.toPrecision(6);
  }

  listenToPointer(pane) {
    let last = null;
    let start = null;
    pane.viewport.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      last = { x: event.clientX, y: event.clientY };
      start = last;
      pane.viewport.setPointerCapture(event.pointerId);
      pane.viewport.classList.add("dragging");
    });
    const moved = (event) => Math.hypot(event.clientX - start.x, event.clientY - start.y);
    pane.viewport.addEventListener("pointermove", (event) => {
      if (!last) return;
      this.pan(event.clientX - last.x, event.clientY - last.y);
      last = { x: event.clientX, y: event.clientY };
      // Once it has been a drag, it is no click, even if it ends where it began.
      if (start && moved(event) >= CLICK_SLOP_PX) start = null;
    });
    const stop = () => {
      last = null;
      start = null;
      pane.viewport.classList.remove("dragging");
    };
    pane.viewport.addEventListener("pointerup", (event) => {
      const still = start && moved(event) < CLICK_SLOP_PX;
      stop();
      if (still) this.pick(pane, event.clientX, event.clientY);
    });
    pane.viewport.addEventListener("pointercancel", stop);
    pane.viewport.addEventListener(
      "wheel",
      (event) => {
        event.preventDefault();
        const box = pane.viewport.getBoundingClientRect();
        const factor = Math.exp(-event.deltaY * 0.0015);
        this.zoomAt(factor, event.clientX - box.left, event.clientY - box.top);
      },
      { passive: false },
    );
  }

  pan(dx, dy) {
    this.view.x += dx;
    this.view.y += dy;
    this.changed();
  }

  panStep(direction) {
    const moves = {
      ArrowLeft: [PAN_STEP, 0],
      ArrowRight: [-PAN_STEP, 0],
      ArrowUp: [0, PAN_STEP],
      ArrowDown: [0, -PAN_STEP],
    };
    const [dx, dy] = moves[direction];
    this.pan(dx, dy);
  }

  /** Zoom by `factor` keeping the point (x, y) of the viewports where it is. Back at 100% the
   * images are centred again, whatever panning came before: 100% means the whole image. */
  zoomAt(factor, x, y) {
    let scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, this.view.scale * factor));
    if (Math.abs(scale - 1) < 1e-6) {
      this.view = { scale: 1, x: 0, y: 0 };
      this.changed();
      return;
    }
    const ratio = scale / this.view.scale;
    this.view.x = x - (x - this.view.x) * ratio;
    this.view.y = y - (y - this.view.y) * ratio;
    this.view.scale = scale;
    this.changed();
  }

  zoomStep(direction) {
    const box = this.panes[0].viewport.getBoundingClientRect();
    this.zoomAt(direction > 0 ? STEP : 1 / STEP, box.width / 2, box.height / 2);
  }

  resetView() {
    this.view = { scale: 1, x: 0, y: 0 };
    this.changed();
  }

  /** The panes the brightness and contrast controls act on now. */
  targets() {
    return this.target === BOTH ? this.panes : [this.panes[this.target]];
  }

  setTarget(target) {
    this.target = target;
    this.changed();
  }

  /** The value the controls show: the targeted pane's, or the query's when both are targeted. */
  adjustment(name) {
    return this.targets()[0].adjust[name];
  }

  setAdjustment(name, value) {
    for (const pane of this.targets()) pane.adjust[name] = value;
    this.changed();
  }

  /** Every display adjustment back to none, on both images: brightness, contrast, invert, flips. */
  resetAdjustments() {
    this.invert = false;
    for (const pane of this.panes) {
      pane.adjust = plainAdjustment();
      pane.flipped = false;
    }
    this.changed();
  }

  toggleInvert() {
    this.invert = !this.invert;
    this.changed();
  }

  toggleFlip(index) {
    this.panes[index].flipped = !this.panes[index].flipped;
    this.changed();
  }

  /** A new image in the pane starts unflipped: a flip was for the image before it. */
  unflip(index) {
    this.panes[index].flipped = false;
    this.changed();
  }
}
