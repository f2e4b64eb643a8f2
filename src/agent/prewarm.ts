import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';

/**
 * Worker threads started before the rest of the command line tool has loaded.
 *
 * A worker thread takes about 150 ms to load its modules (the native crypto and compression
 * bindings among them), and a pool used to start its workers only once the command had loaded
 * its own modules, read its state and reached the box: the first chunk of a 1 GB backup or
 * restore came about 0.45 s after start, with the main thread idle in between (CPU profiles).
 * `cairn backup`, `restore` and `verify` now start their workers first (main.ts imports this
 * module before anything else), and the pools take them as they are created.
 *
 * A started worker that no pool takes (a command that fails early, a volume restore) is
 * unreferenced: it does not keep the process alive, and it goes when the process does.
 */
export type WorkerScript = 'chunk-worker.js' | 'restore-worker.js';

/** chunk workers a backup uses by default: one per core, up to 8 */
export function defaultChunkThreads(): number {
  return Math.max(1, Math.min(os.availableParallelism(), 8));
}

/** restore workers: one per core, at least two (file creation is mostly kernel time and can wait on directory locks) */
export function defaultRestoreThreads(): number {
  return Math.max(2, Math.min(os.availableParallelism(), 4));
}

const started: Record<WorkerScript, Worker[]> = { 'chunk-worker.js': [], 'restore-worker.js': [] };

/** Starts `n` workers running `script` now, to be taken by takeWorker (returned for tests). */
export function prewarm(script: WorkerScript, n: number): Worker[] {
  const out: Worker[] = [];
  for (let i = 0; i < n; i++) {
    const w = new Worker(path.join(__dirname, script));
    w.unref();
    // An error before a pool takes the worker is the pool's to see (it listens once it has
    // taken it); until then, nobody must crash on it.
    w.on('error', () => undefined);
    started[script].push(w);
    out.push(w);
  }
  return out;
}

/** A worker running `script`: one started early if there is one still alive, else a new one. */
export function takeWorker(script: WorkerScript): Worker {
  const w = started[script].shift();
  if (!w || w.threadId < 0) return new Worker(path.join(__dirname, script));
  w.ref();
  return w;
}

/** Which workers the command in `argv` (process.argv) will use, started now. */
export function prewarmFor(argv: string[]): void {
  const cmd = argv[2];
  if (cmd === 'backup') prewarm('chunk-worker.js', defaultChunkThreads());
  else if (cmd === 'restore' || cmd === 'verify') prewarm('restore-worker.js', defaultRestoreThreads());
}
