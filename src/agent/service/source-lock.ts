import { CairnError } from '../../core/errors';
import { AgentHome } from '../state';
import { tryLock } from './lock';
import { ServiceStore } from './store';

/** `cairn backup` takes the same per-source lock as the service, so the two never overlap. */
export async function withSourceLock<T>(source: string, fn: () => Promise<T>): Promise<T> {
  const store = new ServiceStore(new AgentHome());
  const lock = tryLock(store.lockFile(source));
  if ('busy' in lock) throw new CairnError('CAIRN_SOURCE_BUSY', `a backup of "${source.slice(0, 80)}" is already running (pid ${lock.busy.pid}); wait for it to finish`);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
