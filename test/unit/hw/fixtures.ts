import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Fixtures stay in test/fixtures/hw (not copied to dist): resolve from the repo root. */
export const FIXTURES = path.resolve(__dirname, '../../../../test/fixtures/hw');

export function fixture(name: string): string {
  return fs.readFileSync(path.join(FIXTURES, name), 'utf8');
}

const created: string[] = [];

export function tmpDir(prefix = 'cairn-hw-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  created.push(dir);
  return dir;
}

// Root-level hook (this module is loaded by the hw test files): remove every temp dir made.
after(() => {
  for (const d of created.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

/** A fake host root: files under proc/, sys/, dev/ as the test needs them. */
export function fakeRoot(files: Record<string, string> = {}): string {
  const root = tmpDir('cairn-hw-root-');
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(root, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content);
  }
  return root;
}
