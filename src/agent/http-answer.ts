import { CairnError } from '../core/errors';

/**
 * Reads one HTTP/1.1 answer from the bytes of a connection, for the restore's chunk channel
 * (see fetch-channel.ts). It hands the body on in pieces that are views of what it was given
 * (no copy), and keeps nothing of a piece once `push` returns, so the caller may read every
 * piece into the same buffer.
 *
 * Strict on purpose: the only server it talks to is a Cairn box. Anything outside what a box
 * sends (and what HTTP/1.1 allows of it) is refused with CAIRN_BOX_ERROR:
 *
 * - a head of more than 16 KiB, a status line that is not `HTTP/1.x NNN`, a header line
 *   without a name and a colon, or with bytes outside visible ASCII, tab and space;
 * - both Content-Length and Transfer-Encoding, a Transfer-Encoding other than `chunked`,
 *   Content-Length that is not a plain decimal or differs between two headers, neither
 *   (the answer would end only with the connection), or a 1xx status (never asked for);
 * - in a chunked body: a size line that is not 1-15 hex digits (an extension after `;` is
 *   allowed), a chunk not followed by CRLF, trailers of more than 16 KiB.
 */
export interface AnswerHead {
  status: number;
  /** the answer allows the connection to carry another request */
  keepAlive: boolean;
}

export interface AnswerHandlers {
  head(h: AnswerHead): void;
  body(piece: Buffer): void;
  end(): void;
}

const MAX_HEAD = 16 * 1024;
const MAX_SIZE_LINE = 1024;
const CRLF2 = Buffer.from('\r\n\r\n', 'latin1');
const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: [\t -~\x80-\xff]*)?$/;
const HEADER_LINE = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[\t ]*([\t -~\x80-\xff]*?)[\t ]*$/;
const HEX_SIZE = /^([0-9A-Fa-f]{1,15})(?:[\t ]*;[\t -~]*)?$/;

type State = 'head' | 'length' | 'size' | 'data' | 'data-crlf' | 'trailers' | 'done';

function bad(why: string): CairnError {
  return new CairnError('CAIRN_BOX_ERROR', `the box's answer is malformed: ${why}`);
}

export class AnswerParser {
  private state: State = 'head';
  /** head, size line or trailers being gathered (they may arrive split across pieces) */
  private line = Buffer.alloc(MAX_HEAD);
  private lineFill = 0;
  /** body bytes left: of the whole body (Content-Length) or of the current chunk */
  private left = 0;
  private trailerBytes = 0;

  constructor(private readonly on: AnswerHandlers) {}

  get done(): boolean {
    return this.state === 'done';
  }

  /** true before the first byte of the answer */
  get untouched(): boolean {
    return this.state === 'head' && this.lineFill === 0;
  }

  /**
   * Takes the next bytes of the connection. Returns how many belong to this answer: fewer than
   * given only when the answer ended inside the piece (the rest is not part of it).
   */
  push(piece: Buffer): number {
    let i = 0;
    while (i < piece.length && this.state !== 'done') {
      switch (this.state) {
        case 'head':
          i = this.gatherHead(piece, i);
          break;
        case 'length':
          i = this.bodyBytes(piece, i);
          if (this.left === 0) this.finish();
          break;
        case 'size':
          i = this.gatherLine(piece, i, MAX_SIZE_LINE, 'a chunk size line is too long', (l) => this.sizeLine(l));
          break;
        case 'data':
          i = this.bodyBytes(piece, i);
          if (this.left === 0) this.state = 'data-crlf';
          break;
        case 'data-crlf':
          i = this.gatherLine(piece, i, 2, 'a chunk is not followed by CRLF', (l) => {
            if (l.length !== 0) throw bad('a chunk is longer than its size line says');
            this.state = 'size';
          });
          break;
        case 'trailers':
          i = this.gatherLine(piece, i, MAX_HEAD, 'the trailers are too long', (l) => {
            this.trailerBytes += l.length + 2;
            if (this.trailerBytes > MAX_HEAD) throw bad('the trailers are too long');
            if (l.length === 0) this.finish();
          });
          break;
      }
    }
    return i;
  }

