// WebSocket connection to the main backend: request-id correlation, per-request timeouts and
// reconnection with backoff. Every request settles exactly once (reply, timeout or close).

export class RequestError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 8000;

export class VigilConnection extends EventTarget {
  constructor({ requestTimeoutMs = 15000 } = {}) {
    super();
    this.requestTimeoutMs = requestTimeoutMs;
    this.pending = new Map(); // request_id -> {resolve, reject, timer}
    this.counter = 0;
    this.ws = null;
    this.url = null;
    this.wanted = false; // the user asked to be connected: reconnect after a drop
    this.backoffMs = RECONNECT_MIN_MS;
    this.everOpened = false;
    this.reconnectTimer = null;
  }

  get connected() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect(baseUrl, token) {
    this.close();
    const url = new URL(baseUrl);
    if (token) url.searchParams.set("token", token); // browsers cannot set an Authorization header
    this.url = url.toString();
    this.wanted = true;
    this.backoffMs = RECONNECT_MIN_MS;
    this.everOpened = false;
    this.open();
  }

  open() {
    this.setState("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.setState("error", `cannot open ${this.url}: ${err.message}`);
      this.wanted = false;
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.everOpened = true;
      this.backoffMs = RECONNECT_MIN_MS;
      this.setState("connected");
    };
    ws.onmessage = (event) => this.onMessage(event.data);
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.failAll("unavailable", "connection closed");
      let reason = event.reason ? `: ${event.reason}` : "";
      if (!this.everOpened) {
        reason = " before the handshake finished (server down, wrong URL, or a missing/wrong token: the server answers 401)";
      } else if (event.code === 1009) {
        reason = ": message too big for the server (1009)";
      }
      this.setState("disconnected", `connection closed (code ${event.code})${reason}`);
      if (this.wanted) this.scheduleReconnect();
    };
    ws.onerror = () => {}; // onclose follows with the code; the error event carries no detail
  }

  scheduleReconnect() {
    clearTimeout(this.reconnectTimer);
    const delay = this.backoffMs;
    this.backoffMs = Math.min(RECONNECT_MAX_MS, this.backoffMs * 2);
    this.reconnectTimer = setTimeout(() => {
      if (this.wanted) this.open();
    }, delay);
  }

  close() {
    this.wanted = false;
    clearTimeout(this.reconnectTimer);
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, "client closed");
    }
    this.failAll("unavailable", "connection closed by the page");
    this.setState("disconnected");
  }

  setState(state, message = null) {
    this.dispatchEvent(new CustomEvent("state", { detail: { state, message } }));
  }

  // Sends {type, request_id, data, ...extra}; resolves with the reply, rejects with RequestError.
  request(type, data, extra = {}) {
    if (!this.connected) return Promise.reject(new RequestError("unavailable", "not connected"));
    const requestId = `p${Date.now().toString(36)}-${++this.counter}`;
    const message = { type, request_id: requestId, ...extra };
    if (data !== undefined) message.data = data;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new RequestError("timeout", `no reply to ${type} within ${this.requestTimeoutMs / 1000} s`));
      }, this.requestTimeoutMs);
      this.pending.set(requestId, { resolve, reject, timer });
      try {
        this.ws.send(JSON.stringify(message));
      } catch (err) {
        clearTimeout(timer);
        this.pending.delete(requestId);
        reject(new RequestError("unavailable", `send failed: ${err.message}`));
      }
    });
  }

  onMessage(text) {
    let reply;
    try {
      reply = JSON.parse(text);
    } catch {
      this.dispatchEvent(new CustomEvent("notice", { detail: { kind: "error", text: "server sent a frame that is not JSON" } }));
      return;
    }
    const entry = reply && this.pending.get(reply.request_id);
    if (!entry) {
      // An error the server could not tie to a request (e.g. it could not read our frame).
      const text = reply && reply.type === "error" ? `${reply.code}: ${reply.error}` : `unexpected ${reply && reply.type} reply`;
      this.dispatchEvent(new CustomEvent("notice", { detail: { kind: "error", text } }));
      return;
    }
    this.pending.delete(reply.request_id);
    clearTimeout(entry.timer);
    if (reply.type === "error") entry.reject(new RequestError(reply.code || "internal", reply.error || "error"));
    else entry.resolve(reply);
  }

  failAll(code, message) {
    for (const [, entry] of this.pending) {
      clearTimeout(entry.timer);
      entry.reject(new RequestError(code, message));
    }
    this.pending.clear();
  }
}
