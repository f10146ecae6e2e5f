// The page: routing (#/sessions/<id>), the live connection to the open session (WebSocket
// with replay after the last seq seen, reconnecting with backoff), the composer, status,
// dialogs, and wiring between the session list, the conversation and the desktop.

import { api, ApiError, wsUrl } from './api.js';
import { Conversation } from './conversation.js';
import { SessionList, NewSessionForm, sessionTitle } from './sessions.js';
import { Desktop } from './desktop.js';

const byTest = (id) => document.querySelector(`[data-testid="${id}"]`);
const $ = (selector) => document.querySelector(selector);

const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 10000;
const LIST_POLL_MS = 5000;

const ui = {
  title: byTest('session-title'),
  meta: $('[data-session-meta]'),
  deleteButton: byTest('delete-session-button'),
  input: byTest('message-input'),
  send: byTest('send-button'),
  cancel: byTest('cancel-button'),
  queued: byTest('queued-count'),
  composer: $('[data-composer]'),
  connection: byTest('connection-status'),
  dot: $('[data-dot]'),
  turn: byTest('turn-status'),
  turnBox: $('[data-turn]'),
  detail: $('[data-status-detail]'),
  confirm: byTest('confirm-dialog'),
  viewer: byTest('image-viewer'),
};

// ------------------------------------------------------------------ image viewer, confirm

function openImage(src) {
  ui.viewer.querySelector('[data-viewer-image]').src = src;
  ui.viewer.hidden = false;
}

function closeImage() {
  ui.viewer.hidden = true;
  ui.viewer.querySelector('[data-viewer-image]').removeAttribute('src');
}

ui.viewer.addEventListener('click', closeImage);

function confirmDialog(title, text) {
  ui.confirm.querySelector('[data-confirm-title]').textContent = title;
  ui.confirm.querySelector('[data-confirm-text]').textContent = text;
  ui.confirm.hidden = false;
  const yes = byTest('confirm-yes');
  const no = byTest('confirm-no');
  no.focus();
  return new Promise((resolve) => {
    const done = (answer) => {
      ui.confirm.hidden = true;
      yes.onclick = null;
      no.onclick = null;
      confirmDialog.cancel = null;
      resolve(answer);
    };
    yes.onclick = () => done(true);
    no.onclick = () => done(false);
    confirmDialog.cancel = () => done(false);
  });
}

document.addEventListener('keydown', (e) => {
  if (e.key !== 'Escape') return;
  if (!ui.viewer.hidden) closeImage();
  else if (!ui.confirm.hidden && confirmDialog.cancel) confirmDialog.cancel();
  else if (!$('[data-new-overlay]').hidden) newForm.close();
});

// ------------------------------------------------------------------ parts

const desktop = new Desktop(byTest('desktop-panel'), { onImage: openImage });
const conversation = new Conversation(byTest('conversation'), {
  onImage: openImage,
  onScreenshot: (src) => desktop.setScreenshot(src),
});
const list = new SessionList(byTest('session-list'), {
  onSelect: (id) => navigate(id),
  onHealth: (ok) => {
    listHealthy = ok;
    renderConnection();
  },
});
const newForm = new NewSessionForm($('[data-new-overlay]'), {
  onCreated: (session) => {
    list.refresh();
    navigate(session.id);
  },
});
byTest('new-session-button').addEventListener('click', () => newForm.open());

let listHealthy = null;
let view = null;

// ------------------------------------------------------------------ the open session

class SessionView {
  constructor(id) {
    this.id = id;
    this.lastSeq = 0;
    this.ws = null;
    this.state = 'reconnecting';
    this.attempt = 0;
    this.timer = null;
    this.closed = false;
    this.everOpened = false;
  }

  async start() {
    conversation.reset();
    ui.title.textContent = 'Loading…';
    ui.meta.textContent = '';
    ui.deleteButton.hidden = false;
    setComposer(true);
    renderTurn();
    desktop.show(this.id);
    await this.connectWhenReachable();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
    }
  }

  // Checks the session over HTTP first: it asks for the token on 401, notices a deleted
  // session, and tells a server that is down from one that refuses the WebSocket.
  async connectWhenReachable() {
    if (this.closed) return;
    try {
      const session = await api(`/api/sessions/${this.id}`);
      if (this.closed) return;
      this.session = session;
      showSession(session);
    } catch (err) {
      if (this.closed) return;
      if (err instanceof ApiError && err.status === 404) {
        this.gone('This session does not exist (it may have been deleted).');
        return;
      }
      this.setState('reconnecting');
      this.retry();
      return;
    }
    this.connect();
  }

  connect() {
    const ws = new WebSocket(wsUrl(`/ws/${this.id}`, { after: String(this.lastSeq) }));
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      if (this.everOpened) conversation.markGaps();
      byTest('conversation').classList.add('has-session');
      this.everOpened = true;
      this.setState('connected');
    };
    ws.onmessage = (message) => this.receive(message.data);
    ws.onclose = (e) => {
      if (this.closed || this.ws !== ws) return;
      this.ws = null;
      if (e.code === 4404) {
        this.gone('This session was deleted.');
        return;
      }
      this.setState('reconnecting');
      // A slow consumer (4000) resumes at once; anything else backs off.
      if (e.code === 4000) this.timer = setTimeout(() => this.connectWhenReachable(), 0);
      else this.retry();
    };
  }

  retry() {
    clearTimeout(this.timer);
    const base = Math.min(RECONNECT_MIN_MS * 2 ** this.attempt, RECONNECT_MAX_MS);
    this.attempt += 1;
    const delay = base / 2 + Math.random() * (base / 2);
    this.timer = setTimeout(() => this.connectWhenReachable(), delay);
  }

  // Reconnect now (the browser came back online).
  kick() {
    if (this.closed || this.ws) return;
    this.attempt = 0;
    clearTimeout(this.timer);
    this.connectWhenReachable();
  }

  receive(text) {
    let ev;
    try {
      ev = JSON.parse(text);
    } catch {
      return;
    }
    if (ev.type === 'ack') return;
    if (ev.type === 'error' && !ev.session_id) {
      conversation.showError(ev.error || 'Error', ev.detail);
      return;
    }
    if (typeof ev.seq === 'number') {
      if (ev.seq <= this.lastSeq) return;
      this.lastSeq = ev.seq;
    }
    conversation.apply(ev);
    if (ev.type === 'user_message' && this.session && !this.session.title) {
      this.session.title = String(ev.content).slice(0, 80);
      showSession(this.session);
    }
    if (ev.type === 'status') {
      list.patch(this.id, { status: conversation.running ? 'running' : 'idle' });
      // A turn may have started the session's own desktop (per-session mode).
      if (ev.status === 'processing' && !desktop.isLive()) desktop.refresh();
    }
    if (ev.type === 'usage') showSession(this.session);
    renderTurn();
  }

  gone(why) {
    this.close();
    this.setState('offline');
    conversation.showError('Session unavailable', why);
    ui.deleteButton.hidden = true;
    setComposer(false);
    list.refresh();
  }

  setState(state) {
    this.state = state;
    renderConnection();
  }
}

