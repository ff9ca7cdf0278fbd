// The tokengate tokens console: lists a namespace's tokens, generates and deletes them through
// the admin API of the key service that serves this page (same origin).
//
// The admin token lives in this tab's sessionStorage only (never in local storage, a cookie or
// a URL) and leaves it on "Sign out". A generated token is kept in the DOM only while its dialog is
// open, and never stored or logged.

const ADMIN_TOKEN_KEY = "tokengate.console.adminToken";
const SCOPE_KEY = "tokengate.console.scope";

// What the admin API calls its request fields, in words.
const FIELD_NAMES = {
  namespace_id: "Namespace",
  function_id: "Function",
  description: "Description",
  expires_at: "Expiration date",
};

/** The element with this id (every id used here is in index.html). */
const $ = (id) => document.getElementById(id);

/** An error of the admin API, with a message meant for people. */
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** The message for a non-2xx answer, from the API's `{"error", "field", "message"}` body. */
function describeFailure(status, body) {
  if (status === 401) {
    return "The key service did not accept the admin token.";
  }
  const explained = body && typeof body.message === "string";
  if (status === 503 || status === 429) {
    return `The key service is busy${explained ? ` (${body.message})` : ""}. Try again in a moment.`;
  }
  if (explained) {
    const name = Object.hasOwn(FIELD_NAMES, body.field) ? FIELD_NAMES[body.field] : body.field;
    const field = name ? `${name}: ` : "";
    const text = `${field}${body.message}`;
    if (status >= 500) {
      return `The key service failed (${body.message}); its log says more.`;
    }
    return text.charAt(0).toUpperCase() + text.slice(1) + (/[.!?]$/.test(text) ? "" : ".");
  }
  return `The key service answered HTTP ${status} without an explanation.`;
}

/** A 2xx answer that the admin API does not give: something else answered in its place. */
function unexpectedAnswer() {
  return new ApiError(0, "Unexpected answer from the key service: is a proxy or another service answering in its place?");
}

/** Calls the admin API with the admin token; the decoded JSON object, or `null` for a 204. */
async function api(method, path, body, adminToken = sessionStorage.getItem(ADMIN_TOKEN_KEY)) {
  const headers = { Authorization: `Bearer ${adminToken ?? ""}`, Accept: "application/json" };
  const init = { method, headers, cache: "no-store", credentials: "omit", redirect: "error" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "The key service cannot be reached. Is it running, and is this network connection up?");
  }
  const text = await response.text().catch(() => "");
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, describeFailure(response.status, data));
  }
  if (response.status !== 204 && (data === null || typeof data !== "object" || Array.isArray(data))) {
    throw unexpectedAnswer();
  }
  return data;
}

// ------------------------------------------------------------------------------------------
// Small DOM helpers.

function showMessage(element, text) {
  element.textContent = text;
  element.hidden = !text;
}

function setBusy(button, busy, label) {
  button.disabled = busy;
  if (busy) {
    button.dataset.label = button.textContent;
    button.textContent = label;
  } else if (button.dataset.label) {
    button.textContent = button.dataset.label;
    delete button.dataset.label;
  }
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * Fills `parent` with `parts`: strings are our own words, `{ user: text }` is text from the API
 * (a description), put in a `<bdi>` so that its direction marks (U+202E...) cannot reorder
 * what follows it, e.g. the namespace and id of the delete confirmation.
 */
function setText(parent, ...parts) {
  parent.replaceChildren(...parts.map((part) => (typeof part === "string" ? part : element("bdi", null, part.user))));
}

const SVG = "http://www.w3.org/2000/svg";

/** A trash-can icon (decorative: its button carries the label). */
function trashIcon() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "18");
  svg.setAttribute("height", "18");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  for (const d of ["M4 7h16", "M10 11v6", "M14 11v6", "M6 7l1 12a2 2 0 0 0 2 2h6a2 2 0 0 0 2-2l1-12", "M9 7V4h6v3"]) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

