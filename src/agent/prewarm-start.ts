import { prewarmFor } from './prewarm';

// Imported first by main.ts: the command's worker threads load their modules while the main
// thread loads its own (see prewarm.ts).
prewarmFor(process.argv);
