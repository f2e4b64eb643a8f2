import { CairnError } from '../../core/errors';
import { BoxClient, ClientResponse, RequestOptions } from '../box-client';

/**
 * A BoxClient that can be stopped from outside (SIGTERM): abort() fails every request in flight
 * and every later one with CAIRN_INTERRUPTED, which makes a running backupFiles() unwind through
 * its own cleanup. Chunks that landed stay on the box, so the next run does not resend them.
 */
export class AbortableBoxClient extends BoxClient {
  private aborted = false;

  abort(): void {
    this.aborted = true;
    this.close();
  }

  override async request(method: string, path: string, body?: Buffer | Buffer[], opts: RequestOptions = {}): Promise<ClientResponse> {
    if (this.aborted) throw interrupted();
    try {
      return await super.request(method, path, body, opts);
    } catch (err) {
      throw this.aborted ? interrupted() : err;
    }
  }
}

function interrupted(): CairnError {
  return new CairnError('CAIRN_INTERRUPTED', 'the backup was stopped (the agent is shutting down); it resumes on the next run');
}
