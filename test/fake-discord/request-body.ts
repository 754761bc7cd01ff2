import type { IncomingMessage } from 'node:http';
import { DiscordErrors } from './errors.ts';

/** One file part of a multipart/form-data request, as the bot uploaded it. */
export interface UploadedFile {
  /** Form field name, `files[0]`, `files[1]`, … for discord.js uploads. */
  readonly field: string;
  readonly filename: string;
  /** Content type of the part; undefined when the part did not declare one. */
  readonly contentType: string | undefined;
  readonly data: Buffer;
}

export interface ParsedBody {
  /** The JSON body, or the parsed `payload_json` field of a multipart body; undefined when there was none. */
  readonly json: unknown;
  readonly files: readonly UploadedFile[];
}

async function readAll(request: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw DiscordErrors.invalidJson();
  }
}

/** Reads a JSON or multipart/form-data (payload_json + files[n]) request body. */
export async function readRequestBody(request: IncomingMessage): Promise<ParsedBody> {
  const raw = await readAll(request);
  const contentType = request.headers['content-type'] ?? '';
  if (raw.length === 0) return { json: undefined, files: [] };
  if (contentType.startsWith('multipart/form-data')) return parseMultipart(raw, contentType);
  return { json: parseJson(raw.toString('utf8')), files: [] };
}

async function parseMultipart(raw: Buffer, contentType: string): Promise<ParsedBody> {
  let form: FormData;
  try {
    // Node's fetch implementation carries a complete multipart parser; a Response is the way to reach it.
    form = await new Response(raw, { headers: { 'content-type': contentType } }).formData();
  } catch (error) {
    throw DiscordErrors.invalidFormBody({
      _errors: [{ code: 'MULTIPART_INVALID', message: `Could not parse multipart body: ${(error as Error).message}` }],
    });
  }
  let json: unknown;
  const files: UploadedFile[] = [];
  for (const [field, value] of form) {
    if (typeof value === 'string') {
      if (field === 'payload_json') json = parseJson(value);
      continue;
    }
    files.push({
      field,
      filename: value.name,
      contentType: value.type === '' ? undefined : value.type,
      data: Buffer.from(await value.arrayBuffer()),
    });
  }
  return { json, files };
}
