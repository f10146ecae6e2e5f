// The live desktop: noVNC's RFB (the installed ES module under /novnc/) connected through
// our /ws/vnc proxy, view-only unless "take control" is checked. When noVNC or the desktop
// is unavailable, the latest screenshot from the conversation stands in, with the reason.

import { api, wsUrl } from './api.js';

const RETRY_MAX_MS = 15000;

let rfbModule = null;
async function loadRfb() {
  if (!rfbModule) {
    rfbModule = import('/novnc/core/rfb.js').then((m) => m.default);
    rfbModule.catch(() => {
      rfbModule = null;
    });
  }
  return rfbModule;
}

export class Desktop {
  constructor(panel, { onImage }) {
    this.panel = panel;
    this.screen = panel.querySelector('[data-testid="desktop-screen"]');
    this.fallback = panel.querySelector('[data-testid="desktop-fallback"]');
    this.fallbackImage = panel.querySelector('[data-testid="desktop-fallback-image"]');
    this.reason = panel.querySelector('[data-testid="desktop-fallback-reason"]');
    this.control = panel.querySelector('[data-testid="take-control"]');
    this.state = panel.querySelector('[data-desktop-state]');
    this.rfb = null;
    this.path = null;
    this.wanted = null;
    this.sessionId = null;
    this.retryMs = 1000;
    this.timer = null;
    this.control.checked = false;
    this.control.addEventListener('change', () => this.applyControl());
    this.fallbackImage.addEventListener('click', () => onImage(this.fallbackImage.src));
    this.showFallback('Open a session to see its desktop.');
  }

  applyControl() {
    if (!this.rfb) return;
    this.rfb.viewOnly = !this.control.checked;
    if (this.control.checked) this.rfb.focus();
    this.panel.classList.toggle('in-control', this.control.checked);
  }

  // The session whose desktop to show (null: none). Keeps a connection that already fits.
  async show(sessionId) {
    this.sessionId = sessionId;
    this.fallbackImage.hidden = true;
    this.fallbackImage.removeAttribute('src');
    await this.refresh();
  }

  // Whether a viewer is connected or connecting (nothing to ask the server then).
  isLive() {
    return Boolean(this.rfb);
  }

  // Asks the server where the desktop is and connects, or says why not.
  async refresh() {
    clearTimeout(this.timer);
    if (this.refreshing) {
      this.again = true;
      return;
    }
    this.refreshing = true;
    try {
      await this.lookUp();
    } finally {
      this.refreshing = false;
      if (this.again) {
        this.again = false;
        this.refresh();
      }
    }
  }

  async lookUp() {
    const sessionId = this.sessionId;
    if (!sessionId) {
      this.disconnect();
      this.showFallback('Open a session to see its desktop.');
      return;
    }
    let info;
    try {
      info = await api(`/api/vnc/info?session_id=${encodeURIComponent(sessionId)}`);
    } catch (err) {
      if (sessionId !== this.sessionId) return;
      this.disconnect();
      this.showFallback(`Desktop information unavailable: ${err.message}`);
      this.retryLater();
      return;
    }
    if (sessionId !== this.sessionId) return;
    if (!info.websocket_url) {
      this.disconnect();
      this.showFallback(info.reason || 'No desktop is configured on this server.');
      return;
    }
    if (!info.available) {
      this.disconnect();
      this.showFallback(info.reason || 'The desktop is not running yet.');
      this.retryLater();
      return;
    }
    this.connect(info.websocket_url);
  }

  retryLater() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), this.retryMs);
    this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
  }

  async connect(path) {
    if (this.rfb && this.path === path) return;
    this.disconnect();
    this.wanted = path;
    let RFB;
    try {
      RFB = await loadRfb();
    } catch (err) {
      this.showFallback(`The noVNC client is not available (${err.message}); install the novnc package to watch live.`);
      return;
    }
    if (this.wanted !== path || this.rfb) return;
    this.reason.textContent = 'Connecting to the desktop…';
    this.setState('connecting…');
    let rfb;
    try {
      rfb = new RFB(this.screen, wsUrl(path), { wsProtocols: ['binary'], shared: true });
    } catch (err) {
      this.showFallback(`Cannot start the desktop viewer: ${err.message}`);
      return;
    }
    rfb.scaleViewport = true;
    rfb.resizeSession = false;
    rfb.viewOnly = !this.control.checked;
    rfb.background = 'transparent';
    rfb.addEventListener('connect', () => {
      this.retryMs = 1000;
      this.hideFallback();
      this.setState('live');
    });
    rfb.addEventListener('disconnect', (e) => {
      if (this.rfb !== rfb) return;
      this.rfb = null;
      this.path = null;
      const clean = e.detail && e.detail.clean;
      this.showFallback(clean ? 'The desktop connection closed; reconnecting…' : 'The desktop connection was lost; reconnecting…');
      this.retryLater();
    });
    rfb.addEventListener('securityfailure', (e) => {
      this.showFallback(`The VNC server refused the connection: ${(e.detail && e.detail.reason) || 'security failure'}`);
    });
    this.rfb = rfb;
    this.path = path;
  }

  disconnect() {
    this.wanted = null;
    const rfb = this.rfb;
    this.rfb = null;
    this.path = null;
    if (rfb) {
      try {
        rfb.disconnect();
      } catch {
        // already closed
      }
    }
    this.screen.replaceChildren();
  }

  setState(text) {
    this.state.textContent = text ? `· ${text}` : '';
  }

  showFallback(reason) {
    this.reason.textContent = reason;
    this.fallback.hidden = false;
    this.screen.classList.add('behind');
    this.setState(this.fallbackImage.hidden ? 'unavailable' : 'latest screenshot');
  }

  hideFallback() {
    this.fallback.hidden = true;
    this.screen.classList.remove('behind');
  }

  // The latest screenshot the agent took: shown while the live view is unavailable.
  setScreenshot(src) {
    this.fallbackImage.src = src;
    this.fallbackImage.hidden = false;
    if (!this.fallback.hidden) this.setState('latest screenshot');
  }
}
