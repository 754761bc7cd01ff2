import { config as loadDotenv } from 'dotenv';
import { readHealth } from '../health/health-file.ts';
import { acceptNoArguments } from './command-line.ts';

// `npm run healthcheck`: the container health check. Reads the HEALTH_FILE that `npm start`, `npm run bot` or
// `npm run worker` keeps up to date, prints what it says, and exits 0 when the process is healthy, else 1.

acceptNoArguments({
  name: 'healthcheck',
  command: 'npm run healthcheck',
  usage: '',
  description:
    'Reads HEALTH_FILE, which npm start, npm run bot and npm run worker keep up to date, prints what it says, and exits\n' +
    '0 when the process is healthy, else 1 (for container health checks).',
  flags: {},
});

loadDotenv({ quiet: true });
const path = process.env.HEALTH_FILE;
if (!path) {
  console.error('HEALTH_FILE is not set: the process reports its health only when HEALTH_FILE names a file.');
  process.exit(1);
}
const status = await readHealth(path);
console.log(`${status.healthy ? 'healthy' : 'unhealthy'}: ${status.detail}`);
process.exit(status.healthy ? 0 : 1);
