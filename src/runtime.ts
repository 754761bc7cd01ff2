import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// Where the code runs from: the TypeScript source (development, tests: through tsx or vitest) or the build in
// dist/ (`npm run build`, what `npm ci --omit=dev` deployments run with plain node). The two layouts differ by
// one folder (src/x.ts against dist/src/x.js), so paths that leave the code's own folders are found here.

/** True when this module is the .ts source, false when it is the compiled JavaScript in dist/. */
export const RUNNING_FROM_SOURCE = import.meta.url.endsWith('.ts');

/** The project's root folder (package.json, models/, .env). */
export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), RUNNING_FROM_SOURCE ? '..' : '../..');

/** The URL of a module beside `base` (an import.meta.url), as it exists in this layout: `name.ts` or `name.js`. */
export function siblingModule(base: string, name: string): URL {
  return new URL(`./${name}${RUNNING_FROM_SOURCE ? '.ts' : '.js'}`, base);
}
