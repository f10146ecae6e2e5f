// The conversation view: turns session events (stored, with seq, and live deltas) into DOM.
//
// Stored events are applied once each (the caller drops seq <= last seen). Deltas stream into
// an open block that the stored `text` / `thinking` event then replaces. User messages posted
// while a turn runs wait in the queue area at the bottom until their turn starts.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key === 'testid') node.dataset.testid = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function clock(timestamp) {
  const date = timestamp ? new Date(timestamp) : new Date();
  if (Number.isNaN(date.getTime())) return '';
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

// A one-line summary of a tool call for its card header.
function summary(name, input) {
  if (!input || typeof input !== 'object') return '';
  if (name === 'bash') return input.restart ? 'restart' : input.command || '';
  if (name === 'str_replace_editor' || name === 'str_replace_based_edit_tool') {
    return [input.command, input.path].filter(Boolean).join(' ');
  }
  if (name === 'computer') {
    const parts = [input.action];
    if (Array.isArray(input.coordinate)) parts.push(`(${input.coordinate.join(', ')})`);
    if (input.text) parts.push(JSON.stringify(input.text.length > 60 ? `${input.text.slice(0, 60)}…` : input.text));
    if (input.scroll_direction) parts.push(input.scroll_direction);
    return parts.filter(Boolean).join(' ');
  }
  return '';
}

// The input as a reader wants it: bash commands as they are, everything else as JSON.
function formatInput(name, input) {
  if (name === 'bash' && input && typeof input.command === 'string' && Object.keys(input).length === 1) {
    return `$ ${input.command}`;
  }
  return JSON.stringify(input, null, 2);
}

// Minimal, safe rendering of assistant text: fenced code blocks and inline code; the rest
// stays plain text (pre-wrap). Never innerHTML.
function renderText(node, text) {
  node.replaceChildren();
  const parts = text.split(/```/);
  parts.forEach((part, i) => {
    if (i % 2 === 1) {
      const body = part.replace(/^[\w+-]*\n/, '');
      node.append(el('pre', { class: 'code', text: body.replace(/\n$/, '') }));
      return;
    }
    const prose = i > 0 ? part.replace(/^\n/, '') : part;
    prose.split(/(`[^`\n]+`)/).forEach((piece) => {
      if (piece.length > 2 && piece.startsWith('`') && piece.endsWith('`')) {
        node.append(el('code', { text: piece.slice(1, -1) }));
      } else if (piece) {
        node.append(document.createTextNode(piece));
      }
    });
  });
}

export class Conversation {
  constructor(root, { onImage, onScreenshot } = {}) {
    this.root = root;
    this.log = root.querySelector('[data-log]');
    this.queueArea = root.querySelector('[data-queue]');
    this.empty = root.querySelector('[data-empty]');
    this.onImage = onImage || (() => {});
    this.onScreenshot = onScreenshot || (() => {});
    this.onChange = () => {};
    // Follow the end of the conversation unless the reader scrolled up; content that grows
    // later (images decoding, streamed text) keeps the view pinned while following.
    // Only the reader scrolls up (scroll anchoring is off), so an upward move means "stop".
    this.follow = true;
    this.lastTop = 0;
    root.addEventListener('scroll', () => {
      if (root.scrollTop < this.lastTop - 4) this.follow = false;
      else if (this.atBottom()) this.follow = true;
      this.lastTop = root.scrollTop;
    }, { passive: true });
    const pin = new ResizeObserver(() => {
      if (this.follow) this.scrollToBottom();
    });
    pin.observe(this.log);
    pin.observe(this.queueArea);
    this.reset();
  }

  reset() {
    this.follow = true;
    this.lastTop = 0;
    this.log.replaceChildren();
    this.queueArea.replaceChildren();
    this.running = false;
    this.pending = [];
    this.open = { text: [], thinking: [] };
    this.cards = new Map();
    this.assistant = null;
    this.errorShown = false;
    this.usage = { input: 0, output: 0 };
    this.statusDetail = '';
    this.showEmpty(false);
  }

