// A case's inbox: radiographs of the unknown person that a registered DICOM sender (a mortuary's
// X-ray system by C-STORE, a STOW-RS client) sent for the case, each ready to search with.

import { api } from "./api.js";
import { formatDay, formatTime, h, plural } from "./dom.js";

const VIA = { "c-store": "DICOM C-STORE", "stow-rs": "DICOMweb STOW-RS" };
const SIDES = { L: "left", R: "right" };

/**
 * The inbox's list, filled in once it arrives; `searchWith(item, name)` runs a search with an
 * item and the options the examiner set above.
 */
export function inboxList(page, searchWith) {
  const list = h("ul", { class: "inbox" });
  const count = h("span", { class: "hint" }, "Loading…");
  const section = h(
    "div",
    { class: "inbox-panel" },
    h("h3", { id: "inbox-title" }, "Received by DICOM ", count),
    list,
  );
  api(`/cases/${page.caseId}/inbox`).then(
    (items) => {
      count.textContent = `(${plural(items.length, "radiograph")})`;
      if (!items.length) {
        list.replaceWith(
          h(
            "p",
            { class: "hint" },
            "Radiographs that a registered DICOM sender sends for this case appear here.",
          ),
        );
        return;
      }
      list.replaceChildren(...items.map((item) => inboxItem(page, item, searchWith)));
    },
    (error) => {
      count.textContent = "";
      list.replaceWith(h("p", { class: "hint" }, `The inbox could not be read: ${error.message}`));
    },
  );
  return section;
}

function inboxItem(page, item, searchWith) {
  const name = itemName(item);
  const button = h("button", { type: "button", class: "secondary" }, "Search with this radiograph");
  button.addEventListener("click", () => searchWith(item, name));
  return h(
    "li",
    { class: "inbox-item" },
    page.ctx.scope.image(
      `/cases/${page.caseId}/inbox/${item.id}/preview.png?size=160`,
      `Received radiograph ${item.id}`,
    ),
    h(
      "div",
      {},
      h("strong", {}, name),
      h("div", { class: "hint" }, arrival(item)),
      h("div", { class: "hint" }, describe(item.image_metadata)),
      button,
    ),
  );
}

function arrival(item) {
  const via = VIA[item.received_via] || item.received_via;
  return `From ${item.sender} by ${via}, ${formatTime(item.received_at)}`;
}

function itemName(item) {
  return `Received radiograph ${item.id}`;
}

function describe(metadata) {
  const facts = [];
  if (metadata.modality) facts.push(metadata.modality);
  if (metadata.body_part) facts.push(metadata.body_part.toLowerCase());
  if (SIDES[metadata.laterality]) facts.push(SIDES[metadata.laterality]);
  if (metadata.view_position) facts.push(metadata.view_position);
  if (metadata.acquisition_date) facts.push(`taken ${formatDay(metadata.acquisition_date)}`);
  return facts.join(", ") || "No facts in its header";
}
