// Runs one of the project's entry points, named by its source path (`node scripts/run.mjs src/main.ts args...`):
// the build in dist/ with plain node when it is there and no older than the source, otherwise the TypeScript
// source through tsx (a development install; tsx is a devDependency). So a fresh clone works without a build,
// `npm run build` + `npm ci --omit=dev` runs with node alone, and an edited source is never shadowed by an old build.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const entry = process.argv[2];
if (!entry || !/^(src|commands)\/.+\.ts$/.test(entry)) {
  console.error('usage: node scripts/run.mjs src/<entry>.ts [arguments]');
  process.exit(2);
}
const source = join(root, entry);
const built = join(root, 'dist', entry.replace(/\.ts$/, '.js'));

function newestSourceChange(dir) {
  if (!existsSync(dir)) return 0;
  let newest = 0;
  for (const item of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, item.name);
    newest = Math.max(newest, item.isDirectory() ? newestSourceChange(path) : statSync(path).mtimeMs);
  }
  return newest;
}

function tsxInstalled() {
  try {
    import.meta.resolve('tsx/esm/api');
    return true;
  } catch {
    return false;
  }
}

// tsc rewrites only the files that changed, and its build info on every build: that is when the build was made.
const buildInfo = join(root, 'dist', '.tsbuildinfo');
const buildIsCurrent = () =>
  statSync(existsSync(buildInfo) ? buildInfo : built).mtimeMs >= Math.max(...['src', 'commands'].map((dir) => newestSourceChange(join(root, dir))));
const canRunSource = tsxInstalled();
const runBuild = existsSync(built) && (!canRunSource || buildIsCurrent());
if (!runBuild && !canRunSource) {
  console.error(`${relative(root, built)} is missing: run npm run build (with the devDependencies installed), or npm ci to run from source`);
  process.exit(1);
}
if (runBuild && existsSync(source) && !buildIsCurrent()) console.error(`note: ${relative(root, built)} is older than the source; run npm run build`);

// The entry point sees its own path and then its arguments, as if it had been started directly.
process.argv.splice(1, 2, runBuild ? built : source);
if (!runBuild) (await import('tsx/esm/api')).register();
await import(pathToFileURL(runBuild ? built : source).href);
