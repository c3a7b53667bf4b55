// The Host's REST API: every call carries the token (if any) and turns a failure into
// an ApiError whose message is the Host's own. A 401 opens the token form (auth.js).
import { authRequired, token, setToken } from "./auth.js";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// The error a page should not show: the token form is already asking.
export class AuthError extends ApiError {}

export function headers(extra) {
  const all = Object.assign({}, extra);
  const t = token();
  if (t) all.Authorization = `Bearer ${t}`;
  return all;
}

// fetch() with the token; a 401 becomes an AuthError (and the form shows), any other
// non-2xx an ApiError with the Host's message. Returns the Response.
export async function raw(path, options = {}) {
  const init = Object.assign({}, options, { headers: headers(options.headers) });
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `the Host cannot be reached (${err.message})`);
  }
  if (res.ok) return res;
  const text = await res.text().catch(() => "");
  let body = null;
  try { body = JSON.parse(text); } catch { body = null; }
  const message = (body && (body.message || body.error)) || text.trim() || `HTTP ${res.status}`;
  if (res.status === 401) {
    const refused = token() !== null;
    setToken(null);
    authRequired(refused);
    throw new AuthError(401, message, body);
  }
  throw new ApiError(res.status, `${res.status} ${message}`, body);
}

// A JSON call: get("/programs"), call("POST", "/programs", body).
export async function call(method, path, body) {
  const options = { method };
  if (body !== undefined) {
    options.body = JSON.stringify(body);
    options.headers = { "Content-Type": "application/json" };
  }
  const res = await raw(path, options);
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError(res.status, `the answer of ${path} is not JSON`);
  }
}

export const get = (path) => call("GET", path);

export async function text(path) {
  return (await raw(path)).text();
}

// The path of a program's route; ids and names are [a-z0-9_-] but encode anyway.
export function programPath(id, rest = "") {
  return `/programs/${encodeURIComponent(id)}${rest}`;
}