const DATE_TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** A `<time>` showing an RFC 3339 instant in local time, the exact UTC value as its title. */
function timeElement(rfc3339) {
  const date = new Date(rfc3339);
  const time = element("time", null, Number.isNaN(date.getTime()) ? String(rfc3339) : DATE_TIME.format(date));
  time.dateTime = rfc3339;
  time.title = rfc3339;
  return time;
}

/** `YYYY-MM-DD` of a local date. */
function isoDate(date) {
  const pad = (n) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** The admin API takes expiries before the year 9999 (UTC). */
const EXPIRY_LIMIT_MS = Date.UTC(9999, 0, 1);

/** The end of a local `YYYY-MM-DD` day, or null for a day no Date holds (past the year 275760). */
function endOfLocalDay(value) {
  const [year, month, day] = value.split("-").map(Number);
  const end = new Date(2000, 0, 1, 23, 59, 59);
  end.setFullYear(year, month - 1, day); // so that years 0 to 99 stay themselves
  return Number.isNaN(end.getTime()) ? null : end;
}

/** RFC 3339, UTC, whole seconds. */
function rfc3339(date) {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

// ------------------------------------------------------------------------------------------
// State: the chosen scope (remembered in sessionStorage) and the last list loaded.

let scope = readScope();
let listed = [];
let listGeneration = 0;
let deleting = null;

function readScope() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(SCOPE_KEY) ?? "null");
    if (saved && typeof saved.namespace === "string" && typeof saved.function === "string") return saved;
  } catch {
    // A damaged entry is forgotten.
  }
  return { namespace: "", function: "" };
}

function saveScope() {
  sessionStorage.setItem(SCOPE_KEY, JSON.stringify(scope));
}

function scopeLabel(namespace, fn) {
  return fn ? `function ${fn} of namespace ${namespace}` : `every function of namespace ${namespace}`;
}

// ------------------------------------------------------------------------------------------
// Views.

function showLogin(message) {
  $("tokens-view").hidden = true;
  $("sign-out").hidden = true;
  $("login-view").hidden = false;
  $("token-rows").replaceChildren();
  listed = [];
  showMessage($("notice"), "");
  showMessage($("login-error"), message ?? "");
  $("admin-token").value = "";
  $("admin-token").focus();
}

function showTokens() {
  $("login-view").hidden = true;
  $("tokens-view").hidden = false;
  $("sign-out").hidden = false;
  $("namespace").value = scope.namespace;
  $("function").value = scope.function;
  if (scope.namespace) {
    loadTokens();
  } else {
    $("namespace").focus();
  }
}

/** Forgets the admin token and everything shown with it. */
function signOut(message) {
  sessionStorage.removeItem(ADMIN_TOKEN_KEY);
  // A list still on its way is not shown when it arrives.
  listGeneration += 1;
  setBusy($("scope-submit"), false);
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
  $("list-card").hidden = true;
  showLogin(message);
}

/** Every call made while signed in goes through here: a refused admin token signs out. */
async function adminCall(method, path, body) {
  try {
    return await api(method, path, body);
  } catch (error) {
    if (error.status === 401) {
      signOut("The key service no longer accepts this admin token. Sign in again.");
    }
    throw error;
  }
}

