// The page's only way to the kiosk: fetch the JSON API with the CSRF token; errors carry plain sentences.
let csrfToken = null;

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `The kiosk answered ${status}.`);
    this.status = status;
    this.body = body || {};
  }
}

export function setToken(token) { csrfToken = token; }

export async function api(method, path, body, { form = false } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let payload;
  if (form) payload = body;
  else if (body !== undefined) { headers["Content-Type"] = "application/json"; payload = JSON.stringify(body); }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, credentials: "same-origin", cache: "no-store" });
  } catch {
    throw new ApiError(0, { error: "The kiosk is not answering: check the Wi-Fi." });
  }
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && path !== "/api/login") { location.assign("/login?ended=1"); }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export async function loadMe() {
  const me = await api("GET", "/api/me");
  setToken(me.csrfToken);
  return me;
}

export function showError(element, error) {
  element.textContent = error instanceof Error ? error.message : String(error);
  element.hidden = false;
}

// A short message at the bottom; with `action` ({ label(secondsLeft), run }) it carries a button whose label
// counts down each second until the toast goes away (e.g. "Undo (4 s)").
export function toast(text, ms = 3000, action = null) {
  const el = document.getElementById("toast");
  const button = document.getElementById("toast-action");
  document.getElementById("toast-text").textContent = text;
  clearInterval(toast.ticker);
  clearTimeout(toast.timer);
  button.hidden = !action;
  button.onclick = null;
  if (action) {
    const until = Date.now() + ms;
    const label = () => { button.textContent = action.label(Math.max(1, Math.ceil((until - Date.now()) / 1000))); };
    label();
    toast.ticker = setInterval(label, 1000);
    button.onclick = () => { hideToast(); action.run(); };
  }
  el.hidden = false;
  toast.timer = setTimeout(hideToast, ms);
}

export function hideToast() {
  clearInterval(toast.ticker);
  clearTimeout(toast.timer);
  document.getElementById("toast").hidden = true;
}

export async function logout() {
  try { await api("POST", "/api/logout"); } finally { location.assign("/login"); }
}
