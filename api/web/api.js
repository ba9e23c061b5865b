// Talking to the gateway: the API key (kept in this tab's sessionStorage, sent only as a
// Bearer header), JSON requests, errors in the contract's shape, downloads as blobs.

export const API = "/api/v1";
const KEY_NAME = "bulk-ingest.api-key";

export function apiKey() {
  return sessionStorage.getItem(KEY_NAME);
}

export function rememberKey(key) {
  sessionStorage.setItem(KEY_NAME, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_NAME);
}

/** An answer other than 2xx, with the contract's error list (`errors: [{errorCode, message}]`). */
export class ApiError extends Error {
  constructor(status, errors) {
    const first = errors[0] || { message: `The gateway answered ${status}.` };
    super(first.message);
    this.status = status;
    this.errors = errors;
  }

  get code() {
    return this.errors[0]?.errorCode;
  }
}

/** Listeners told when the gateway refuses the key (401): the app then asks for it again. */
const unauthorizedListeners = new Set();

export function onUnauthorized(listener) {
  unauthorizedListeners.add(listener);
}

export function authorized(headers = {}) {
  return { ...headers, Authorization: `Bearer ${apiKey()}` };
}

/** fetch under /api/v1 with the key; rejects with ApiError for an answer that is not 2xx. */
export async function call(path, { method = "GET", body, headers = {}, signal, key } = {}) {
  const sent = { ...headers, Authorization: `Bearer ${key ?? apiKey()}` };
  let payload = body;
  if (body !== undefined && !(body instanceof Blob) && typeof body !== "string") {
    payload = JSON.stringify(body);
    sent["Content-Type"] = "application/json";
  }
  const answer = await fetch(API + path, { method, headers: sent, body: payload, signal });
  if (!answer.ok) throw await errorOf(answer, key === undefined);
  return answer;
}

export async function json(path, options) {
  return (await call(path, options)).json();
}

export async function errorOf(answer, notify = true) {
  let errors = [];
  try {
    errors = (await answer.json()).errors || [];
  } catch {
    errors = [];
  }
  if (answer.status === 401 && notify) {
    for (const listener of unauthorizedListeners) listener();
  }
  return new ApiError(answer.status, errors);
}

/** Fetch a file with the key and hand it to the browser as a download (a blob URL). */
export async function download(path) {
  const answer = await call(path);
  const blob = await answer.blob();
  const name = filenameOf(answer.headers.get("Content-Disposition")) || path.split("/").pop();
  const url = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement("a"), { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000); // the download has its own copy by then
  return name;
}

function filenameOf(disposition) {
  const match = /filename="?([^";]+)"?/i.exec(disposition || "");
  return match ? match[1] : null;
}