  showEmpty(show) {
    this.empty.hidden = !show;
  }

  get queuedCount() {
    return this.pending.filter((p) => p.queued).length;
  }

  // Applies one event; returns nothing. Unknown types are ignored.
  apply(ev) {
    const handler = this[`on_${ev.type}`];
    if (!handler) return;
    handler.call(this, ev);
    this.onChange(ev);
  }

  atBottom() {
    const r = this.root;
    return r.scrollHeight - r.scrollTop - r.clientHeight < 80;
  }

  scrollToBottom() {
    this.root.scrollTop = this.root.scrollHeight;
  }

  // The assistant message that the current turn writes into.
  assistantBody() {
    if (!this.assistant || this.log.lastElementChild !== this.assistant.node) {
      const body = el('div', { class: 'body' });
      const node = el('article', { class: 'message assistant', testid: 'message', 'data-role': 'assistant' },
        el('div', { class: 'who' }, el('span', { class: 'avatar bot', text: 'C' }), el('span', { text: 'Claude' })),
        body);
      this.log.append(node);
      this.assistant = { node, body };
    }
    return this.assistant.body;
  }

  on_user_message(ev) {
    const content = typeof ev.content === 'string' ? ev.content : JSON.stringify(ev.content);
    const badge = el('span', { class: 'badge queued-badge', text: 'queued' });
    const node = el('article', { class: 'message user', testid: 'message', 'data-role': 'user', 'data-message-id': ev.message_id },
      el('div', { class: 'who' }, el('span', { class: 'avatar', text: 'You' }), el('time', { text: clock(ev.timestamp) }), badge),
      el('div', { class: 'body user-text', text: content }));
    const entry = { node, badge, queued: this.running || this.pending.length > 0 };
    if (entry.queued) {
      node.classList.add('is-queued');
      this.queueArea.append(node);
    } else {
      badge.remove();
      this.log.append(node);
    }
    this.pending.push(entry);
  }

  on_status(ev) {
    if (ev.status === 'processing') {
      this.statusDetail = ev.message && ev.message !== 'processing' ? ev.message : '';
      if (!this.running) this.startTurn();
      return;
    }
    this.running = false;
    this.statusDetail = '';
    this.closeOpenBlocks();
    if (ev.status === 'cancelled') {
      this.log.append(el('div', { class: 'note', text: 'Turn cancelled' }));
    } else if (ev.status === 'error' && !this.errorShown) {
      this.showError('The turn failed', ev.message);
    }
    this.errorShown = false;
  }

  startTurn() {
    this.running = true;
    this.errorShown = false;
    const entry = this.pending.shift();
    if (!entry) return;
    if (entry.queued) {
      entry.queued = false;
      entry.badge.remove();
      entry.node.classList.remove('is-queued');
      this.log.append(entry.node);
    }
  }

  on_text_delta(ev) {
    this.streamInto('text', ev.index, ev.delta);
  }

  on_thinking_delta(ev) {
    this.streamInto('thinking', ev.index, ev.delta);
  }

  streamInto(kind, index, delta) {
    let block = this.open[kind].find((b) => b.index === index);
    if (!block) {
      block = this.newBlock(kind);
      block.index = index;
      block.text = '';
      this.open[kind].push(block);
    }
    block.text += delta;
    block.target.textContent = block.text;
  }

  newBlock(kind) {
    const body = this.assistantBody();
    if (kind === 'text') {
      const target = el('div', { class: 'assistant-text streaming', testid: 'assistant-text' });
      body.append(target);
      return { kind, node: target, target };
    }
    const target = el('div', { class: 'thinking-text' });
    const label = el('span', { text: 'Thinking…' });
    const node = el('details', { class: 'thinking streaming', testid: 'thinking' },
      el('summary', {}, label), target);
    body.append(node);
    return { kind, node, target, label };
  }

