// Talking to the service: every call carries the examiner's key; failures become ApiErrors whose
// message can be shown as it is.

import { h } from "./dom.js";

const API = "/api/v1";
const KEY_STORAGE = "radmatch.apiKey";
export const NETWORK_MESSAGE = "Cannot reach the radmatch service";

export class ApiError extends Error {
  constructor(message, status = 0) {
    super(message);
    this.name = "ApiError";
    this.status = status;
  }
}

// Kept for the browser tab only: closing the tab signs out.
export const credentials = {
  get key() {
    return sessionStorage.getItem(KEY_STORAGE);
  },
  set key(value) {
    if (value) sessionStorage.setItem(KEY_STORAGE, value);
    else sessionStorage.removeItem(KEY_STORAGE);
  },
};

/** The API's own words for a failure: its `detail`, or FastAPI's list of invalid fields. */
export function describeFailure(status, payload) {
  const detail = payload && payload.detail;
  if (typeof detail === "string" && detail) return capitaliseFirst(detail);
  if (Array.isArray(detail) && detail.length) {
    return detail
      .map((problem) => {
        const where = (problem.loc || []).filter((part) => part !== "body").join(" › ");
        return where ? `${where}: ${problem.msg}` : problem.msg;
      })
      .join("; ");
  }
  if (status >= 500) return `The radmatch service failed (HTTP ${status}); try again shortly`;
  return `The request was refused (HTTP ${status})`;
}

function capitaliseFirst(text) {
  return text[0].toUpperCase() + text.slice(1);
}

function parseJson(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

async function send(path, { method = "GET", body, key = credentials.key } = {}) {
  const headers = {};
  if (key) headers["X-API-Key"] = key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  try {
    return await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(NETWORK_MESSAGE);
  }
}

/** A JSON call under /api/v1; resolves to the parsed body, rejects with an ApiError. */
export async function api(path, options = {}) {
  const response = await send(API + path, options);
  const payload = parseJson(await response.text());
  if (!response.ok) throw new ApiError(describeFailure(response.status, payload), response.status);
  return payload;
}

/** The readiness probe: it answers 503 with its checks when not ready, which is still an answer. */
export async function readiness() {
  const response = await send("/readyz", { key: null });
  const payload = parseJson(await response.text());
  if (!payload || !payload.checks) {
    throw new ApiError(describeFailure(response.status, payload), response.status);
  }
  return payload;
}

/**
 * A multipart upload through XMLHttpRequest, which, unlike fetch, reports upload progress:
 * onProgress(fraction or null) while sending, onSent() once the server has the whole file.
 */
export function upload(path, form, { onProgress, onSent } = {}) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", API + path);
    request.setRequestHeader("X-API-Key", credentials.key || "");
    request.upload.onprogress = (event) => {
      if (onProgress) onProgress(event.lengthComputable ? event.loaded / event.total : null);
    };
    request.upload.onload = () => onSent && onSent();
    request.onload = () => {
      const payload = parseJson(request.responseText);
      if (request.status >= 200 && request.status < 300) resolve(payload);
      else reject(new ApiError(describeFailure(request.status, payload), request.status));
    };
    request.onerror = () => reject(new ApiError(NETWORK_MESSAGE));
    request.ontimeout = () => reject(new ApiError(NETWORK_MESSAGE));
    request.send(form);
  });
}

/**
 * Images need the key, so they are fetched and shown through object URLs. A scope holds the URLs of
 * one view and revokes them all when the view goes away.
 */
export class ImageScope {
  constructor() {
    this.urls = new Map();
    this.released = false;
  }

  url(path) {
    if (!this.urls.has(path)) this.urls.set(path, this.fetchBlob(path));
    return this.urls.get(path);
  }

  async fetchBlob(path) {
    const response = await send(API + path);
    if (!response.ok) {
      const payload = parseJson(await response.text());
      throw new ApiError(describeFailure(response.status, payload), response.status);
    }
    const url = URL.createObjectURL(await response.blob());
    if (this.released) URL.revokeObjectURL(url);
    return url;
  }

  release() {
    this.released = true;
    for (const pending of this.urls.values()) {
      pending.then((url) => URL.revokeObjectURL(url)).catch(() => {});
    }
    this.urls.clear();
  }

  /**
   * An <img> that fills in once its preview arrives; an image that cannot be fetched is replaced
   * by a short note rather than a broken-image icon.
   */
  image(path, alt, className = "thumb") {
    const img = h("img", { class: className, alt, decoding: "async" });
    this.url(path).then(
      (url) => {
        img.src = url;
      },
      (error) => {
        img.replaceWith(
          h(
            "span",
            {
              class: "thumb-missing",
              role: alt ? "img" : null,
              "aria-label": alt ? `${alt}: preview unavailable` : null,
              title: error.message,
            },
            "Preview unavailable",
          ),
        );
      },
    );
    return img;
  }
}
