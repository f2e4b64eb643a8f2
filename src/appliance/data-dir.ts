import path from 'node:path';

/**
 * Layout of a box's data directory. Every path cairnd touches under --data comes from here.
 *
 *   config.json       box settings that are not secret (hardware profile)
 *   keys.json         master key, escrow key, box id (0600) — on the appliance this directory
 *                     lives on the state partition; the data array holds only chunks/refs
 *   tls/key.pem       TLS private key (0600); tls/cert.pem self-signed certificate
 *   catalog.db        SQLite catalog (WAL)
 *   chunks/ab/c/<id>  one encrypted chunk per file (blobs of 512 KiB and more)
 *   packs/<name>.pack small blobs of one upload batch together (store/blob-store.ts)
 *   refs/<snap>.ids   sorted chunk ids each snapshot references
 *   tmp/              partial writes; emptied at start-up
 *   run/admin.sock    local admin socket of a running `cairnd serve` (0600)
 *   run/serve.json    address and pid of the running daemon
 *   escrow.json       master key + config sealed with the escrow key (opens with the recovery key)
 *   secondary.json    primary: the linked secondary (address, pinned certificate, credential; 0600)
 *   peers/<id>/       secondary: one namespace per primary served (secondary/peer-spaces.ts)
 */
export class DataDir {
  constructor(readonly root: string) {}
  get keys(): string { return path.join(this.root, 'keys.json'); }
  get config(): string { return path.join(this.root, 'config.json'); }
  get tlsDir(): string { return path.join(this.root, 'tls'); }
  get tlsKey(): string { return path.join(this.root, 'tls', 'key.pem'); }
  get tlsCert(): string { return path.join(this.root, 'tls', 'cert.pem'); }
  get catalog(): string { return path.join(this.root, 'catalog.db'); }
  get chunks(): string { return path.join(this.root, 'chunks'); }
  get refs(): string { return path.join(this.root, 'refs'); }
  get tmp(): string { return path.join(this.root, 'tmp'); }
  get run(): string { return path.join(this.root, 'run'); }
  get adminSocket(): string { return path.join(this.root, 'run', 'admin.sock'); }
  get serveInfo(): string { return path.join(this.root, 'run', 'serve.json'); }
  /** master key + config sealed under the recovery key's escrow key (src/appliance/escrow.ts) */
  get escrow(): string { return path.join(this.root, 'escrow.json'); }
  get secondaryLink(): string { return path.join(this.root, 'secondary.json'); }
}
