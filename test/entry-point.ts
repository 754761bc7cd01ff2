import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/**
 * The file node runs for one of the project's entry points, named by its source path (`src/main.ts`): its build in
 * dist/, which test/global-setup.ts keeps current, so a test process starts as users' processes do, without tsx.
 */
export function entryPoint(source: string): string {
  return join(root, 'dist', source.replace(/\.ts$/, '.js'));
}
