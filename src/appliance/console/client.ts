import { CairnError, errorMessage } from '../../core/errors';
import { callAdminSocket } from '../admin/admin-socket';
import { DataDir } from '../data-dir';

/**
 * The console's only line to the box: admin operations over cairnd's local socket. The
 * console holds no keys and opens nothing in the data directory but the socket. A daemon
 * that is not there (restarting, switching from setup mode to serving) is an ordinary state,
 * not an error: every call says so and the console shows "reconnecting".
 */
export type CallResult<T> = { ok: true; value: T } | { ok: false; unreachable: true; message: string } | { ok: false; unreachable: false; code: string; message: string; missingOp: boolean };

export class DaemonClient {
  readonly socket: string;
  /** false after a call found no daemon, true after one answered */
  connected = false;
  lastChange = Date.now();

  constructor(readonly dataDir: string, private readonly timeoutMs = 60_000) {
    this.socket = new DataDir(dataDir).adminSocket;
  }

  private mark(up: boolean): void {
    if (up !== this.connected) this.lastChange = Date.now();
    this.connected = up;
  }

  /** `timeoutMs` for the long ones (restoring a box pulls its data back before answering). */
  async call<T>(op: string, args: Record<string, unknown> = {}, timeoutMs = this.timeoutMs): Promise<CallResult<T>> {
    try {
      const r = await callAdminSocket(this.socket, op, args, timeoutMs);
      if (!r) {
        this.mark(false);
        return { ok: false, unreachable: true, message: `cairnd is not answering on ${this.socket}` };
      }
      this.mark(true);
      return { ok: true, value: r.result as T };
    } catch (err) {
      const message = errorMessage(err);
      // A socket that closes mid-call is a daemon going away, like one that is not there.
      if (CairnError.is(err, 'CAIRN_ADMIN_PROTOCOL') && /^admin socket |did not answer|unreadable admin reply/.test(message)) {
        this.mark(false);
        return { ok: false, unreachable: true, message };
      }
      this.mark(true);
      const code = err instanceof CairnError ? err.code : 'CAIRN_UNEXPECTED';
      return { ok: false, unreachable: false, code, message, missingOp: code === 'CAIRN_ADMIN_PROTOCOL' && /unknown admin operation/.test(message) };
    }
  }
}

/** One line for a failed call, for the message bar. */
export function describeFailure(op: string, r: Exclude<CallResult<unknown>, { ok: true }>, what?: string): string {
  if (r.unreachable) return 'cairnd is not answering; reconnecting...';
  if (r.missingOp) return `${what ?? op}: this cairnd does not offer it yet (admin op "${op}" is missing); update cairnd`;
  return r.message;
}
