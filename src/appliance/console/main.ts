#!/usr/bin/env node
// Placeholder until the console issue lands: the box's TUI (activation wizard, dashboard).
process.stderr.write('cairn-console is not built yet. Use `cairnd init`, `cairnd token create` and `cairnd status` meanwhile.\n');
process.exitCode = 1;
