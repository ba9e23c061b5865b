// Server-sent events read with fetch (an EventSource cannot send the Bearer header): a parser
// of the text/event-stream format over a ReadableStream, and a stream that reconnects after a
// drop, resuming with Last-Event-ID.

import { API, authorized, errorOf } from "./api.js";

/**
 * Feeds text chunks, calls `dispatch({type, data, id})` for each complete event, as the HTML
 * standard's event-stream interpretation says: lines end with CRLF, LF or CR; `:` starts a
 * comment; `data` lines are joined with "\n"; an event without data is not dispatched; `id`
 * (without NUL) is remembered for the next connection; `retry` sets the reconnection delay.
 */
export class EventStreamParser {
  constructor(dispatch) {
    this.dispatch = dispatch;
    this.buffer = "";
    this.lastEventId = "";
    this.retry = null;
    this.reset();
  }

  reset() {
    this.type = "";
    this.data = [];
  }

  push(text) {
    this.buffer += text;
    const newline = /\r\n|\r|\n/g;
    let start = 0;
    for (let match = newline.exec(this.buffer); match; match = newline.exec(this.buffer)) {
      // A CR at the very end may be the first half of a CRLF: wait for the next chunk.
      if (match[0] === "\r" && match.index + 1 === this.buffer.length) break;
      this.line(this.buffer.slice(start, match.index));
      start = newline.lastIndex;
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === "") return this.end();
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.lastEventId = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }

  end() {
    if (this.data.length) {
      this.dispatch({
        type: this.type || "message",
        data: this.data.join("\n"),
        id: this.lastEventId,
      });
    }
    this.reset();
  }
}

const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 15_000;

/**
 * Reads `path` (under /api/v1) as an event stream until `close()`, calling `onEvent(type, data)`
 * with the parsed JSON of each event. A stream that drops or ends is opened again after a
 * growing delay with the last event's id in `Last-Event-ID`, unless `onEvent` returned
 * `"done"` (the job stream's terminal event), or `onEnd()` — asked when a stream ends without
 * that — answers `"done"`. An answer that is not 2xx calls `onError(error)`; a 4xx other than
 * 429 stops the stream (a retry would get the same answer).
 */
export class LiveStream {
  constructor(path, { onEvent, onError = () => {}, onOpen = () => {}, onEnd = () => {} }) {
    this.path = path;
    this.onEvent = onEvent;
    this.onEnd = onEnd;
    this.onError = onError;
    this.onOpen = onOpen;
    this.controller = null;
    this.closed = false;
    this.lastEventId = "";
    this.delay = FIRST_RETRY_MS;
    this.timer = null;
    this.run();
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    this.controller?.abort();
  }

  async run() {
    let done = false;
    const parser = new EventStreamParser((event) => {
      this.delay = FIRST_RETRY_MS;
      if (this.deliver(event) === "done") done = true;
    });
    parser.lastEventId = this.lastEventId;
    this.controller = new AbortController();
    const headers = { Accept: "text/event-stream" };
    if (this.lastEventId) headers["Last-Event-ID"] = this.lastEventId;
    try {
      const answer = await fetch(API + this.path, {
        headers: authorized(headers),
        signal: this.controller.signal,
        cache: "no-store",
      });
      if (!answer.ok) {
        const error = await errorOf(answer);
        this.onError(error);
        if (answer.status >= 400 && answer.status < 500 && answer.status !== 429) return;
      } else {
        this.onOpen();
        await this.read(answer.body, parser, () => done);
        if (!done && !this.closed) done = (await this.onEnd()) === "done";
      }
    } catch (error) {
      if (this.closed) return;
      this.onError(error);
    }
    this.lastEventId = parser.lastEventId;
    if (parser.retry !== null) this.delay = parser.retry;
    if (!done && !this.closed) this.reconnect();
  }

  async read(body, parser, finished) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      while (!finished() && !this.closed) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.push(value);
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  deliver(event) {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return undefined; // not ours to understand; the next event will do
    }
    return this.onEvent(event.type, data);
  }

  reconnect() {
    const wait = this.delay;
    this.delay = Math.min(this.delay * 2, MAX_RETRY_MS);
    this.timer = setTimeout(() => this.run(), wait);
  }
}
