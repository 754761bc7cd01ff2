// npm run embeddings:list — the textual-inversion embeddings under embeddings/ (EMBEDDINGS_DIR), and the files it cannot use.
import { config as loadDotenv } from 'dotenv';
import { defaultEmbeddingsDir, scanEmbeddings } from '../models/embeddings.ts';
import { displayPath } from '../models/pull.ts';
import { formatTable } from './table.ts';

async function main(): Promise<number> {
  loadDotenv({ quiet: true });
  if (process.argv.length > 2) {
    process.stderr.write('Usage: npm run embeddings:list   (lists the embeddings under embeddings/, or EMBEDDINGS_DIR)\n');
    return 2;
  }
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

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    process.stderr.write(`embeddings:list: ${error.message}\n`);
    process.exit(1);
  },
);
