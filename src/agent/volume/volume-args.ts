/** Whether `cairn backup` was asked for a volume (--volume DEVICE|IMAGE) rather than files. */
export function isVolumeBackup(args: string[]): boolean {
  return args.some((a) => a === '--volume' || a.startsWith('--volume='));
}