  /** Hands on up to `left` body bytes from `i` (a view, no copy); returns where it stopped. */
  private bodyBytes(piece: Buffer, i: number): number {
    const n = Math.min(this.left, piece.length - i);
    this.left -= n;
    this.on.body(piece.subarray(i, i + n));
    return i + n;
  }

  private finish(): void {
    this.state = 'done';
    this.on.end();
  }

  private gatherHead(piece: Buffer, i: number): number {
    const room = MAX_HEAD - this.lineFill;
    const n = Math.min(room, piece.length - i);
    piece.copy(this.line, this.lineFill, i, i + n);
    const from = Math.max(0, this.lineFill - 3);
    this.lineFill += n;
    const at = this.line.subarray(0, this.lineFill).indexOf(CRLF2, from);
    if (at < 0) {
      if (this.lineFill >= MAX_HEAD) throw bad(`its head is longer than ${MAX_HEAD} bytes`);
      return i + n;
    }
    const used = at + 4 - (this.lineFill - n); // bytes of this piece that belong to the head
    const head = this.line.toString('latin1', 0, at);
    this.lineFill = 0;
    this.parseHead(head);
    return i + used;
  }

  private parseHead(head: string): void {
    const lines = head.split('\r\n');
    const m = STATUS_LINE.exec(lines[0]);
    if (!m) throw bad(`the status line is not HTTP/1.x: "${lines[0].slice(0, 60)}"`);
    const status = Number(m[2]);
    if (status < 200) throw bad(`status ${status} was not asked for`);
    let keepAlive = m[1] === '1';
    let length: number | undefined;
    let chunked = false;
    let te = false;
    for (const l of lines.slice(1)) {
      const h = HEADER_LINE.exec(l);
      if (!h) throw bad(`a header line is not "name: value": "${l.slice(0, 60)}"`);
      const name = h[1].toLowerCase();
      const value = h[2];
      if (name === 'content-length') {
        if (!/^\d{1,15}$/.test(value)) throw bad(`Content-Length "${value.slice(0, 20)}" is not a number`);
        const n = Number(value);
        if (length !== undefined && length !== n) throw bad('two Content-Length headers disagree');
        length = n;
      } else if (name === 'transfer-encoding') {
        if (te || value.toLowerCase() !== 'chunked') throw bad(`Transfer-Encoding "${value.slice(0, 40)}" is not plain chunked`);
        te = true;
        chunked = true;
      } else if (name === 'connection') {
        const tokens = value.toLowerCase().split(',').map((t) => t.trim());
        if (tokens.includes('close')) keepAlive = false;
        else if (tokens.includes('keep-alive')) keepAlive = true;
      }
    }
    if (chunked && length !== undefined) throw bad('it has both Content-Length and Transfer-Encoding');
    const noBody = status === 204 || status === 304;
    if (!noBody && !chunked && length === undefined) throw bad('it declares no length');
    this.on.head({ status, keepAlive });
    if (noBody || length === 0) this.finish();
    else if (chunked) this.state = 'size';
    else {
      this.left = length!;
      this.state = 'length';
    }
  }

  /** Gathers one CRLF-ended line of at most `max` bytes (CRLF not counted) and hands it on without its CRLF. */
  private gatherLine(piece: Buffer, i: number, max: number, tooLong: string, done: (line: string) => void): number {
    let j = i;
    while (j < piece.length) {
      const b = piece[j++];
      if (this.lineFill >= max + 2) throw bad(tooLong);
      this.line[this.lineFill++] = b;
      if (b === 0x0a) {
        if (this.lineFill < 2 || this.line[this.lineFill - 2] !== 0x0d) throw bad('a line ends in a bare LF');
        const l = this.line.toString('latin1', 0, this.lineFill - 2);
        this.lineFill = 0;
        done(l);
        return j;
      }
    }
    return j;
  }

  private sizeLine(l: string): void {
    const m = HEX_SIZE.exec(l);
    if (!m) throw bad(`the chunk size line "${l.slice(0, 40)}" is not hex`);
    const n = parseInt(m[1], 16);
    if (n === 0) {
      this.state = 'trailers';
      this.trailerBytes = 0;
    } else {
      this.left = n;
      this.state = 'data';
    }
  }
}
