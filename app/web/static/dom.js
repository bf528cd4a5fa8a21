// Building the page from data: elements are made with h() and text is always set as text, so that
// nothing from the database (comments, references, file names) can ever become markup.

const SVG_NAMESPACE = "http://www.w3.org/2000/svg";

/** An SVG element with its attributes (set as given) and, optionally, its text. */
export function svg(tag, attributes = {}, text = null) {
  const element = document.createElementNS(SVG_NAMESPACE, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value);
  if (text !== null) element.textContent = text;
  return element;
}

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (name === "class") {
      element.className = value;
    } else if (name === "dataset") {
      Object.assign(element.dataset, value);
    } else if (name === "value") {
      element.value = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : String(child));
  }
}

let uniqueCounter = 0;

/** An id unique in this page, for label/for and aria-* references. */
export function uid(prefix = "id") {
  uniqueCounter += 1;
  return `${prefix}-${uniqueCounter}`;
}

/** A labelled form field: label above the control, an optional hint tied by aria-describedby. */
export function field(labelText, control, hintText) {
  control.id ||= uid("field");
  const hint = hintText ? h("span", { class: "hint", id: uid("hint") }, hintText) : null;
  if (hint) control.setAttribute("aria-describedby", hint.id);
  return h("div", { class: "field" }, h("label", { for: control.id }, labelText), hint, control);
}

export function select(options, attributes = {}) {
  return h(
    "select",
    attributes,
    options.map(([value, text]) => h("option", { value }, text)),
  );
}

export function table(caption, headings, rows, emptyText) {
  if (rows.length === 0 && emptyText) return h("p", { class: "empty" }, emptyText);
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", {}, caption),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          headings.map((heading) =>
            // A heading is text, an element (a visually hidden name, say), or {text, class, help}.
            typeof heading === "string" || heading instanceof Node
              ? h("th", { scope: "col" }, heading)
              : h(
                  "th",
                  { scope: "col", class: heading.class, title: heading.help },
                  heading.text,
                ),
          ),
        ),
      ),
      h("tbody", {}, rows),
    ),
  );
}

export function separator() {
  return h("span", { class: "separator", "aria-hidden": "true" }, "›");
}

export function badge(text, kind = text) {
  return h("span", { class: `badge badge-${kind}` }, text);
}

/** A heading that can take focus, so that a new view is announced from its title. */
export function title(level, text, attributes = {}) {
  return h(`h${level}`, { tabindex: "-1", ...attributes }, text);
}

// The server's timestamps are UTC; they are shown in the examiner's local time with the zone
// offset, so that a printed page is unambiguous.
export function parseTime(value) {
  if (!value) return null;
  const text = /[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`;
  const time = new Date(text);
  return Number.isNaN(time.getTime()) ? null : time;
}

function pad(number) {
  return String(number).padStart(2, "0");
}

/** To the minute; with seconds: true, to the second (when jobs ran). */
export function formatTime(value, { seconds = false } = {}) {
  const time = parseTime(value);
  if (!time) return "—";
  const offset = -time.getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "-";
  const zone = `UTC${sign}${pad(Math.floor(Math.abs(offset) / 60))}:${pad(Math.abs(offset) % 60)}`;
  const clock = `${pad(time.getHours())}:${pad(time.getMinutes())}`;
  return (
    `${time.getFullYear()}-${pad(time.getMonth() + 1)}-${pad(time.getDate())} ` +
    `${seconds ? `${clock}:${pad(time.getSeconds())}` : clock} ${zone}`
  );
}

export function formatDay(value) {
  const time = parseTime(value);
  if (!time) return "—";
  return `${time.getFullYear()}-${pad(time.getMonth() + 1)}-${pad(time.getDate())}`;
}

export function formatSimilarity(value) {
  return typeof value === "number" ? value.toFixed(3) : "—";
}

export function plural(count, one, many = `${one}s`) {
  return `${count} ${count === 1 ? one : many}`;
}

export function capitalise(text) {
  return text ? text[0].toUpperCase() + text.slice(1) : text;
}

const SIDES = { L: "left", R: "right" };

/** When an image was taken, as precisely as its record says: a date, a visit, or its upload. */
export function imageWhen(image) {
  if (image.acquisition_date) return `Acquired ${image.acquisition_date}`;
  if (image.visit_months !== null && image.visit_months !== undefined) {
    return `Visit month ${Number(image.visit_months)}`;
  }
  return `Uploaded ${formatDay(image.uploaded_at)}`;
}

export function imageWhat(image) {
  const parts = [];
  if (image.side) parts.push(SIDES[image.side] || image.side);
  if (image.body_part) parts.push(image.body_part.toLowerCase());
  return parts.join(" ") || "body part not recorded";
}

/** Oldest first: by acquisition date where both have one, else by visit, else by upload. */
export function byVisit(a, b) {
  if (a.acquisition_date && b.acquisition_date && a.acquisition_date !== b.acquisition_date) {
    return a.acquisition_date < b.acquisition_date ? -1 : 1;
  }
  const hasVisits = a.visit_months != null && b.visit_months != null;
  if (hasVisits && a.visit_months !== b.visit_months) return a.visit_months - b.visit_months;
  return (parseTime(a.uploaded_at) || 0) - (parseTime(b.uploaded_at) || 0) || a.id - b.id;
}
