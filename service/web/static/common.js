// Shared by the page's modules: the page state, small DOM helpers and API calls with the key.

const KEY_STORAGE = "tianxun.apiKey";

export const state = {
  map: null,
  me: null,
  cases: new Map(), // id -> GeoJSON point feature (status, priority, live)
  outlines: new Map(), // id -> GeoJSON polygon feature, for the cases around the view
  outlineBox: null, // [w, s, e, n] the outlines were fetched for
  outlinesLoaded: null, // the promise of the latest outline request
  knownVersions: new Map(), // id -> case version this page has read or written
  openCaseId: null,
  openCaseEtag: null,
  firstRenderMs: null,
  blobUrls: [],
};
window.tianxun = state; // for the browser tests and for debugging from the console

export const $ = (selector) => document.querySelector(selector);

export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "className") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export function setStatus(text) {
  $("#status-line").textContent = text;
}

// --- the API key and calls -----------------------------------------------------------

export function saveKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

export function askForKey(message) {
  $("#key-error").textContent = message || "";
  const dialog = $("#key-dialog");
  if (!dialog.open) dialog.showModal();
  $("#api-key").focus();
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export async function api(path, options = {}) {
  const headers = { ...(options.headers || {}), Authorization: `Bearer ${apiKey()}` };
  const response = await fetch(path, { ...options, headers });
  if (response.ok) return response;
  let detail = `${response.status} ${response.statusText}`;
  try {
    const problem = await response.json();
    detail = problem.detail || detail;
  } catch (_) {
    // not problem+json: keep the status line
  }
  if (response.status === 401) {
    sessionStorage.removeItem(KEY_STORAGE);
    askForKey(detail);
  }
  throw new ApiError(response.status, detail);
}

export const apiJson = async (path, options) => (await api(path, options)).json();
