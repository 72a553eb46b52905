#!/usr/bin/env node
// The gpunet command. In a checkout it runs the TypeScript sources through tsx's loader (no build
// step, never a stale build); an installed package has no sources and runs its built dist/.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/main.ts', import.meta.url);
let main;
if (existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import(source.href));
} else {
  ({ main } = await import('../dist/cli/main.js'));
}
process.exitCode = await main(process.argv.slice(2));
