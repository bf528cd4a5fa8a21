// The messages every view shares: errors in the alert region, news for screen readers, and
// confirmations shown on the page. An error or a confirmation lasts until the examiner's next
// action (a changed control, a submitted form, a dropped file), so that none outlives its cause.

import { ApiError, NETWORK_MESSAGE } from "./api.js";

const alertBox = document.getElementById("alert-box");
const alertText = document.getElementById("alert-text");
const announcer = document.getElementById("announcer");

let unauthorized = () => {};

/** What to do when the service stops accepting the key (it was revoked, say). */
export function onUnauthorized(handler) {
  unauthorized = handler;
}

export function showError(message) {
  alertText.textContent = message;
  alertBox.hidden = false;
}

export function clearError() {
  alertBox.hidden = true;
  alertText.textContent = "";
  doneBox.hidden = true;
  doneBox.textContent = "";
}

// Screen readers hear a confirmation from the announcer; this copy is for the eye only.
const doneBox = document.createElement("p");
doneBox.className = "done-notice";
doneBox.hidden = true;
doneBox.setAttribute("aria-hidden", "true");
alertBox.after(doneBox);

/** Confirm what was done: on the page and to screen readers. */
export function showDone(message) {
  alertBox.hidden = true;
  doneBox.textContent = message;
  doneBox.hidden = false;
  announce(message);
}

/** Say something to screen readers without moving focus. */
export function announce(message) {
  announcer.textContent = "";
  // Text set in a later task is what makes assistive technology read the region again.
  setTimeout(() => {
    announcer.textContent = message;
  }, 50);
}

/** Show a failure in plain words; a key that stopped working signs the examiner out. */
export function report(error) {
  if (error instanceof ApiError && error.status === 401) {
    unauthorized(error.message);
    return;
  }
  showError(error instanceof ApiError ? error.message : unexpected(error));
}

function unexpected(error) {
  if (error instanceof TypeError && /fetch|network/i.test(error.message)) return NETWORK_MESSAGE;
  const detail = error && error.message ? error.message : String(error);
  return `Something went wrong on this page: ${detail}`;
}

/** An event handler whose failures are reported instead of lost. */
export function guarded(handler) {
  return async (...args) => {
    try {
      await handler(...args);
    } catch (error) {
      report(error);
    }
  };
}

/**
 * A submit (or click) handler: it clears the last error, keeps the button disabled while the
 * action runs, so that nothing is sent twice, and reports the action's failure.
 */
export function submitting(button, action) {
  return guarded(async (event) => {
    event.preventDefault();
    clearError();
    button.disabled = true;
    try {
      await action(event);
    } finally {
      button.disabled = false;
    }
  });
}

document.getElementById("alert-dismiss").addEventListener("click", clearError);
// Capturing, so that the old message goes before the action's own handlers can show a new one.
for (const action of ["change", "submit", "drop"]) {
  document.addEventListener(action, clearError, true);
}
