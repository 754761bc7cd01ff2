import { SlashCommandBuilder, type Attachment, type AutocompleteInteraction, type ChatInputCommandInteraction } from 'discord.js';
import type { BotContext } from '../src/discord/bot-context.ts';
import { answerPrivately } from '../src/discord/job-messages.ts';
import { modelChoices } from '../src/discord/model-choices.ts';
import { fetchPicture, MAX_PICTURE_BYTES, PictureUnavailableError } from '../src/discord/source-message.ts';
import { startJob } from '../src/discord/start-job.ts';
import { MAX_INIT_IMAGE_PIXELS } from '../src/image/init-image.ts';
import { MAX_IMAGES_PER_JOB, MAX_PROMPT_LENGTH, offeredSizes, parseSize, quoteInput, sizeLabel, type ImagineOptions } from '../src/jobs/options.ts';
import type { OfferedModels } from '../src/models/catalog.ts';
import type { Decoder, ModelInfo } from '../src/pipeline/types.ts';
import { extractInlineParameters } from '../src/prompt/inline-parameters.ts';
import { SCHEDULERS } from '../src/schedulers/index.ts';

/** AUTOMATIC1111's default denoising strength. */
const DEFAULT_STRENGTH = 0.75;
const PICTURE_TYPES = ['image/png', 'image/jpeg', 'image/webp'];

/** Discord's own bounds; the operator's and the model's limits are checked when the command runs. */
const MAX_STEPS_OPTION = 150;
const MAX_GUIDANCE_OPTION = 30;
const MAX_AUTOCOMPLETE_CHOICES = 25;
/** Enough for "12345 x 12345"; a size is numbers, not prose. */
const MAX_SIZE_LENGTH = 16;
/** Installed model names are at most 64 characters (see checkModelName). */
const MAX_MODEL_NAME_LENGTH = 64;

export const data = new SlashCommandBuilder()
  .setName('imagine')
  .setDescription('Draw an image from a text prompt with Stable Diffusion')
  .addStringOption((option) =>
    option.setName('prompt').setDescription('What to draw: (word:1.3) weighs a word; end with --ar 16:9, --no text, --seed 42').setRequired(true).setMaxLength(MAX_PROMPT_LENGTH),
  )
  .addStringOption((option) =>
    option.setName('negative_prompt').setDescription('What to keep out of the image').setMaxLength(MAX_PROMPT_LENGTH),
  )
  .addIntegerOption((option) =>
    option.setName('seed').setDescription('Seed for a repeatable image (random when empty)').setMinValue(0).setMaxValue(Number.MAX_SAFE_INTEGER),
  )
  .addIntegerOption((option) => option.setName('steps').setDescription('Denoising steps').setMinValue(1).setMaxValue(MAX_STEPS_OPTION))
  .addNumberOption((option) =>
    option.setName('guidance').setDescription('How closely to follow the prompt (CFG scale)').setMinValue(0).setMaxValue(MAX_GUIDANCE_OPTION),
  )
  .addStringOption((option) => option.setName('size').setDescription('Width x height').setAutocomplete(true).setMaxLength(MAX_SIZE_LENGTH))
  .addStringOption((option) =>
    option
      .setName('scheduler')
      .setDescription('Sampler')
      .addChoices(...SCHEDULERS.map((scheduler) => ({ name: scheduler.name, value: scheduler.name }))),
  )
  .addIntegerOption((option) =>
    option.setName('count').setDescription(`Images in one message (1-${MAX_IMAGES_PER_JOB})`).setMinValue(1).setMaxValue(MAX_IMAGES_PER_JOB),
  )
  // Its choices are whatever the running bot's queue offers (the local catalog, or the workers' heartbeats).
  .addStringOption((option) =>
    option.setName('model').setDescription('Installed model (the default when empty)').setAutocomplete(true).setMaxLength(MAX_MODEL_NAME_LENGTH),
  )
  .addStringOption((option) =>
    option
      .setName('decoder')
      .setDescription('Quality or speed for the last stage (the server’s default when empty)')
      .addChoices({ name: 'Full — the model’s own VAE, best detail', value: 'full' }, { name: 'Tiny — TAESD, much faster, a little softer', value: 'tiny' }),
  )
  .addAttachmentOption((option) => option.setName('image').setDescription('A picture to start from (PNG, JPEG or WebP): img2img'))
  .addNumberOption((option) =>
    option.setName('strength').setDescription(`With image: how much of it to redraw, 0.05-1 (default ${DEFAULT_STRENGTH})`).setMinValue(0.05).setMaxValue(1),
  )
  .addBooleanOption((option) => option.setName('steps_video').setDescription('Also post an animation of the image forming, one frame per step'));

