// Streams read with fetch() and a ReadableStream reader (EventSource cannot send the
// Authorization header). Both reconnect with backoff (0.5 s doubling to 10 s, reset by
// a stream that delivered something); the event stream resumes with Last-Event-ID.
import { raw, get, AuthError } from "./api.js";

const FIRST_DELAY = 500;
const MAX_DELAY = 10000;

// Calls `open(signal, connected)` (which reads until the stream ends) again and again
// until close(). `open` calls connected() once the Host answered, and returns true when
// it got data, so the backoff starts over.
function reconnecting(open, onStatus) {
  const controller = new AbortController();
  let delay = FIRST_DELAY;
  let timer = null;
  let closed = false;
  async function run() {
    while (!closed) {
      let got = false;
      try {
        got = await open(controller.signal, () => onStatus("open"));
        if (closed) return;
        onStatus("reconnecting", "the stream ended");
      } catch (err) {
        if (closed || err.name === "AbortError") return;
        if (err instanceof AuthError) {
          onStatus("closed", "a token is needed");
          return;
        }
        if (err.status === 404) {
          onStatus("closed", err.message); // the program is gone: nothing to wait for
          return;
        }
        onStatus("reconnecting", err.message);
      }
      if (got) delay = FIRST_DELAY;
      await new Promise((resolve) => { timer = setTimeout(resolve, delay); });
      delay = Math.min(delay * 2, MAX_DELAY);
    }
  }
  run();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      controller.abort();
    },
  };
}

// Reads the body as text chunks, calling onText(chunk) for each.
async function readText(res, onText) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    onText(decoder.decode(value, { stream: true }));
  }
}

// Follows an SSE route (/events, /programs/{id}/events). onEvent(event) gets each
// event parsed; `since` is where to start; the id of the last event seen is sent as
// Last-Event-ID when it reconnects, so nothing is missed or seen twice.
export function followEvents(path, { since = 0, onEvent, onStatus = () => {} }) {
  let lastId = since;
  return reconnecting(async (signal, connected) => {
    const extra = lastId ? { "Last-Event-ID": String(lastId) } : {};
    const res = await raw(path, { signal, headers: extra });
    connected();
    let got = false;
    let buffer = "";
    let data = [];
    let id = null;
    await readText(res, (chunk) => {
      buffer += chunk;
      let end;
      while ((end = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, end).replace(/\r$/, "");
        buffer = buffer.slice(end + 1);
        if (line === "") {
          if (data.length) {
            if (id !== null) lastId = id;
            got = true;
            dispatch(data.join("\n"), onEvent);
          }
          data = [];
          id = null;
        } else if (line.startsWith("data:")) {
          data.push(line.slice(5).replace(/^ /, ""));
        } else if (line.startsWith("id:")) {
          id = line.slice(3).trim();
        }
      }
    });
    return got;
  }, onStatus);
}

function dispatch(data, onEvent) {
  let event;
  try {
    event = JSON.parse(data);
  } catch {
    return; // not an event of the Host's; skip it rather than stop the stream
  }
  onEvent(event);
}

// Follows a text route line by line (a log with follow=true). A reconnect asks for
// `tail=0` so lines already shown are not shown twice.
export function followLines(pathWithTail, pathAfter, { onLine, onStatus = () => {} }) {
  let first = true;
  return reconnecting(async (signal, connected) => {
    const res = await raw(first ? pathWithTail : pathAfter, { signal });
    connected();
    first = false;
    let got = false;
    let buffer = "";
    await readText(res, (chunk) => {
      buffer += chunk;
      const lines = buffer.split("\n");
      buffer = lines.pop();
      for (const line of lines) {
        got = true;
        onLine(line);
      }
    });
    if (buffer) onLine(buffer);
    return got;
  }, onStatus);
}

// The id of the newest event the Host has given: where a page that has just read the
// records starts to follow. Asked as the events of a program that cannot exist ("-" is
// no program id), so the answer is empty and `last_id` is the newest id.
export async function eventCursor() {
  return (await get("/events?follow=false&program=-")).last_id;
}
