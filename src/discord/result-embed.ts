import { EmbedBuilder, type APIEmbed } from 'discord.js';
import { characterCount, isBlank, parseSize, type ImagineOptions } from '../jobs/options.ts';
import type { JobResult } from '../jobs/runner.ts';
import type { GenerationSettings } from '../pipeline/types.ts';
import { escapeMarkdown, unescapeMarkdown } from './markdown.ts';

// The embed is the job's durable record: buttons rebuild the job from it after a restart, so every
// setting the generation used is written here in a form settingsFromEmbed reads back.
const FIELD = {
  negativePrompt: 'Negative prompt',
  seed: 'Seed',
  steps: 'Steps',
  guidance: 'Guidance',
  scheduler: 'Scheduler',
  size: 'Size',
  model: 'Model',
  embeddings: 'Embeddings',
  loras: 'LoRA',
  vae: 'VAE',
  decoder: 'Decoder',
  strength: 'Strength',
  source: 'Source',
  upscale: 'Upscale',
  time: 'Time',
} as const;

const EMBED_COLOR = 0x5865f2;
const UNKNOWN_MODEL = 'unknown';
/** Discord's limit on an embed field's value. */
const FIELD_VALUE_LIMIT = 1024;
/**
 * Stands in for a negative prompt too long for a field once escaped; the PNG parameters keep it. Its asterisks are
 * Markdown, which an escaped user text cannot contain, so no negative prompt reads back as this.
 */
const NEGATIVE_PROMPT_IN_PNG = '*(too long to show here; the image’s parameters hold it)*';

/** The negative prompt as its field shows it; none for a blank one (Discord refuses blank field values). */
function negativePromptField(negativePrompt: string): { name: string; value: string }[] {
  if (isBlank(negativePrompt)) return [];
  const escaped = escapeMarkdown(negativePrompt);
  return [{ name: FIELD.negativePrompt, value: characterCount(escaped) <= FIELD_VALUE_LIMIT ? escaped : NEGATIVE_PROMPT_IN_PNG }];
}

/** A field listing names (from file names: escaped, and counted instead when too long), none for no names. */
function namesField(field: string, names: string[] | undefined, counted: string): { name: string; value: string; inline: true }[] {
  if (!names?.length) return [];
  const listed = escapeMarkdown(names.join(', '));
  return [{ name: field, value: characterCount(listed) <= FIELD_VALUE_LIMIT ? listed : `${names.length} ${counted}`, inline: true }];
}

/** The picture a job started from, as its Source field links it: `[name](url)`. */
const SOURCE_LINK = /^\[[^\]]*\]\((https?:\/\/[^\s)]+)\)$/;

/** An img2img job's fields: its strength and a link to the picture it started from (when it came from a link). */
function sourceFields(strength: number | undefined, source: string | undefined): { name: string; value: string; inline: true }[] {
  if (strength === undefined) return [];
  const link = source !== undefined && /^https?:\/\/\S+$/.test(source) && !source.includes(')') ? [{ name: FIELD.source, value: `[picture](${source})`, inline: true as const }] : [];
  return [{ name: FIELD.strength, value: String(strength), inline: true }, ...link];
}

/** An upscale's field: by how much and with what, and that there was no upscaler model when Lanczos made it. */
function upscaleField(upscale: GenerationSettings['upscale']): { name: string; value: string; inline: true }[] {
  if (!upscale) return [];
  const how = upscale.upscaler === 'Lanczos' ? 'Lanczos (no upscaler model is installed)' : escapeMarkdown(upscale.upscaler);
  return [{ name: FIELD.upscale, value: `×${upscale.factor}, ${how}${upscale.creative ? ', redrawn (Creative)' : ''}`, inline: true }];
}