export async function execute(interaction: ChatInputCommandInteraction, context: BotContext): Promise<void> {
  let options: ImagineOptions;
  try {
    options = readOptions(interaction);
  } catch (error) {
    // A malformed inline parameter, or what a client sent that the Discord client would never have (a wrong type, a malformed size).
    await answerPrivately(interaction, `⚠️ ${error instanceof Error ? error.message : String(error)}`);
    return;
  }
  const counted = { countChosen: interaction.options.getInteger('count') !== null };
  const attachment = interaction.options.getAttachment('image');
  const strength = interaction.options.getNumber('strength');
  if (!attachment) {
    if (strength !== null) return answerPrivately(interaction, '⚠️ strength is how much of a picture to redraw: give an image with it.');
    return startJob(interaction, options, context, counted);
  }
  const refusal = attachmentProblem(attachment);
  if (refusal) return answerPrivately(interaction, `⚠️ ${refusal}`);
  try {
    const picture = await fetchPicture(attachment.url);
    const initImage = { image: picture.data.toString('base64'), width: picture.width, height: picture.height, strength: strength ?? DEFAULT_STRENGTH, source: attachment.url };
    await startJob(interaction, { ...options, initImage }, context, counted);
  } catch (error) {
    if (!(error instanceof PictureUnavailableError)) throw error;
    await answerPrivately(interaction, `⚠️ ${error.message}`);
  }
}

/** What is wrong with an attached picture, from what Discord says of it (before any download), or undefined. */
function attachmentProblem(attachment: Attachment): string | undefined {
  const type = attachment.contentType?.split(';')[0].trim().toLowerCase();
  if (!type || !PICTURE_TYPES.includes(type)) return `${quoteInput(attachment.name)} is not a PNG, JPEG or WebP picture.`;
  if (attachment.size > MAX_PICTURE_BYTES) return `${quoteInput(attachment.name)} is ${(attachment.size / 1024 / 1024).toFixed(1)} MB; pictures up to ${MAX_PICTURE_BYTES / 1024 / 1024} MB are taken.`;
  const { width, height } = attachment;
  if (width && height && width * height > MAX_INIT_IMAGE_PIXELS) {
    return `${quoteInput(attachment.name)} is ${width}x${height}; pictures up to ${MAX_INIT_IMAGE_PIXELS / 1e6} megapixels are taken.`;
  }
  return undefined;
}

/** The command's options; Midjourney-style parameters at the end of the prompt fill in those the command leaves out. */
function readOptions(interaction: ChatInputCommandInteraction): ImagineOptions {
  const sizeText = interaction.options.getString('size');
  const size = sizeText === null ? undefined : parseSize(sizeText);
  if (sizeText !== null && !size) throw new Error(`size ${quoteInput(sizeText)} is not WIDTHxHEIGHT, e.g. 512x768.`);
  const seed = interaction.options.getInteger('seed');
  const { prompt, parameters: inline } = extractInlineParameters(interaction.options.getString('prompt') ?? '');
  const negativePrompt = [interaction.options.getString('negative_prompt'), inline.no].filter(Boolean).join(', ');
  return {
    prompt,
    negativePrompt: negativePrompt || undefined,
    seed: seed === null ? inline.seed : String(seed),
    steps: interaction.options.getInteger('steps') ?? inline.steps,
    guidance: interaction.options.getNumber('guidance') ?? inline.guidance,
    size,
    ...(size === undefined && inline.aspectRatio ? { aspectRatio: inline.aspectRatio } : {}),
    scheduler: interaction.options.getString('scheduler') ?? undefined,
    model: interaction.options.getString('model') ?? undefined,
    decoder: (interaction.options.getString('decoder') as Decoder | null) ?? undefined,
    count: interaction.options.getInteger('count') ?? 1,
    ...(interaction.options.getBoolean('steps_video') && { stepsVideo: true }),
  };
}

export async function autocomplete(interaction: AutocompleteInteraction, context: BotContext): Promise<void> {
  const focused = interaction.options.getFocused(true);
  const typed = focused.value.replace(/\s+/g, '').toLowerCase();
  const offered = context.queue.offeredModels();
  const allowed = focused.name === 'model' ? await serverModels(interaction, context) : undefined;
  const choices =
    focused.name === 'model' ? modelChoices(offered).filter((choice) => !allowed || allowed.includes(choice.value)) : sizeChoices(interaction, context, offered);
  await interaction.respond(choices.filter((choice) => choice.value.toLowerCase().includes(typed)).slice(0, MAX_AUTOCOMPLETE_CHOICES));
}

/** The models this server allows (undefined: every one); an unreadable store offers every model (jobs are checked anyway). */
async function serverModels(interaction: AutocompleteInteraction, context: BotContext): Promise<readonly string[] | undefined> {
  if (interaction.guildId === null) return undefined;
  const stored = await context.settings.read(interaction.guildId).catch(() => undefined);
  return stored?.settings.allowedModels;
}

/** The sizes the chosen model (else the default one) accepts, native first. */
function sizeChoices(interaction: AutocompleteInteraction, context: BotContext, offered: OfferedModels | undefined): { name: string; value: string }[] {
  const name = interaction.options.getString('model') || offered?.defaultName;
  const model: ModelInfo | undefined = offered?.models.find((candidate) => candidate.name === name);
  return offeredSizes(context.config.generation, model).map((size) => {
    const label = sizeLabel(size);
    const native = model && size.width === model.nativeWidth && size.height === model.nativeHeight;
    return { name: native ? `${label} (native)` : label, value: label };
  });
}
