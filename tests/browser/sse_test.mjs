// The console's server-sent-events parser (hub/console/sse.js) on the shapes GET /v1/stream
// may send, whatever the chunking: node's own test runner, no packages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SseParser } from '../../hub/console/sse.js';

const parse = (chunks) => {
  const out = [];
  const p = new SseParser((e) => out.push(e));
  for (const c of chunks) p.push(c);
  return out;
};
const item = (cursor) => JSON.stringify({ cursor, site: 's1', seq: cursor, entity: 'ORDER', fields: { order_id: `o-${cursor}` } });
const stream = `: hb\n\nid: 7\nevent: change\ndata: ${item(7)}\n\n: hb\n\nid: 8\nevent: change\ndata: ${item(8)}\n\n`;

test('events with id, type and data; heartbeats skipped', () => {
  const out = parse([stream]);
  assert.deepEqual(out.map((e) => [e.event, e.id, JSON.parse(e.data).cursor]), [['change', '7', 7], ['change', '8', 8]]);
});

test('any chunking gives the same events, one character at a time included', () => {
  const whole = parse([stream]);
  for (let cut = 1; cut < stream.length; cut++) assert.deepEqual(parse([stream.slice(0, cut), stream.slice(cut)]), whole, `cut at ${cut}`);
  assert.deepEqual(parse([...stream]), whole);
});

test('CR LF and CR line endings, also split between chunks', () => {
  const crlf = stream.replace(/\n/g, '\r\n');
  const whole = parse([stream]);
  assert.deepEqual(parse([crlf]), whole);
  assert.deepEqual(parse([...crlf]), whole);
  assert.deepEqual(parse([stream.replace(/\n/g, '\r')]), whole);
});

test('an event is dispatched only once its blank line has come', () => {
  const out = parse([`id: 9\nevent: change\ndata: ${item(9)}\n`]);
  assert.equal(out.length, 0);
});

test('multi-line data, no space after the colon, id kept for later events', () => {
  const out = parse(['id:3\ndata:a\ndata: b\n\nevent: change\ndata: c\n\n']);
  assert.deepEqual(out, [{ event: 'message', data: 'a\nb', id: '3' }, { event: 'change', data: 'c', id: '3' }]);
});

test('a block without data is no event, but its id counts', () => {
  const out = parse(['id: 5\n\ndata: x\n\n']);
  assert.deepEqual(out, [{ event: 'message', data: 'x', id: '5' }]);
});