function showSession(session) {
  if (!session) return;
  ui.title.textContent = sessionTitle(session);
  document.title = `${sessionTitle(session)} · Computer Use`;
  const parts = [session.model, session.tool_version];
  if (session.thinking_budget) parts.push(`thinking ${session.thinking_budget}`);
  const { input, output } = conversation.usage;
  if (input || output) parts.push(`${input.toLocaleString()} in / ${output.toLocaleString()} out tokens`);
  ui.meta.textContent = parts.filter(Boolean).join(' · ');
}

function renderConnection() {
  let state;
  if (!navigator.onLine) state = 'offline';
  else if (view) state = view.state;
  else if (listHealthy === null) state = 'offline';
  else state = listHealthy ? 'connected' : 'reconnecting';
  ui.connection.textContent = state;
  ui.dot.className = `dot ${state}`;
}

function renderTurn() {
  const running = Boolean(view) && conversation.running;
  ui.turn.textContent = running ? 'running' : 'idle';
  ui.turnBox.classList.toggle('running', running);
  ui.cancel.hidden = !running;
  const queued = view ? conversation.queuedCount : 0;
  ui.queued.hidden = queued === 0;
  ui.queued.textContent = queued === 1 ? '1 message queued' : `${queued} messages queued`;
  ui.detail.textContent = running ? conversation.statusDetail : '';
}

function setComposer(enabled) {
  ui.input.disabled = !enabled;
  ui.send.disabled = !enabled;
}

// ------------------------------------------------------------------ composer

async function send() {
  if (!view) return;
  const content = ui.input.value.trim();
  if (!content) return;
  const target = view;
  ui.send.disabled = true;
  try {
    await api(`/api/sessions/${target.id}/messages`, { method: 'POST', body: { content } });
    if (ui.input.value.trim() === content) ui.input.value = '';
  } catch (err) {
    const why = err instanceof ApiError ? err.message : 'The server cannot be reached; your text is kept.';
    if (view === target) conversation.showError('Message not sent', why);
  } finally {
    ui.send.disabled = !view;
    ui.input.focus();
  }
}

ui.composer.addEventListener('submit', (e) => {
  e.preventDefault();
  send();
});

ui.input.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    send();
  }
});

ui.cancel.addEventListener('click', async () => {
  if (!view) return;
  ui.cancel.disabled = true;
  try {
    await api(`/api/sessions/${view.id}/cancel`, { method: 'POST' });
  } catch (err) {
    conversation.showError('Cancel failed', err.message);
  } finally {
    ui.cancel.disabled = false;
  }
});

ui.deleteButton.addEventListener('click', async () => {
  if (!view) return;
  const target = view;
  const name = ui.title.textContent;
  const yes = await confirmDialog('Delete session?', `“${name}” and its whole history will be deleted. This cannot be undone.`);
  if (!yes || view !== target) return;
  try {
    await api(`/api/sessions/${target.id}`, { method: 'DELETE' });
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) {
      conversation.showError('Delete failed', err.message);
      return;
    }
  }
  navigate(null);
  list.refresh();
});

// ------------------------------------------------------------------ routing

function navigate(id) {
  const hash = id ? `#/sessions/${id}` : '#/';
  if (location.hash !== hash) location.hash = hash;
  else route();
}

function route() {
  const match = location.hash.match(/^#\/sessions\/([0-9a-fA-F-]{36})$/);
  const id = match ? match[1].toLowerCase() : null;
  if (view && view.id === id) return;
  if (view) view.close();
  view = null;
  list.select(id);
  byTest('conversation').classList.remove('has-session');
  if (!id) {
    conversation.reset();
    conversation.showEmpty(true);
    ui.title.textContent = 'No session selected';
    document.title = 'Computer Use';
    ui.meta.textContent = '';
    ui.deleteButton.hidden = true;
    setComposer(false);
    desktop.show(null);
    renderTurn();
    renderConnection();
    return;
  }
  view = new SessionView(id);
  renderConnection();
  view.start();
}

window.addEventListener('hashchange', route);
window.addEventListener('online', () => {
  renderConnection();
  if (view) view.kick();
  list.refresh();
});
window.addEventListener('offline', renderConnection);

setInterval(() => {
  if (document.visibilityState === 'visible') list.refresh();
}, LIST_POLL_MS);

list.refresh();
route();