  on_text(ev) {
    const block = this.open.text.shift() || this.newBlock('text');
    block.node.classList.remove('streaming', 'gap');
    renderText(block.target, ev.text || '');
  }

  on_thinking(ev) {
    const block = this.open.thinking.shift() || this.newBlock('thinking');
    block.node.classList.remove('streaming', 'gap');
    block.target.textContent = ev.thinking || '';
    const words = (ev.thinking || '').trim().split(/\s+/).filter(Boolean).length;
    block.label.textContent = `Thinking (${words} words)`;
  }

  // A turn ended without the stored block (cancel, error): keep what streamed, marked.
  closeOpenBlocks() {
    for (const kind of ['text', 'thinking']) {
      for (const block of this.open[kind]) {
        block.node.classList.remove('streaming');
        block.node.classList.add('interrupted');
      }
      this.open[kind] = [];
    }
  }

  // After a reconnect, deltas sent while we were away are lost: mark open blocks so the
  // reader knows the stored block will replace them.
  markGaps() {
    for (const kind of ['text', 'thinking']) {
      for (const block of this.open[kind]) block.node.classList.add('gap');
    }
  }

  on_tool_use(ev) {
    const body = this.assistantBody();
    const status = el('span', { class: 'tool-state running', text: 'running' });
    const node = el('section', { class: 'tool-card', testid: 'tool-card', 'data-tool-use-id': ev.tool_use_id },
      el('header', {},
        el('span', { class: 'tool-name', testid: 'tool-name', text: ev.tool_name }),
        el('span', { class: 'tool-summary', text: summary(ev.tool_name, ev.tool_input) }),
        status),
      el('pre', { class: 'tool-input', testid: 'tool-input', text: formatInput(ev.tool_name, ev.tool_input) }));
    body.append(node);
    this.cards.set(ev.tool_use_id, { node, status });
  }

  on_tool_result(ev) {
    let card = this.cards.get(ev.tool_use_id);
    if (!card) {
      this.on_tool_use({ tool_use_id: ev.tool_use_id, tool_name: 'tool', tool_input: {} });
      card = this.cards.get(ev.tool_use_id);
    }
    const { node, status } = card;
    status.className = `tool-state ${ev.error ? 'failed' : 'done'}`;
    status.textContent = ev.error ? 'error' : 'done';
    if (ev.output) node.append(el('pre', { class: 'tool-output', testid: 'tool-output', text: ev.output }));
    if (ev.error) node.append(el('pre', { class: 'tool-error', testid: 'tool-error', text: ev.error }));
    if (ev.base64_image) {
      const src = `data:image/png;base64,${ev.base64_image}`;
      const img = el('img', { class: 'tool-image', testid: 'tool-image', src, alt: 'Screenshot', loading: 'lazy', title: 'Open full size' });
      img.addEventListener('click', () => this.onImage(src));
      node.append(img);
      this.onScreenshot(src, ev.timestamp);
    }
    if (!ev.output && !ev.error && !ev.base64_image) {
      node.append(el('div', { class: 'tool-empty', text: '(no output)' }));
    }
  }

  on_usage(ev) {
    this.usage.input += (ev.input_tokens || 0) + (ev.cache_creation_input_tokens || 0) + (ev.cache_read_input_tokens || 0);
    this.usage.output += ev.output_tokens || 0;
  }

  on_error(ev) {
    this.errorShown = true;
    this.showError(ev.error || 'Error', ev.details);
  }

  // An error that is not an event (a refused message, a lost connection).
  showError(title, details) {
    const node = el('div', { class: 'error-message', testid: 'error-message', role: 'alert' },
      el('strong', { text: title }));
    if (details) node.append(el('div', { class: 'error-details', text: details }));
    this.log.append(node);
    this.assistant = null;
  }
}