/** `source`: where an img2img job's picture came from (a link shows in the embed, and Reroll fetches it again). */
export function resultEmbed(result: JobResult, source?: string): EmbedBuilder {
  const first = result.images[0].settings;
  const seeds = result.images.map((image) => image.settings.seed).join(', ');
  const embed = new EmbedBuilder()
    .setColor(EMBED_COLOR)
    .setDescription(escapeMarkdown(first.prompt))
    .addFields(
      ...negativePromptField(first.negativePrompt),
      { name: FIELD.seed, value: seeds, inline: true },
      { name: FIELD.steps, value: String(first.steps), inline: true },
      { name: FIELD.guidance, value: String(first.guidanceScale), inline: true },
      { name: FIELD.scheduler, value: first.scheduler, inline: true },
      { name: FIELD.size, value: `${first.width}x${first.height}`, inline: true },
      { name: FIELD.model, value: first.model || UNKNOWN_MODEL, inline: true },
      ...namesField(FIELD.embeddings, first.embeddings, 'embeddings'),
      ...namesField(FIELD.loras, first.loras?.map(({ name, weight }) => `${name} ${weight}`), 'LoRAs'),
      ...namesField(FIELD.vae, first.vae ? [first.vae] : undefined, 'VAE'),
      ...(first.tinyDecoder ? [{ name: FIELD.decoder, value: `tiny (${escapeMarkdown(first.tinyDecoder)})`, inline: true }] : []),
      ...sourceFields(first.upscale ? undefined : first.strength, source),
      ...upscaleField(first.upscale),
      { name: FIELD.time, value: `${(result.elapsedMs / 1000).toFixed(1)} s`, inline: true },
    );
  return embed;
}

/**
 * The options that re-create the job on this embed (seed included), or undefined when it is not one of ours or
 * does not hold them all (then the PNG parameters do). The decoder is always set, so that a job the user drew with
 * the VAE is redrawn with it where the server's default is the tiny decoder.
 */
export function optionsFromEmbed(embed: APIEmbed): ImagineOptions | undefined {
  const field = (name: string) => embed.fields?.find((candidate) => candidate.name === name)?.value;
  const seeds = field(FIELD.seed)?.split(',').map((seed) => seed.trim());
  const steps = Number(field(FIELD.steps));
  const guidance = Number(field(FIELD.guidance));
  const size = parseSize(field(FIELD.size) ?? '');
  const scheduler = field(FIELD.scheduler);
  const model = field(FIELD.model);
  const negativePrompt = field(FIELD.negativePrompt);
  if (!embed.description || !seeds || !seeds.every((seed) => /^\d+$/.test(seed))) return undefined;
  if (!Number.isInteger(steps) || !Number.isFinite(guidance) || !size || !scheduler || negativePrompt === NEGATIVE_PROMPT_IN_PNG) return undefined;
  return {
    prompt: unescapeMarkdown(embed.description),
    negativePrompt: unescapeMarkdown(negativePrompt ?? ''),
    seed: seeds[0],
    steps,
    guidance,
    size,
    scheduler,
    ...(model && model !== UNKNOWN_MODEL ? { model } : {}),
    decoder: field(FIELD.decoder) ? 'tiny' : 'full',
    count: seeds.length,
  };
}

/** The picture an img2img result started from, as its embed links it, with the strength; undefined for other results. */
export function sourceFromEmbed(embed: APIEmbed): { url: string; strength: number } | undefined {
  const field = (name: string) => embed.fields?.find((candidate) => candidate.name === name)?.value;
  const url = SOURCE_LINK.exec(field(FIELD.source) ?? '')?.[1];
  const strength = Number(field(FIELD.strength));
  return url && strength > 0 && strength <= 1 ? { url, strength } : undefined;
}

/** The same, from the AUTOMATIC1111 parameters of the message's images (one settings object per image). */
export function optionsFromSettings(settings: GenerationSettings[]): ImagineOptions | undefined {
  const first = settings[0];
  if (!first) return undefined;
  return {
    prompt: first.prompt,
    negativePrompt: first.negativePrompt,
    seed: first.seed,
    steps: first.steps,
    guidance: first.guidanceScale,
    size: { width: first.width, height: first.height },
    scheduler: first.scheduler,
    ...(first.model ? { model: first.model } : {}),
    decoder: first.tinyDecoder ? 'tiny' : 'full',
    count: settings.length,
  };
}
