// The reviewer's inbox: the blind reviews asked of the signed-in examiner and still open, on the
// cases page and counted in the navigation.

import { api } from "./api.js";
import { formatTime, h, table } from "./dom.js";

/** The open requests asked of me, oldest first. */
export function reviewsWaiting() {
  return api("/reviews");
}

/** The navigation's "Reviews for you (N)" link: shown only while there are some. */
export function showReviewCount(reviews) {
  const link = document.getElementById("reviews-link");
  link.hidden = reviews.length === 0;
  link.querySelector(".count").textContent = String(reviews.length);
}

/** The inbox panel for the cases page, or nothing when no review is waiting. */
export function reviewInbox(reviews) {
  if (reviews.length === 0) return null;
  const rows = reviews.map((review) =>
    h(
      "tr",
      {},
      h(
        "td",
        { class: "nowrap" },
        h("a", { href: `#/cases/${review.case_id}` }, `Case ${review.case_number}`),
      ),
      h(
        "td",
        { class: "nowrap" },
        `Search ${review.number_in_case} (#${review.search_id})`,
        review.sequential_unmasking ? [h("br"), "sequential unmasking"] : null,
      ),
      h("td", {}, review.requested_by),
      h("td", { class: "nowrap" }, formatTime(review.created_at)),
    ),
  );
  return h(
    "section",
    { class: "panel panel-inbox", id: "review-inbox", "aria-labelledby": "review-inbox-title" },
    h("h2", { id: "review-inbox-title" }, "Blind reviews waiting for you"),
    h(
      "p",
      { class: "hint" },
      "Until you record a conclusion on the search, you see no one else's conclusion in its " +
        "case, and the case as it was when you were asked.",
    ),
    table("Open requests, oldest first", ["Case", "Search", "Asked by", "Asked"], rows),
  );
}
