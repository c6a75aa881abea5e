// A text/event-stream parser (the WHATWG server-sent events format) for a stream read with
// fetch(): EventSource cannot send an Authorization header, so the console reads the stream
// itself. Feed it decoded text in any chunks; it calls onEvent({event, data, id}) for each
// complete event with data. Comments (": hb", the hub's heartbeat) and unknown fields are
// skipped. Pure: no DOM, no network (tested in node by tests/browser/sse_test.mjs).
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buf = '';
    this.lastId = null;  // the last id: seen, as EventSource keeps it
    this.afterCr = false;
  }

  push(text) {
    // CR LF, CR and LF all end a line. A CR that ends a chunk ends its line at once; an LF
    // that starts the next chunk is then the rest of that CR LF.
    if (this.afterCr && text.startsWith('\n')) text = text.slice(1);
    this.afterCr = text.endsWith('\r');
    this.buf += text.replace(/\r\n?/g, '\n');
    const cut = this.buf.lastIndexOf('\n\n');
    if (cut < 0) return;
    const blocks = this.buf.slice(0, cut);
    this.buf = this.buf.slice(cut + 2);
    for (const block of blocks.split('\n\n')) this.dispatch(block);
  }

  dispatch(block) {
    let event = 'message', data = null, id = null;
    for (const line of block.split('\n')) {
      if (!line || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'data') data = data === null ? value : `${data}\n${value}`;
      else if (field === 'event') event = value;
      else if (field === 'id' && !value.includes('\0')) id = value;
    }
    if (id !== null) this.lastId = id;
    if (data !== null) this.onEvent({ event, data, id: this.lastId });
  }
}
