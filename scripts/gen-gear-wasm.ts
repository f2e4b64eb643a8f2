/**
 * Regenerates src/core/gear-wasm.ts from src/core/gear.wat with wabt (a dev dependency):
 *   npm run build && node dist/scripts/gen-gear-wasm.js
 * test/unit/core/chunker.test.ts checks that the committed bytes match the source.
 */
import fs from 'node:fs';
import path from 'node:path';

export const WAT_PATH = path.join(__dirname, '..', '..', 'src', 'core', 'gear.wat');
const OUT_PATH = path.join(__dirname, '..', '..', 'src', 'core', 'gear-wasm.ts');

export async function assembleGearWat(): Promise<Buffer> {
  // wabt ships no types; its factory resolves to the assembler.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const factory = require('wabt') as () => Promise<{ parseWat(name: string, text: string): { toBinary(o: object): { buffer: Uint8Array }; destroy(): void } }>;
  const wabt = await factory();
  const mod = wabt.parseWat('gear.wat', fs.readFileSync(WAT_PATH, 'utf8'));
  try {
    return Buffer.from(mod.toBinary({}).buffer);
  } finally {
    mod.destroy();
  }
}

async function main(): Promise<void> {
  const bytes = await assembleGearWat();
  const b64 = bytes.toString('base64');
  const lines = b64.match(/.{1,96}/g) ?? [];
  fs.writeFileSync(OUT_PATH, `// Generated from gear.wat by scripts/gen-gear-wasm.ts. Do not edit.\nexport const GEAR_WASM_BASE64 =\n${lines.map((l) => `  '${l}'`).join(' +\n')};\n`);
  process.stdout.write(`wrote ${OUT_PATH} (${bytes.length} bytes of WebAssembly)\n`);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
