// Talking to the server: fetch with the bearer token, WebSocket URLs with ?token=, and the
// token prompt shown once when the server answers 401.

const TOKEN_KEY = 'computer-use-server.token';

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && (body.detail || body.error);
    super(detail ? `${detail}` : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export function token() {
  try {
    return localStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

function saveToken(value) {
  try {
    localStorage.setItem(TOKEN_KEY, value);
  } catch {
    // Private mode without storage: the token lives as long as the page.
  }
  memoryToken = value;
}

let memoryToken = '';
let prompt = null;

function currentToken() {
  return token() || memoryToken;
}

// Shows the token form (one prompt however many calls are waiting); resolves once submitted.
export function askToken(refused) {
  if (prompt) return prompt;
  const overlay = document.querySelector('[data-token-overlay]');
  const form = overlay.querySelector('[data-testid="token-form"]');
  const input = form.querySelector('[data-testid="token-input"]');
  const error = form.querySelector('[data-token-error]');
  error.textContent = refused ? 'That token was refused. Try again.' : '';
  overlay.hidden = false;
  input.value = '';
  input.focus();
  prompt = new Promise((resolve) => {
    form.onsubmit = (e) => {
      e.preventDefault();
      const value = input.value.trim();
      if (!value) return;
      saveToken(value);
      overlay.hidden = true;
      form.onsubmit = null;
      prompt = null;
      resolve(value);
    };
  });
  return prompt;
}

// A JSON API call. 401 asks for the token and retries; other failures throw ApiError
// (HTTP errors) or TypeError (network down).
export async function api(path, { method = 'GET', body } = {}) {
  for (;;) {
    const sent = currentToken();
    const headers = { Accept: 'application/json' };
    if (sent) headers.Authorization = `Bearer ${sent}`;
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const resp = await fetch(path, init);
    if (resp.status === 401) {
      await askToken(Boolean(sent));
      continue;
    }
    const data = await resp.json().catch(() => null);
    if (!resp.ok) throw new ApiError(resp.status, data);
    return data;
  }
}

// An absolute ws:// or wss:// URL for `path` on this server, with the token when there is one.
export function wsUrl(path, params = {}) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  const t = currentToken();
  if (t) url.searchParams.set('token', t);
  return url.toString();
}
