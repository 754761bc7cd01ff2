import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The tests start the bot, the workers and the CLIs as processes the way users run them: the build in dist/ with plain
// node (test/entry-point.ts). It is built once here, before any test file runs, unless it is current already.

const root = fileURLToPath(new URL('..', import.meta.url));

function newestChange(dir: string): number {
  let newest = 0;
  for (const item of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, item.name);
    newest = Math.max(newest, item.isDirectory() ? newestChange(path) : statSync(path).mtimeMs);
  }
  return newest;
}

export default function buildOnce(): void {
  const buildInfo = join(root, 'dist', '.tsbuildinfo');
  const sources = Math.max(newestChange(join(root, 'src')), newestChange(join(root, 'commands')), statSync(join(root, 'tsconfig.build.json')).mtimeMs);
  if (existsSync(buildInfo) && statSync(buildInfo).mtimeMs >= sources) return;
  execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json')], { cwd: root, stdio: 'inherit' });
}
