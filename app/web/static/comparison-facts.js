// What each radiograph of a comparison says about itself (side, view, body part, sex, pixel
// spacing, date), which of the candidate's images to open beside the query, and the plain warning
// when the two are not of the same side or view.

import { h } from "./dom.js";

const SIDE_WORDS = { L: "left", R: "right" };

/** The facts of the query, as GET /searches/{id}/query/facts gives them. */
export function queryFacts(answer) {
  return { ...answer, sources: answer.sources || {} };
}

/** The facts of one of the candidate's images (GET /people/{id}): the image's and the person's. */
export function imageFacts(image, person) {
  return {
    side: image.side,
    view: image.image_metadata?.view_position ?? null,
    body_part: image.body_part,
    sex: person.sex ?? image.image_metadata?.patient_sex ?? null,
    pixel_spacing_mm: image.pixel_spacing_mm,
    study_date: image.acquisition_date,
    width: image.image_metadata?.width ?? null,
    sources: {},
  };
}

function sideWord(side) {
  return SIDE_WORDS[side] || side;
}

const ROWS = [
  ["Side", "side", (value) => `${value} (${sideWord(value)})`],
  ["View", "view", String],
  ["Body part", "body_part", (value) => value.toLowerCase()],
  ["Sex", "sex", String],
  ["Pixel spacing", "pixel_spacing_mm", (value) => `${Number(value.toPrecision(4))} mm`],
  ["Study date", "study_date", String],
];

/** The facts as a list beside the image; "not recorded" where neither file nor form said. */
export function factsList(facts, label) {
  return h(
    "dl",
    { class: "image-facts-list", "aria-label": label },
    ROWS.map(([name, key, format]) => {
      const value = facts[key];
      const source = facts.sources[key] === "search form" ? " · from the search form" : "";
      return h(
        "div",
        { class: "image-fact" },
        h("dt", {}, name),
        h(
          "dd",
          { class: value == null ? "muted" : null },
          value == null ? "not recorded" : `${format(value)}${source}`,
        ),
      );
    }),
  );
}

/** Both known and different. */
function differs(a, b) {
  return a != null && b != null && a !== b;
}

function sameKind(query, image) {
  const view = image.image_metadata?.view_position;
  return !differs(query.side, image.side) && !differs(query.view, view);
}

/** The image to open first: of the query's side and view where the person has one (the search's
 * best-scoring of those, else the first), else the best-scoring image of any. */
export function defaultImage(person, candidate, query) {
  const onRecord = new Map(person.images.map((image) => [image.id, image]));
  const ranked = candidate.images.map((match) => onRecord.get(match.image_id)).filter(Boolean);
  const alike = (image) => !query || sameKind(query, image);
  const choice =
    ranked.find(alike) ?? person.images.find(alike) ?? ranked[0] ?? person.images[0] ?? null;
  return choice ? choice.id : null;
}

/** A plain sentence when the image shown is of another side or view than the query; null when
 * they agree or one of them does not say. */
export function mismatchWarning(query, image, person) {
  if (!query || !image) return null;
  const parts = [];
  if (differs(query.side, image.side)) {
    const wanted = sideWord(query.side);
    const shown = sideWord(image.side);
    const others = person.images.some((item) => item.side === query.side);
    parts.push(
      others
        ? `Other side: the query is a ${wanted} image, this one is ${shown}. This person has ` +
            `${wanted} images too (see the list below).`
        : `Only the other side on record: the query is a ${wanted} image; this person has no ` +
            `${wanted} image, so their ${shown} one is shown. Flip it to compare mirrored anatomy.`,
    );
  }
  const view = image.image_metadata?.view_position;
  if (differs(query.view, view)) {
    parts.push(`Other view: the query is ${query.view}, this image ${view}.`);
  }
  return parts.length ? parts.join(" ") : null;
}
