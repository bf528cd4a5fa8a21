// The examiner's page: sign-in with an API key, and hash routes to the views.

import { api, credentials, ImageScope } from "./api.js";
import { h, field, title } from "./dom.js";
import { adminView } from "./admin.js";
import { caseView } from "./case-page.js";
import { caseListView } from "./cases.js";
import { compareView } from "./compare.js";
import { forgetAllDrafts } from "./conclusion-draft.js";
import { announce, clearError, onUnauthorized, report, showError } from "./messages.js";
import { personView } from "./people.js";
import { reviewsWaiting, showReviewCount } from "./review-inbox.js";

const main = document.getElementById("main");

const ROUTES = [
  { pattern: /^#\/cases\/?$/, view: caseListView, section: "cases" },
  { pattern: /^#\/cases\/(\d+)\/?$/, view: caseView, section: "cases", names: ["caseId"] },
  {
    pattern: /^#\/cases\/(\d+)\/searches\/(\d+)\/compare\/(\d+)\/?$/,
    view: compareView,
    section: "cases",
    names: ["caseId", "searchId", "rank"],
  },
  { pattern: /^#\/people\/(\d+)\/?$/, view: personView, section: "cases", names: ["personId"] },
  { pattern: /^#\/admin\/?$/, view: adminView, section: "admin" },
];

let me = null; // the signed-in key's {id, name, role}
let current = null; // the view on screen: {scope, cleanups, key, update}

window.addEventListener("unhandledrejection", (event) => report(event.reason));
window.addEventListener("error", (event) => report(event.error || event.message));

// ---- Signing in and out -----------------------------------------------------------------------

function showIdentity() {
  const signedIn = me !== null;
  document.querySelector(".main-nav").hidden = !signedIn;
  document.querySelector(".identity").hidden = !signedIn;
  document.getElementById("admin-link").hidden = !(signedIn && me.role === "admin");
  if (!signedIn) document.getElementById("reviews-link").hidden = true;
  document.getElementById("identity-name").textContent = signedIn
    ? `Signed in as ${me.name} (${me.role})`
    : "";
}

function signOut(message) {
  leaveView();
  forgetAllDrafts();
  credentials.key = null;
  me = null;
  showIdentity();
  clearError();
  renderSignIn(message);
}

document.getElementById("sign-out").addEventListener("click", () => signOut("You are signed out."));
onUnauthorized((message) => signOut(`Signed out: ${message}.`));

function renderSignIn(message) {
  const keyInput = h("input", {
    type: "password",
    name: "api-key",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
  });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h(
    "form",
    {
      class: "panel sign-in",
      onSubmit: async (event) => {
        event.preventDefault();
        clearError();
        button.disabled = true;
        try {
          await signIn(keyInput.value.trim());
        } catch (error) {
          showError(
            error.status === 401 ? `That key was refused: ${error.message}` : error.message,
          );
          keyInput.focus();
        } finally {
          button.disabled = false;
        }
      },
    },
    title(1, "Sign in to radmatch"),
    message ? h("p", { class: "note" }, message) : null,
    h("p", {}, "Use the API key your administrator issued to you. It is kept only in this tab."),
    field("API key", keyInput),
    button,
  );
  document.title = "Sign in · radmatch";
  main.replaceChildren(form);
  keyInput.focus();
}

async function signIn(key) {
  me = await api("/me", { key });
  credentials.key = key;
  showIdentity();
  announce(`Signed in as ${me.name}`);
  route();
}

// ---- Routing ------------------------------------------------------------------------------------

function leaveView() {
  if (!current) return;
  for (const cleanup of current.cleanups) cleanup();
  current.scope.release();
  current = null;
}

function match(hash) {
  for (const entry of ROUTES) {
    const found = entry.pattern.exec(hash);
    if (found) {
      const params = {};
      (entry.names || []).forEach((name, index) => {
        params[name] = Number(found[index + 1]);
      });
      return { ...entry, params };
    }
  }
  return null;
}

function markSection(section) {
  for (const link of document.querySelectorAll(".main-nav a")) {
    if (link.dataset.section === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function route() {
  if (!me) return;
  const hash = location.hash;
  if (hash === "" || hash === "#" || hash === "#/") {
    location.replace("#/cases");
    return;
  }
  const found = match(hash);
  // A view can follow a change of its own route in place (the comparison view moving to the next
  // candidate keeps its zoom, pan and adjustments).
  if (found && current && current.update && current.key === routeKey(found)) {
    try {
      await current.update(found.params);
    } catch (error) {
      report(error);
    }
    return;
  }
  leaveView();
  clearError();
  const root = h("div", {}, h("p", { class: "loading" }, "Loading…"));
  main.replaceChildren(root);
  if (!found) {
    markSection(null);
    root.replaceChildren(title(1, "Page not found"), backToCases());
    focusHeading(root);
    return;
  }
  markSection(found.section);
  // The count is a hint (a failure says nothing); the case list fetches and shows it itself.
  if (found.view !== caseListView) reviewsWaiting().then(showReviewCount, () => {});
  const view = { scope: new ImageScope(), cleanups: [], key: routeKey(found), update: null };
  current = view;
  const context = {
    root,
    params: found.params,
    me,
    scope: view.scope,
    alive: () => current === view,
    onLeave: (cleanup) => view.cleanups.push(cleanup),
    onUpdate: (update) => {
      view.update = update;
    },
    setTitle: (text) => {
      document.title = `${text} · radmatch`;
    },
  };
  try {
    await found.view(context);
    if (current === view) focusHeading(root);
  } catch (error) {
    if (current !== view) return;
    report(error);
    root.replaceChildren(
      title(1, "This page could not be loaded"),
      h("p", {}, error.message || String(error)),
      backToCases(),
    );
    focusHeading(root);
  }
}

function routeKey(found) {
  // The comparison view is one view for all the candidates of one search.
  const { caseId, searchId } = found.params;
  return found.view === compareView ? `compare:${caseId}:${searchId}` : null;
}

function backToCases() {
  return h("p", {}, h("a", { href: "#/cases" }, "Back to the case list"));
}

function focusHeading(root) {
  const heading = root.querySelector("h1");
  if (heading) heading.focus({ preventScroll: true });
}

window.addEventListener("hashchange", route);

// The skip link must not go through the router: "#main" is no route.
document.querySelector(".skip-link").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});

// ---- Start ----------------------------------------------------------------------------------------

async function start() {
  const key = credentials.key;
  if (!key) {
    renderSignIn();
    return;
  }
  try {
    await signIn(key);
  } catch (error) {
    if (error.status === 401) {
      signOut(`Signed out: ${error.message}.`);
    } else {
      renderSignIn();
      showError(error.message);
    }
  }
}

start();
