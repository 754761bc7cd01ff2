import { EmbedBuilder, type APIEmbed } from 'discord.js';
import { parseSize } from '../config.ts';
import type { GenerationSettings } from '../pipeline/types.ts';
import type { ImagineOptions, JobResult } from '../queue/types.ts';

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
  time: 'Time',
} as const;

const EMBED_COLOR = 0x5865f2;
const UNKNOWN_MODEL = 'unknown';

export function resultEmbed(result: JobResult): EmbedBuilder {
  const first = result.images[0].settings;
  const seeds = result.images.map((image) => image.settings.seed).join(', ');
  const embed = new EmbedBuilder()
    .setColor(EMBED_COLOR)
    .setDescription(first.prompt)
    .addFields(
      ...(first.negativePrompt ? [{ name: FIELD.negativePrompt, value: first.negativePrompt }] : []),
      { name: FIELD.seed, value: seeds, inline: true },
      { name: FIELD.steps, value: String(first.steps), inline: true },
      { name: FIELD.guidance, value: String(first.guidanceScale), inline: true },
      { name: FIELD.scheduler, value: first.scheduler, inline: true },
      { name: FIELD.size, value: `${first.width}x${first.height}`, inline: true },
      { name: FIELD.model, value: first.model || UNKNOWN_MODEL, inline: true },
      ...(first.embeddings ? [{ name: FIELD.embeddings, value: first.embeddings.join(', '), inline: true }] : []),
      { name: FIELD.time, value: `${(result.elapsedMs / 1000).toFixed(1)} s`, inline: true },
    );
  return embed;
}

/** The options that re-create the job on this embed (seed included), or undefined when it is not one of ours. */
export function optionsFromEmbed(embed: APIEmbed): ImagineOptions | undefined {
  const field = (name: string) => embed.fields?.find((candidate) => candidate.name === name)?.value;
  const seeds = field(FIELD.seed)?.split(',').map((seed) => seed.trim());
  const steps = Number(field(FIELD.steps));
  const guidance = Number(field(FIELD.guidance));
  const size = parseSize(field(FIELD.size) ?? '');
  const scheduler = field(FIELD.scheduler);
  const model = field(FIELD.model);
  if (!embed.description || !seeds || !seeds.every((seed) => /^\d+$/.test(seed))) return undefined;
  if (!Number.isInteger(steps) || !Number.isFinite(guidance) || !size || !scheduler) return undefined;
  return {
    prompt: embed.description,
    negativePrompt: field(FIELD.negativePrompt) ?? '',
    seed: seeds[0],
    steps,
    guidance,
    size,
    scheduler,
    ...(model && model !== UNKNOWN_MODEL ? { model } : {}),
    count: seeds.length,
  };
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
    count: settings.length,
  };
}