// ------------------------------------------------------------------------------------------
// Sign in.

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const adminToken = $("admin-token").value.trim();
  if (!adminToken) {
    showMessage($("login-error"), "Enter the admin token.");
    $("admin-token").focus();
    return;
  }
  if (!/^[\x21-\x7e]+$/.test(adminToken)) {
    showMessage($("login-error"), "An admin token is printable ASCII without spaces: check what was pasted.");
    $("admin-token").focus();
    return;
  }
  setBusy($("login-submit"), true, "Signing in…");
  try {
    // The admin API checks the bearer token before anything else: a list call without its
    // namespace answers 401 to a wrong token and 400 ("namespace_id is required") to the right
    // one, without reading the database.
    await api("GET", "/v1/tokens", undefined, adminToken);
    showMessage($("login-error"), "Unexpected answer from the key service: is this a tokengate key service?");
  } catch (error) {
    if (error.status === 400) {
      sessionStorage.setItem(ADMIN_TOKEN_KEY, adminToken);
      $("admin-token").value = "";
      showMessage($("login-error"), "");
      showTokens();
    } else if (error.status === 401) {
      showMessage($("login-error"), "Wrong admin token: the key service refused it. Check TOKENGATE_ADMIN_TOKEN.");
      $("admin-token").select();
      $("admin-token").focus();
    } else {
      showMessage($("login-error"), error.message);
    }
  } finally {
    setBusy($("login-submit"), false);
  }
});

$("sign-out").addEventListener("click", () => signOut(""));

// ------------------------------------------------------------------------------------------
// The token list.

$("scope-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const namespace = $("namespace").value.trim();
  const fn = $("function").value.trim();
  if (!namespace) {
    showMessage($("scope-error"), "Enter a namespace.");
    $("namespace").focus();
    return;
  }
  // The list call checks the namespace; the function, which it does not send, is checked here
  // (the admin API's rule and words), rather than at Generate.
  if (fn && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(fn)) {
    showMessage(
      $("scope-error"),
      "Function: must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-', starting with a letter or digit.",
    );
    $("function").focus();
    return;
  }
  scope = { namespace, function: fn };
  saveScope();
  showMessage($("notice"), "");
  loadTokens({ focusList: true });
});

$("refresh").addEventListener("click", () => loadTokens());
$("show-deleted").addEventListener("change", () => renderTokens());

async function loadTokens({ focusList = false } = {}) {
  const generation = ++listGeneration;
  const { namespace } = scope;
  showMessage($("scope-error"), "");
  showMessage($("list-error"), "");
  setBusy($("scope-submit"), true, "Loading…");
  try {
    // One call for the namespace: a function's list also holds the namespace-wide tokens.
    const answer = await adminCall("GET", `/v1/tokens?namespace_id=${encodeURIComponent(namespace)}`);
    if (generation !== listGeneration) return;
    if (!Array.isArray(answer.tokens)) throw unexpectedAnswer();
    listed = answer.tokens;
    $("list-card").hidden = false;
    renderTokens();
    if (focusList) $("list-title").focus();
  } catch (error) {
    if (generation !== listGeneration || error.status === 401) return;
    listed = [];
    $("list-card").hidden = true;
    showMessage($("scope-error"), error.message);
    // The busy button lost the focus when it was disabled: give it to the field the answer is about.
    if (focusList) $("namespace").focus();
  } finally {
    if (generation === listGeneration) setBusy($("scope-submit"), false);
  }
}

function renderTokens() {
  const { namespace, function: fn } = scope;
  const showDeleted = $("show-deleted").checked;
  $("list-title").textContent = fn ? `Tokens for ${fn} in ${namespace}` : `Tokens in ${namespace}`;

  const functions = [...new Set(listed.map((token) => token.function_id).filter(Boolean))].sort();
  $("function-list").replaceChildren(...functions.map((name) => Object.assign(element("option"), { value: name })));

  const shown = listed
    .filter((token) => !fn || token.function_id === fn || token.function_id === null)
    .filter((token) => showDeleted || token.status !== "deleted")
    .reverse();
  $("token-rows").replaceChildren(...shown.map(tokenRow));
  $("token-table").hidden = shown.length === 0;
  showMessage(
    $("empty-state"),
    shown.length === 0 ? `No tokens for ${scopeLabel(namespace, fn)} yet. “Generate token” makes one.` : "",
  );
}

const STATUS_NAMES = { active: "Active", expired: "Expired", deleted: "Deleted" };

