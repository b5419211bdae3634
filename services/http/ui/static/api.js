// The read API client: the same JSON API as every other client, with the bearer token
// kept in sessionStorage (gone when the tab closes).

const KEY = "orch.token";

export const token = () => sessionStorage.getItem(KEY);
export const setToken = (value) => sessionStorage.setItem(KEY, value);
export const clearToken = () => sessionStorage.removeItem(KEY);

// An answer of the API with an error status.
export class ApiError extends Error {
  constructor(status, code, message, index) {
    super(message);
    this.status = status;
    this.code = code;
    this.index = index;
  }
  // Worth retrying as a connection problem: the service or its log unavailable.
  get transient() {
    return this.status >= 500 || this.status === 429;
  }
}

// No answer at all: the server is down or unreachable.
export class NetworkError extends Error {}

export async function get(path, { signal } = {}) {
  return request(path, { signal });
}

// An action (drain, undrain, cancel): POST with a JSON body; the same errors as get().
export async function post(path, payload = {}) {
  return request(path, { method: "POST", body: JSON.stringify(payload) });
}

// Whether the API wants a token (/ui/config.json, served with the page): a page without
// one asks for it at once rather than being refused first.
export async function authOn() {
  try {
    const response = await fetch("/ui/config.json", { cache: "no-store", credentials: "omit" });
    return Boolean((await response.json()).auth);
  } catch {
    return false; // unknown: the API's 401 will say so
  }
}

async function request(path, { signal, method = "GET", body: payload } = {}) {
  const headers = { Accept: "application/json" };
  if (payload !== undefined) headers["Content-Type"] = "application/json";
  const value = token();
  if (value) headers.Authorization = `Bearer ${value}`;
  let response, body;
  try {
    response = await fetch(path, { method, headers, signal, body: payload, cache: "no-store", credentials: "omit" });
    body = await response.json();
  } catch (error) {
    if (signal && signal.aborted) throw error;
    throw new NetworkError(`no answer from ${path}: ${error.message}`);
  }
  const index = Number(response.headers.get("X-Orch-Index") || 0);
  if (!response.ok) {
    const found = (body && body.error) || {};
    throw new ApiError(response.status, found.code || "", found.message || response.statusText, index);
  }
  return { body, index };
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
