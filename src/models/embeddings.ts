import { stat } from 'node:fs/promises';
import { basename, extname, join, resolve } from 'node:path';
import { PROJECT_ROOT } from '../runtime.ts';
import { filesBelow } from './installed.ts';
import { readFloatTensors } from './safetensors.ts';

/**
 * A textual-inversion embedding: vectors trained to stand for a word, used in a prompt by its file name as in
 * AUTOMATIC1111. One-encoder models (SD 1.x: 768 wide, SD 2.x: 1024) take `vectors`; SDXL embeddings hold one
 * set per text encoder (`clip_l` 768, `clip_g` 1280).
 */
export interface TextualInversion {
  name: string;
  /** Path relative to the embeddings folder. */
  file: string;
  vectorCount: number;
  /** Row after row, `vectorCount × width` values, for a model whose text encoder is this wide. */
  vectors: ReadonlyMap<number, Float32Array>;
  /** SDXL embeddings: the vectors for each of the model's two text encoders, in order (clip_l, clip_g). */
  perTextEncoder?: readonly Float32Array[];
  family: string;
}

/**
 * The embeddings a model can use, told by its U-Net's text context width (ModelInfo.textContextWidth, its text
 * encoders' widths together): one-encoder embeddings of that width, or SDXL ones whose two widths add up to it — as
 * the pipeline matches them to its text encoders. None when the width is unknown.
 */
export function embeddingsForContext(embeddings: readonly TextualInversion[], contextWidth: number | undefined): TextualInversion[] {
  return embeddings.filter(({ perTextEncoder, vectors, vectorCount }) =>
    perTextEncoder ? perTextEncoder.reduce((sum, part) => sum + part.length, 0) === (contextWidth ?? 0) * vectorCount : vectors.has(contextWidth ?? 0),
  );
}

export interface SkippedEmbedding {
  file: string;
  reason: string;
}

export interface EmbeddingScan {
  embeddings: TextualInversion[];
  skipped: SkippedEmbedding[];
}

/** At most one chunk: A1111 keeps an embedding's vectors within one 75-token chunk. */
const MAX_VECTORS = 75;
const SDXL_PARTS = ['clip_l', 'clip_g'] as const;

/** `<repo>/embeddings`, or EMBEDDINGS_DIR when set. */
export function defaultEmbeddingsDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.EMBEDDINGS_DIR ? resolve(env.EMBEDDINGS_DIR) : join(PROJECT_ROOT, 'embeddings');
}

/**
 * Every `.safetensors` file under `dir` (subfolders too, as A1111 reads them), sorted by path; a file that is
 * not a usable embedding is listed in `skipped` with the reason. A missing folder holds no embeddings.
 */
export async function scanEmbeddings(dir: string): Promise<EmbeddingScan> {
  const files = await embeddingFilesBelow(dir);
  const embeddings: TextualInversion[] = [];
  const skipped: SkippedEmbedding[] = [];
  const taken = new Map<string, string>();
  for (const file of files) {
    if (extname(file).toLowerCase() !== '.safetensors') {
      skipped.push({ file, reason: 'not a .safetensors file (pickled .pt/.bin files can run code when loaded; convert them to .safetensors)' });
      continue;
    }
    const name = basename(file, extname(file));
    const earlier = taken.get(name.toLowerCase());
    if (earlier) {
      skipped.push({ file, reason: `its name "${name}" is taken by ${earlier}` });
      continue;
    }
    try {
      embeddings.push(readEmbedding(name, file, join(dir, file)));
      taken.set(name.toLowerCase(), file);
    } catch (error) {
      skipped.push({ file, reason: (error as Error).message });
    }
  }
  return { embeddings, skipped };
}

/**
 * The embeddings of one folder, read again when the folder changes (a file added, removed or renamed at its top
 * level changes its modification time), as AUTOMATIC1111 does before each generation.
 */
export class EmbeddingLibrary {
  private version: number | undefined;
  private embeddings: readonly TextualInversion[] = [];

  constructor(readonly dir: string) {}

  async current(): Promise<readonly TextualInversion[]> {
    const version = await stat(this.dir).then(
      (info) => info.mtimeMs,
      () => Number.NaN,
    );
    if (!Object.is(version, this.version)) {
      this.embeddings = (await scanEmbeddings(this.dir)).embeddings;
      this.version = version;
    }
    return this.embeddings;
  }
}

/**
 * A1111's rules: `clip_l` + `clip_g` is an SDXL embedding; otherwise the file holds exactly one tensor, the
 * vectors ([count, width], or one vector [width]) — whatever its key (`emb_params`, `string_to_param.*`, a token).
 */
function readEmbedding(name: string, file: string, path: string): TextualInversion {
  const tensors = readFloatTensors(path);
  const vectors = new Map<number, Float32Array>();
  let vectorCount: number;
  let family: string;
  let perTextEncoder: Float32Array[] | undefined;
  if (SDXL_PARTS.every((part) => tensors.has(part))) {
    const [clipL, clipG] = SDXL_PARTS.map((part) => matrix(part, tensors.get(part)!));
    if (clipL.count !== clipG.count) throw new Error(`clip_l has ${clipL.count} vectors but clip_g ${clipG.count}`);
    vectors.set(clipL.width, clipL.data).set(clipG.width, clipG.data);
    perTextEncoder = [clipL.data, clipG.data];
    vectorCount = clipL.count;
    family = 'SDXL';
  } else {
    if (tensors.size !== 1) throw new Error(`holds ${tensors.size} tensors (${[...tensors.keys()].join(', ')}); an embedding has one, or clip_l and clip_g`);
    const [[key, tensor]] = tensors;
    const single = matrix(key, tensor);
    vectors.set(single.width, single.data);
    vectorCount = single.count;
    family = single.width === 768 ? 'SD 1.x' : single.width === 1024 ? 'SD 2.x' : `${single.width}-wide`;
  }
  if (vectorCount < 1 || vectorCount > MAX_VECTORS) throw new Error(`has ${vectorCount} vectors; an embedding has 1 to ${MAX_VECTORS}`);
  return { name, file, vectorCount, vectors, ...(perTextEncoder ? { perTextEncoder } : {}), family };
}

function matrix(key: string, tensor: { shape: number[]; data: Float32Array }): { count: number; width: number; data: Float32Array } {
  const { shape, data } = tensor;
  if (shape.length === 1) return { count: 1, width: shape[0], data };
  if (shape.length === 2) return { count: shape[0], width: shape[1], data };
  throw new Error(`tensor "${key}" has shape [${shape.join(', ')}]; expected [vectors, width]`);
}

/** Candidate files (relative paths, sorted): safetensors, and the pickle formats people may put there by mistake. */
async function embeddingFilesBelow(dir: string): Promise<string[]> {
  const files = await filesBelow(dir).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [];
    throw error;
  });
  return files.filter((file) => !basename(file).startsWith('.') && /\.(safetensors|pt|bin|ckpt)$/i.test(file)).sort();
}
