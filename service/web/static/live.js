// The live feed: /v1/alerts/stream read with fetch(), because EventSource cannot send the API
// key in a header and the key must never travel in a URL (it would end up in access logs).
// The stream is parsed here as the HTML standard describes; a dropped connection is reopened
// with Last-Event-ID, so the server replays every event missed meanwhile, once and in order.
import { apiKey } from "./common.js";

const STREAM_PATH = "/v1/alerts/stream";
const DEFAULT_RETRY_MS = 2000; // until the server's `retry:` field says otherwise

// Server-Sent Events parser: feed it text as it arrives (chunks may end mid-line); it calls
// onEvent({ type, data, id }) for each complete event.
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.reset();
    this.lastEventId = "";
    this.retryMs = null;
  }

  reset() {
    this.type = "";
    this.data = [];
  }

  push(text) {
    this.buffer += text;
    // A CR at the end may be the first half of a CRLF split across chunks: keep it back.
    const held = this.buffer.endsWith("\r") ? "\r" : "";
    const lines = this.buffer.slice(0, this.buffer.length - held.length).split(/\r\n|\r|\n/);
    this.buffer = lines.pop() + held; // an unfinished line waits for the next chunk
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return undefined; // a comment: the heartbeat
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
    return undefined;
  }

  dispatch() {
    if (this.data.length) {
      this.onEvent({ type: this.type || "message", data: this.data.join("\n"), id: this.lastEventId });
    }
    this.reset();
  }
}

// One subscription to the alert stream that reconnects until stopped. onState receives
// "connecting", "open", "waiting" (to reconnect), "refused" (the key was refused) or "stopped".
export class LiveFeed {
  constructor({ onEvent, onState = () => undefined, path = STREAM_PATH }) {
    this.path = path;
    this.onEvent = onEvent;
    this.onState = onState;
    this.lastEventId = null;
    this.retryMs = DEFAULT_RETRY_MS;
    this.controller = null;
    this.running = false;
    this.generation = 0;
  }

  start() {
    if (this.running) return;
    this.running = true;
    this.run(++this.generation);
  }

  stop() {
    this.running = false;
    this.generation++; // a loop still winding down must not reconnect
    if (this.controller) this.controller.abort();
    this.onState("stopped");
  }

  async run(generation) {
    const current = () => this.running && generation === this.generation;
    while (current()) {
      try {
        await this.connect();
      } catch (_) {
        // The network failed, the server went away, or stop() aborted: decided just below.
      }
      if (!current()) return;
      this.onState("waiting");
      await new Promise((resolve) => setTimeout(resolve, this.retryMs));
    }
  }

  async connect() {
    this.onState("connecting");
    this.controller = new AbortController();
    const headers = { Authorization: `Bearer ${apiKey()}`, Accept: "text/event-stream" };
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    const response = await fetch(this.path, {
      headers, signal: this.controller.signal, cache: "no-store",
    });
    if (response.status === 401 || response.status === 403) {
      this.running = false;
      this.onState("refused");
      return;
    }
    if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
    // From here the server holds our position: events after it reach us, or are replayed.
    this.onState("open");
    const parser = new SseParser((event) => {
      this.lastEventId = event.id || this.lastEventId;
      this.onEvent(event);
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.push(value);
      if (parser.retryMs !== null) this.retryMs = parser.retryMs;
    }
  }
}
