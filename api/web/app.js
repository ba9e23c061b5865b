// The dashboard's entry point: asks for the API key once per tab, then routes between the
// views by the URL's hash (#/ jobs, #/jobs/<id> one job, #/import a file import). A view is a
// function that fills the <main> element and returns what to stop when the user leaves it.

import { ApiError, apiKey, forgetKey, json, onUnauthorized, rememberKey } from "./api.js";
import { fill, h } from "./dom.js";
import { jobsList } from "./jobs-list.js";

// The job page and the import page are fetched when first opened: the jobs list, the first
// view, needs no more than the browser's six connections fetch at once.
const jobPage = lazily("./job-page.js", "jobPage");
const importPage = lazily("./import-page.js", "importPage");

function lazily(module, name) {
  return (root, ...args) => {
    let leaveView = null;
    let left = false;
    import(module)
      .then((loaded) => {
        if (left) return;
        leaveView = loaded[name](root, ...args);
        root.querySelector("h1")?.focus({ preventScroll: true });
      })
      .catch((error) => {
        root.append(
          h("p", { class: "problem", role: "alert" }, `Could not load the page: ${error.message}`),
        );
      });
    return () => {
      left = true;
      if (leaveView) leaveView();
    };
  };
}

const main = document.getElementById("main");
const nav = document.getElementById("nav");
let leave = () => {};

function route() {
  leave();
  leave = () => {};
  const loggedIn = Boolean(apiKey());
  nav.hidden = !loggedIn;
  const hash = location.hash || "#/";
  let view;
  if (!loggedIn) view = loginView;
  else if (hash.startsWith("#/jobs/")) view = (root) => jobPage(root, hash.slice(7));
  else if (hash === "#/import") view = importPage;
  else view = jobsList;
  fill(main);
  leave = view(main) || (() => {});
  markCurrentLink(hash);
  main.querySelector("h1")?.focus({ preventScroll: true });
}

function markCurrentLink(hash) {
  for (const link of nav.querySelectorAll("a")) {
    const here = link.getAttribute("href") === hash || (hash === "" && link.hash === "#/");
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function loginView(root) {
  document.title = "Log in · Bulk Ingest";
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "api-key-help",
  });
  const problem = h("p", { class: "problem", role: "alert", id: "login-problem" });
  const button = h("button", { type: "submit" }, "Log in");
  const form = h(
    "form",
    { class: "card login", onsubmit: (event) => logIn(event, input, problem, button) },
    h("label", { for: "api-key" }, "API key"),
    input,
    h(
      "p",
      { class: "hint", id: "api-key-help" },
      "The key of your tenant (bik_…). It stays in this browser tab until you log out or ",
      "close the tab.",
    ),
    problem,
    button,
  );
  root.append(h("h1", { tabindex: "-1" }, "Bulk Ingest"), form);
  input.focus();
}

async function logIn(event, input, problem, button) {
  event.preventDefault();
  const key = input.value.trim();
  if (!key) return;
  button.disabled = true;
  problem.textContent = "";
  try {
    await json("/jobs?limit=1", { key });
    rememberKey(key);
    route();
  } catch (error) {
    problem.textContent =
      error instanceof ApiError && error.status === 401
        ? "The gateway does not know this key (or it was revoked)."
        : `Could not check the key: ${error.message}`;
    button.disabled = false;
    input.focus();
  }
}

function logOut() {
  forgetKey();
  if (location.hash && location.hash !== "#/") location.hash = "#/";
  else route();
}

document.getElementById("log-out").addEventListener("click", logOut);
onUnauthorized(() => {
  forgetKey();
  route();
});
window.addEventListener("hashchange", route);
route();
