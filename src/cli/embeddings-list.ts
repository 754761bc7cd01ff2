// npm run embeddings:list — the textual-inversion embeddings under embeddings/ (EMBEDDINGS_DIR), and the files it cannot use.
import { config as loadDotenv } from 'dotenv';
import { defaultEmbeddingsDir, scanEmbeddings } from '../models/embeddings.ts';
import { displayPath } from '../models/pull.ts';
import { runCli, UsageError, type CommandLine, type CommandSpec, type Flag } from './command-line.ts';
import { formatTable } from './table.ts';

const SPEC = {
  name: 'embeddings:list',
  command: 'npm run embeddings:list',
  usage: '',
  description: 'Lists the textual-inversion embeddings under embeddings/ (EMBEDDINGS_DIR) by family, and the files it cannot use.',
  flags: {},
} satisfies CommandSpec<Record<string, Flag>>;

async function main({ positionals }: CommandLine<typeof SPEC.flags>): Promise<number> {
  loadDotenv({ quiet: true });
  if (positionals.length > 0) throw new UsageError(`embeddings:list takes no arguments (got "${positionals[0]}")`);
  const dir = defaultEmbeddingsDir();
  const { embeddings, skipped } = await scanEmbeddings(dir);
  if (embeddings.length === 0) {
    process.stdout.write(`No embeddings in ${displayPath(dir)}/. Put textual-inversion .safetensors files there; a prompt uses one by its file name.\n`);
  } else {
    const header = ['name', 'family', 'vectors', 'file'];
    const rows = embeddings.map((embedding) => [embedding.name, embedding.family, String(embedding.vectorCount), embedding.file]);
    process.stdout.write(formatTable(header, rows));
  }
  for (const { file, reason } of skipped) process.stdout.write(`skipped ${file}: ${reason}\n`);
  return 0;
}

runCli(SPEC, main);