function tokenRow(token) {
  const row = element("tr");
  row.dataset.tokenId = token.id;

  const description = element("th", "description");
  description.scope = "row";
  description.append(element("bdi", "description-text", token.description));
  const id = element("span", "token-id", token.id);
  id.title = "Token id (the key's kid)";
  description.append(id);

  const scopeCell = element("td");
  scopeCell.append(
    token.function_id === null
      ? element("span", "scope-tag scope-namespace", "Whole namespace")
      : element("span", "scope-tag", `Function ${token.function_id}`),
  );

  const created = element("td");
  created.append(timeElement(token.created_at));

  const expires = element("td");
  if (token.expires_at === null) {
    expires.append(element("span", "no-expiry", "No expiration date"));
  } else {
    expires.append(timeElement(token.expires_at));
  }

  const status = element("td");
  status.append(element("span", `status status-${token.status}`, STATUS_NAMES[token.status] ?? token.status));

  const actions = element("td", "actions");
  if (token.status !== "deleted") {
    const remove = element("button", "icon-button");
    remove.type = "button";
    remove.setAttribute("aria-label", `Delete token “${token.description}”`);
    remove.title = "Delete token";
    remove.append(trashIcon());
    remove.addEventListener("click", () => openDelete(token, remove));
    actions.append(remove);
  }

  const labelled = [
    [description, "Description"],
    [scopeCell, "Scope"],
    [created, "Created"],
    [expires, "Expires"],
    [status, "Status"],
  ];
  for (const [cell, label] of labelled) cell.dataset.label = label;
  row.append(description, scopeCell, created, expires, status, actions);
  return row;
}

// ------------------------------------------------------------------------------------------
// Dialogs: each gives the focus back to what opened it when it closes (Escape included).

function openDialog(dialog, opener, focus) {
  dialog.returnFocusTo = opener;
  dialog.showModal();
  focus.focus();
}

for (const dialog of document.querySelectorAll("dialog")) {
  dialog.addEventListener("close", () => {
    const opener = dialog.returnFocusTo;
    dialog.returnFocusTo = null;
    if (opener && opener.isConnected && !opener.closest("[hidden]")) {
      opener.focus();
    } else if (!$("list-card").hidden) {
      $("list-title").focus();
    }
  });
}

// Generate.

$("generate-open").addEventListener("click", () => {
  const { namespace, function: fn } = scope;
  const today = new Date();
  const inThirtyDays = new Date(today.getFullYear(), today.getMonth(), today.getDate() + 30);
  showMessage($("notice"), "");
  $("generate-form").reset();
  $("description").value = "";
  $("expires").min = isoDate(today);
  $("expires").value = isoDate(inThirtyDays);
  $("expires").disabled = false;
  $("scope-function-name").textContent = fn || "(none chosen)";
  $("scope-namespace-name").textContent = namespace;
  $("scope-function").disabled = !fn;
  $("scope-function").checked = Boolean(fn);
  $("scope-namespace").checked = !fn;
  showMessage($("generate-error"), "");
  openDialog($("generate-dialog"), $("generate-open"), $("description"));
});

$("no-expiry").addEventListener("change", () => {
  $("expires").disabled = $("no-expiry").checked;
});

$("generate-cancel").addEventListener("click", () => $("generate-dialog").close());

