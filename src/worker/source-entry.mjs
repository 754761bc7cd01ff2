// The pipeline thread's entry when the bot runs from its TypeScript source (development, tests): worker threads do
// not inherit tsx's module loader, so it is registered before the TypeScript worker loads. The build in dist/
// starts dist/src/worker/pipeline-worker.js directly, with no loader.
import { register } from 'tsx/esm/api';

register();
await import('./pipeline-worker.ts');
