// A conclusion being typed is kept as a draft in this tab's sessionStorage, per case, search and
// candidate, so that Back, Forward or moving to another candidate loses nothing; it is cleared
// once the conclusion is recorded, and every draft is cleared at sign-out, so that whoever signs
// in next on this tab never sees what the last examiner typed.

const PREFIX = "radmatch.conclusion-draft";

function keyOf({ caseId, searchId, personId }) {
  return `${PREFIX}:${caseId}:${searchId}:${personId}`;
}

function read(key) {
  try {
    const draft = JSON.parse(sessionStorage.getItem(key) || "null");
    return draft && typeof draft === "object" ? draft : null;
  } catch {
    return null; // storage off or a damaged entry: start afresh
  }
}

/** Fill the fields from a kept draft and keep every change; returns whether a draft was restored
 * and a function that forgets the draft (call it once the conclusion is recorded). */
export function keepDraft(where, { scale, comment }) {
  const key = keyOf(where);
  const draft = read(key);
  if (draft) {
    scale.value = draft.conclusion || "";
    comment.value = draft.comment || "";
  }
  const save = () => {
    const typed = { conclusion: scale.value, comment: comment.value };
    try {
      if (!typed.conclusion && !typed.comment) sessionStorage.removeItem(key);
      else sessionStorage.setItem(key, JSON.stringify(typed));
    } catch {
      // A full or disabled storage only costs the draft, never the typing.
    }
  };
  scale.addEventListener("change", save);
  comment.addEventListener("input", save);
  return {
    restored: Boolean(draft && (draft.conclusion || draft.comment)),
    forget: () => {
      try {
        sessionStorage.removeItem(key);
      } catch {
        // nothing kept, nothing to forget
      }
    },
  };
}

/** Every draft in this tab, at sign-out. */
export function forgetAllDrafts() {
  try {
    const keys = Array.from({ length: sessionStorage.length }, (_, i) => sessionStorage.key(i));
    for (const key of keys) if (key?.startsWith(PREFIX)) sessionStorage.removeItem(key);
  } catch {
    // storage off: nothing was kept
  }
}