$("generate-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const { namespace, function: fn } = scope;
  const description = $("description").value.trim();
  const forFunction = $("scope-function").checked && Boolean(fn);
  const error = $("generate-error");
  if (!description) {
    showMessage(error, "Description: enter what the token is for.");
    $("description").focus();
    return;
  }
  let expiresAt = null;
  if (!$("no-expiry").checked) {
    const day = $("expires").value;
    if (!day) {
      showMessage(error, "Expiration date: choose a date, or tick “No expiration date”.");
      $("expires").focus();
      return;
    }
    // Compared as instants, not as text: a year may have five or six digits ("10000-01-01").
    const end = endOfLocalDay(day);
    if (end === null || end.getTime() >= EXPIRY_LIMIT_MS) {
      showMessage(error, "Expiration date: choose a day before the year 9999, or tick “No expiration date”.");
      $("expires").focus();
      return;
    }
    if (end < endOfLocalDay(isoDate(new Date()))) {
      showMessage(error, "Expiration date: choose today or a later day.");
      $("expires").focus();
      return;
    }
    expiresAt = rfc3339(end);
  }
  showMessage(error, "");
  setBusy($("generate-submit"), true, "Generating…");
  try {
    const created = await adminCall("POST", "/v1/tokens", {
      namespace_id: namespace,
      function_id: forFunction ? fn : null,
      description,
      expires_at: expiresAt,
    });
    if (typeof created.token !== "string") throw unexpectedAnswer();
    $("generate-dialog").close();
    showCreated(created);
    loadTokens();
  } catch (failure) {
    if (failure.status !== 401) {
      showMessage(error, failure.message);
    }
  } finally {
    setBusy($("generate-submit"), false);
  }
});

// The token, once.

function showCreated(created) {
  $("token-for").textContent = scopeLabel(created.namespace_id, created.function_id);
  $("token-value").value = created.token;
  showMessage($("copy-status"), "");
  openDialog($("token-dialog"), $("generate-open"), $("token-copy"));
  // From its first character: a textarea given a value shows its end.
  $("token-value").scrollTop = 0;
}

$("token-copy").addEventListener("click", async () => {
  const field = $("token-value");
  try {
    await navigator.clipboard.writeText(field.value);
    showMessage($("copy-status"), "Copied to the clipboard.");
  } catch {
    // No clipboard access (refused, or a page not served from localhost or HTTPS).
    field.focus();
    field.select();
    showMessage($("copy-status"), "The browser did not allow copying: the token is selected, press Ctrl+C (⌘C).");
  }
});

// The token leaves the page with its dialog, at the moment it closes: Done and Escape (the
// dialog's cancel) clear it before it closes, and the close event covers any other way. (The
// close event alone comes a moment after the dialog is gone.)
function forgetToken() {
  $("token-value").value = "";
  $("token-for").textContent = "";
  showMessage($("copy-status"), "");
}

$("token-done").addEventListener("click", () => {
  forgetToken();
  $("token-dialog").close();
});
$("token-dialog").addEventListener("cancel", forgetToken);
$("token-dialog").addEventListener("close", forgetToken);

// Delete.

function openDelete(token, opener) {
  deleting = token;
  const what = token.function_id === null ? "whole namespace" : `function ${token.function_id}`;
  setText(
    $("delete-text"),
    "Delete the token “",
    { user: token.description },
    `” (${what} of namespace ${token.namespace_id}, id ${token.id})?`,
  );
  showMessage($("delete-error"), "");
  openDialog($("delete-dialog"), opener, $("delete-cancel"));
}

$("delete-cancel").addEventListener("click", () => $("delete-dialog").close());

$("delete-confirm").addEventListener("click", async () => {
  const token = deleting;
  if (!token) return;
  setBusy($("delete-confirm"), true, "Deleting…");
  try {
    await adminCall("DELETE", `/v1/tokens/${encodeURIComponent(token.id)}`);
    deleting = null;
    $("delete-dialog").close();
    setText(
      $("notice"),
      "Token “",
      { user: token.description },
      "” deleted. The filter refuses it from its next key refresh.",
    );
    $("notice").hidden = false;
    loadTokens({ focusList: true });
  } catch (failure) {
    if (failure.status === 404) {
      showMessage($("delete-error"), "This token is already deleted.");
      loadTokens();
    } else if (failure.status !== 401) {
      showMessage($("delete-error"), failure.message);
    }
  } finally {
    setBusy($("delete-confirm"), false);
  }
});

$("delete-dialog").addEventListener("close", () => {
  deleting = null;
});

// ------------------------------------------------------------------------------------------
// Start: signed in already in this tab, or not.

if (sessionStorage.getItem(ADMIN_TOKEN_KEY)) {
  showTokens();
} else {
  showLogin();
}
