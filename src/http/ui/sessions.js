// The session list (newest first) and the new-session form.

import { api, ApiError } from './api.js';
import { el } from './conversation.js';

function ago(timestamp) {
  const then = new Date(timestamp).getTime();
  if (Number.isNaN(then)) return '';
  const s = Math.max(0, (Date.now() - then) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(then).toLocaleDateString([], { month: 'short', day: 'numeric', year: 'numeric' });
}

export function sessionTitle(session) {
  return (session.title && session.title.trim()) || 'New session';
}

export class SessionList {
  constructor(root, { onSelect, onHealth }) {
    this.root = root;
    this.onSelect = onSelect;
    this.onHealth = onHealth || (() => {});
    this.current = null;
    this.sessions = [];
  }

  async refresh() {
    try {
      this.sessions = await api('/api/sessions?limit=200');
      this.onHealth(true);
    } catch (err) {
      if (err instanceof ApiError) this.onHealth(true);
      else this.onHealth(false);
      return;
    }
    this.render();
  }

  select(id) {
    this.current = id;
    for (const node of this.root.children) {
      node.classList.toggle('active', node.dataset.sessionId === id);
    }
  }

  // A change seen on the live stream (title, status) before the next refresh.
  patch(id, fields) {
    const session = this.sessions.find((s) => s.id === id);
    if (!session) return;
    Object.assign(session, fields);
    this.render();
  }

  render() {
    if (this.sessions.length === 0) {
      this.root.replaceChildren(el('p', { class: 'muted list-empty', text: 'No sessions yet.' }));
      return;
    }
    this.root.replaceChildren(...this.sessions.map((s) => this.item(s)));
  }

  item(session) {
    const node = el('a', {
      class: `session-item${session.id === this.current ? ' active' : ''}`,
      href: `#/sessions/${session.id}`,
      testid: 'session-item',
      'data-session-id': session.id,
      'data-status': session.status,
      title: sessionTitle(session),
    },
    el('span', { class: 'session-name', text: sessionTitle(session) }),
    el('span', { class: 'session-meta' },
      el('span', { class: `pill ${session.status}`, text: session.status }),
      el('time', { datetime: session.created_at, text: ago(session.created_at) })));
    node.addEventListener('click', (e) => {
      if (e.metaKey || e.ctrlKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      this.onSelect(session.id);
    });
    return node;
  }
}

// The new-session dialog: validates what the API would refuse, posts, and reports the id.
export class NewSessionForm {
  constructor(overlay, { onCreated }) {
    this.overlay = overlay;
    this.form = overlay.querySelector('[data-testid="new-session-form"]');
    this.error = overlay.querySelector('[data-new-error]');
    this.onCreated = onCreated;
    this.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submit();
    });
    overlay.querySelector('[data-new-cancel]').addEventListener('click', () => this.close());
    overlay.addEventListener('click', (e) => {
      if (e.target === overlay) this.close();
    });
  }

  field(id) {
    return this.form.querySelector(`[data-testid="new-session-${id}"]`);
  }

  open() {
    this.error.textContent = '';
    this.overlay.hidden = false;
    this.field('model').focus();
  }

  close() {
    this.overlay.hidden = true;
  }

  body() {
    const body = {};
    const model = this.field('model').value.trim();
    const toolVersion = this.field('tool-version').value;
    const suffix = this.field('suffix').value.trim();
    const budget = this.field('thinking-budget').value.trim();
    const maxTokens = this.field('max-tokens').value.trim();
    if (model) body.model = model;
    if (toolVersion) body.tool_version = toolVersion;
    if (suffix) body.system_prompt_suffix = suffix;
    if (maxTokens) body.max_tokens = Number(maxTokens);
    if (budget) body.thinking_budget = Number(budget);
    if (body.thinking_budget !== undefined && body.thinking_budget < 1024) {
      throw new Error('The thinking budget must be at least 1024 tokens.');
    }
    if (body.thinking_budget !== undefined && body.max_tokens !== undefined && body.thinking_budget >= body.max_tokens) {
      throw new Error(`The thinking budget (${body.thinking_budget}) must be less than max tokens (${body.max_tokens}).`);
    }
    return body;
  }

  async submit() {
    this.error.textContent = '';
    const button = this.form.querySelector('[data-testid="new-session-submit"]');
    let body;
    try {
      body = this.body();
    } catch (err) {
      this.error.textContent = err.message;
      return;
    }
    button.disabled = true;
    try {
      const session = await api('/api/sessions', { method: 'POST', body });
      this.close();
      this.form.reset();
      this.onCreated(session);
    } catch (err) {
      this.error.textContent = err instanceof ApiError ? err.message : 'The server cannot be reached.';
    } finally {
      button.disabled = false;
    }
  }
}
