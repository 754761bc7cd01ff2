import type { GenerationSettings } from '../pipeline/types.ts';

// AUTOMATIC1111's "parameters" text, so an image dropped into its PNG Info tab (or any tool that reads it)
// re-creates the generation:
//   <prompt>
//   Negative prompt: <negative>
//   Steps: 20, Sampler: PNDM, CFG scale: 7.5, Seed: 42, Size: 512x512, Model: <name>[, Denoising strength: 0.6][, VAE Decoder: TAESD]

const NEGATIVE_PREFIX = 'Negative prompt: ';
/** AUTOMATIC1111's `VAE Decoder` for an image its tiny decoder decoded: the method, not a file (none for the full VAE). */
const TINY_DECODER_METHOD = 'TAESD';

export function formatParameters(settings: GenerationSettings): string {
  const fields: [string, string | number][] = [
    ['Steps', settings.steps],
    ['Sampler', settings.scheduler],
    ['CFG scale', settings.guidanceScale],
    ['Seed', settings.seed],
    ['Size', `${settings.width}x${settings.height}`],
    ['Model', settings.model],
  ];
  if (settings.strength !== undefined) fields.push(['Denoising strength', settings.strength]);
  // AUTOMATIC1111's names: its hires fix for a redrawn upscale, its Extras tab for a plain one.
  const upscale = settings.upscale;
  if (upscale?.creative) fields.push(['Hires upscale', upscale.factor], ['Hires upscaler', upscale.upscaler]);
  else if (upscale) fields.push(['Postprocess upscale by', upscale.factor], ['Postprocess upscaler', upscale.upscaler]);
  if (settings.loras?.length) fields.push(['Lora', settings.loras.map(({ name, weight }) => `${name}:${weight}`).join(', ')]);
  if (settings.vae) fields.push(['VAE', settings.vae]);
  if (settings.tinyDecoder) fields.push(['VAE Decoder', TINY_DECODER_METHOD]);
  const lines = [settings.prompt];
  if (settings.negativePrompt) lines.push(NEGATIVE_PREFIX + settings.negativePrompt);
  lines.push(fields.map(([key, value]) => `${key}: ${quoteIfNeeded(String(value))}`).join(', '));
  return lines.join('\n');
}

/** Reads a parameters text back into settings; throws when a field the generation needs is missing. */
export function parseParameters(text: string): GenerationSettings {
  const lines = text.split('\n');
  const fields = parseFields(lines.pop() ?? '');
  const negativeStart = lines.findIndex((line) => line.startsWith(NEGATIVE_PREFIX));
  const promptLines = negativeStart === -1 ? lines : lines.slice(0, negativeStart);
  const negativeLines = negativeStart === -1 ? [] : lines.slice(negativeStart);
  const size = /^(\d+)x(\d+)$/.exec(required(fields, 'Size'));
  if (!size) throw new Error(`parameters: Size "${fields.get('Size')}" is not WIDTHxHEIGHT`);
  return {
    prompt: promptLines.join('\n'),
    negativePrompt: negativeLines.join('\n').slice(NEGATIVE_PREFIX.length),
    steps: toNumber(fields, 'Steps'),
    guidanceScale: toNumber(fields, 'CFG scale'),
    seed: BigInt(required(fields, 'Seed')).toString(),
    width: Number(size[1]),
    height: Number(size[2]),
    scheduler: required(fields, 'Sampler'),
    model: fields.get('Model') ?? '',
    ...loraField(fields.get('Lora')),
    ...(fields.get('VAE') ? { vae: fields.get('VAE') } : {}),
    ...(fields.get('VAE Decoder') === TINY_DECODER_METHOD ? { tinyDecoder: TINY_DECODER_METHOD } : {}),
    ...strengthField(fields.get('Denoising strength')),
    ...upscaleField(fields),
  };
}

function loraField(value: string | undefined): Pick<GenerationSettings, 'loras'> {
  if (!value) return {};
  const loras = value.split(',').map((entry) => {
    const separator = entry.lastIndexOf(':');
    return { name: entry.slice(0, separator).trim(), weight: Number(entry.slice(separator + 1)) };
  });
  return loras.every((lora) => lora.name && Number.isFinite(lora.weight)) ? { loras } : {};
}

function strengthField(value: string | undefined): Pick<GenerationSettings, 'strength'> {
  const strength = Number(value);
  return value && strength > 0 && strength <= 1 ? { strength } : {};
}

function upscaleField(fields: Map<string, string>): Pick<GenerationSettings, 'upscale'> {
  const creative = fields.has('Hires upscale');
  const factor = Number(fields.get(creative ? 'Hires upscale' : 'Postprocess upscale by'));
  const upscaler = fields.get(creative ? 'Hires upscaler' : 'Postprocess upscaler') ?? '';
  return factor > 1 ? { upscale: { factor, upscaler, creative } } : {};
}

function quoteIfNeeded(value: string): string {
  return /[,:"\n]/.test(value) ? JSON.stringify(value) : value;
}

function parseFields(line: string): Map<string, string> {
  const fields = new Map<string, string>();
  const pattern = /\s*([\w ./+-]+?):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)/g;
  for (const match of line.matchAll(pattern)) {
    const raw = match[2].trim();
    fields.set(match[1].trim(), raw.startsWith('"') ? (JSON.parse(raw) as string) : raw);
  }
  return fields;
}

function required(fields: Map<string, string>, key: string): string {
  const value = fields.get(key);
  if (value === undefined || value === '') throw new Error(`parameters: missing "${key}"`);
  return value;
}

function toNumber(fields: Map<string, string>, key: string): number {
  const value = Number(required(fields, key));
  if (!Number.isFinite(value)) throw new Error(`parameters: "${key}" is not a number`);
  return value;
}
