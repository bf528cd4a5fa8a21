// Two radiographs side by side that zoom and pan together, with the display adjustments an
// examiner needs to compare them: brightness, contrast, inversion and a horizontal flip for when
// the query and the candidate are of opposite sides.

import { h } from "./dom.js";

const MIN_SCALE = 0.5;
const MAX_SCALE = 20;
const STEP = 1.25;
const PAN_STEP = 40;

export class PairViewer {
  constructor(labels) {
    this.view = { scale: 1, x: 0, y: 0 };
    this.adjust = { brightness: 100, contrast: 100, invert: false };
    this.panes = labels.map((label) => this.makePane(label));
    this.listeners = [];
  }

  /** Called with the viewer's state after every change, to keep the controls in step. */
  onChange(listener) {
    this.listeners.push(listener);
  }

  changed() {
    for (const pane of this.panes) {
      pane.stage.style.transform = `translate(${this.view.x}px, ${this.view.y}px) scale(${this.view.scale})`;
      pane.img.style.transform = pane.flipped ? "scaleX(-1)" : "";
      pane.img.style.filter = [
        `brightness(${this.adjust.brightness}%)`,
        `contrast(${this.adjust.contrast}%)`,
        this.adjust.invert ? "invert(1)" : "",
      ].join(" ");
    }
    for (const listener of this.listeners) listener(this);
  }

  makePane(label) {
    const img = h("img", { alt: label, draggable: "false" });
    const stage = h("div", { class: "stage" }, img);
    const message = h("div", { class: "viewport-message" }, "Loading…");
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
    );
    const caption = h("figcaption", {});
    const element = h("figure", { class: "pane" }, caption, viewport);
    const pane = { img, stage, viewport, caption, element, message, flipped: false };
    this.listenToPointer(pane);
    return pane;
  }

  /** Show an image (an object URL) in pane `index`; null with a message says why there is none. */
  show(index, url, message = "") {
    const pane = this.panes[index];
    pane.message.textContent = message;
    pane.message.hidden = Boolean(url);
    if (url) pane.img.src = url;
    else pane.img.removeAttribute("src");
  }

  listenToPointer(pane) {
    let last = null;
    pane.viewport.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      last = { x: event.clientX, y: event.clientY };
      pane.viewport.setPointerCapture(event.pointerId);
      pane.viewport.classList.add("dragging");
    });
    pane.viewport.addEventListener("pointermove", (event) => {
      if (!last) return;
      this.pan(event.clientX - last.x, event.clientY - last.y);
      last = { x: event.clientX, y: event.clientY };
    });
    const stop = () => {
      last = null;
      pane.viewport.classList.remove("dragging");
    };
    pane.viewport.addEventListener("pointerup", stop);
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

  /** Zoom by `factor` keeping the point (x, y) of the viewports where it is. */
  zoomAt(factor, x, y) {
    const scale = Math.min(MAX_SCALE, Math.max(MIN_SCALE, this.view.scale * factor));
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

  setAdjustment(name, value) {
    this.adjust[name] = value;
    this.changed();
  }

  resetAdjustments() {
    this.adjust = { brightness: 100, contrast: 100, invert: false };
    this.changed();
  }

  toggleInvert() {
    this.setAdjustment("invert", !this.adjust.invert);
  }

  toggleFlip(index) {
    this.panes[index].flipped = !this.panes[index].flipped;
    this.changed();
  }
}
