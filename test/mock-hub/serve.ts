// Serves the tiny model as a hub repository until interrupted, to try model:pull by hand:
//   npx tsx test/mock-hub/serve.ts            prints HF_ENDPOINT and the repository id
//   HF_ENDPOINT=<printed url> npm run model:pull -- acme/tiny-sd-onnx
import { startMockHub } from './server.ts';
import { tinyRepoFiles } from './tiny-repo.ts';

const repo = 'acme/tiny-sd-onnx';
const hub = await startMockHub({ [repo]: { files: await tinyRepoFiles() } });
process.stdout.write(`HF_ENDPOINT=${hub.url} npm run model:pull -- ${repo}\n`);
process.once('SIGINT', () => void hub.close());
