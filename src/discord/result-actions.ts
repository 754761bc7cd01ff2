import {
  ActionRowBuilder,
  ModalBuilder,
  TextInputBuilder,
  TextInputStyle,
  type ButtonInteraction,
  type ModalSubmitInteraction,
} from 'discord.js';
import { MAX_PROMPT_LENGTH, type ImagineOptions } from '../jobs/options.ts';
import { minimumSteps } from '../pipeline/img2img.ts';
import type { BotContext } from './bot-context.ts';
import { encodeButton, type VaryAmount } from './custom-id.ts';
import { answerPrivately } from './job-messages.ts';
import { unescapeMarkdown } from './markdown.ts';
import { sourceFromEmbed } from './result-embed.ts';
import { fetchPicture, optionsFromMessage, pictureOfMessage, PictureUnavailableError } from './source-message.ts';
import { startJob } from './start-job.ts';

// The actions on a result's pictures (Vary, Upscale, Remix) and Reroll of an img2img result. Each is a new job for
// whoever pressed, through the same queue and limits, rebuilt from the message itself, so it survives restarts.

/** How much of a picture Vary redraws (Midjourney's Vary Subtle / Strong). */
export const VARY_STRENGTH: Record<VaryAmount, number> = { subtle: 0.35, strong: 0.7 };

const REMIX_PROMPT = 'prompt';
const REMIX_NEGATIVE = 'negative_prompt';

/** img2img of the picture with a new seed and its own settings. */
export async function vary(interaction: ButtonInteraction, image: number, amount: VaryAmount, context: BotContext): Promise<void> {
  const found = await pictureOrRefuse(interaction, image, context, 'vary');
  if (!found) return;
  const { picture, options } = found;
  const strength = VARY_STRENGTH[amount];
  const varied: ImagineOptions = {
    ...options,
    seed: undefined,
    count: 1,
    size: { width: picture.width, height: picture.height },
    ...(options.steps !== undefined ? { steps: Math.max(options.steps, minimumSteps(strength)) } : {}),
    initImage: { image: picture.data.toString('base64'), width: picture.width, height: picture.height, strength, source: picture.url },
  };
  await startJob(interaction, varied, context, { countChosen: true });
}

/** The picture `factor` times larger (Creative: then redrawn at that size), with its own settings and seed. */
export async function upscale(interaction: ButtonInteraction, image: number, factor: number, creative: boolean, context: BotContext): Promise<void> {
  const found = await pictureOrRefuse(interaction, image, context, 'upscale');
  if (!found) return;
  const { picture, options } = found;
  const upscaled: ImagineOptions = {
    ...options,
    count: 1,
    size: undefined,
    upscale: { image: picture.data.toString('base64'), width: picture.width, height: picture.height, factor, creative },
  };
  await startJob(interaction, upscaled, context, { countChosen: true });
}

/** Reroll: the same settings with a new seed. */
export async function reroll(interaction: ButtonInteraction, context: BotContext): Promise<void> {
  const options = await jobOfMessage(interaction, context, 'reroll');
  if (options) await startJob(interaction, { ...options, seed: undefined }, context, { countChosen: true });
}

/** Remix: a modal with the prompt and negative prompt, prefilled from the message, to run the job again edited. */
export async function openRemix(interaction: ButtonInteraction): Promise<void> {
  // The modal must answer within Discord's 3 seconds, so it is prefilled from the embed alone.
  const embed = interaction.message.embeds[0];
  const negative = embed?.fields.find((field) => field.name === 'Negative prompt')?.value;
  const prompt = embed?.description;
  if (!prompt) return answerPrivately(interaction, 'I cannot read the prompt of this image any more, so I cannot remix it.');
  const promptInput = new TextInputBuilder()
    .setCustomId(REMIX_PROMPT)
    .setLabel('Prompt')
    .setStyle(TextInputStyle.Paragraph)
    .setMaxLength(MAX_PROMPT_LENGTH)
    .setValue(unescapeMarkdown(prompt).slice(0, MAX_PROMPT_LENGTH));
  const negativeInput = new TextInputBuilder().setCustomId(REMIX_NEGATIVE).setLabel('Negative prompt').setStyle(TextInputStyle.Paragraph).setMaxLength(MAX_PROMPT_LENGTH).setRequired(false);
  if (negative && !negative.startsWith('*(')) negativeInput.setValue(unescapeMarkdown(negative).slice(0, MAX_PROMPT_LENGTH));
  const modal = new ModalBuilder()
    .setCustomId(encodeButton({ kind: 'remix-submit' }))
    .setTitle('Remix: same seed and settings')
    .addComponents(new ActionRowBuilder<TextInputBuilder>().addComponents(promptInput), new ActionRowBuilder<TextInputBuilder>().addComponents(negativeInput));
  await interaction.showModal(modal);
}

/** The Remix modal's submission: the job of the message it was opened on, same seed and settings, the edited text. */
export async function submitRemix(interaction: ModalSubmitInteraction, context: BotContext): Promise<void> {
  const options = await jobOfMessage(interaction, context, 'remix');
  if (!options) return;
  const prompt = interaction.fields.getTextInputValue(REMIX_PROMPT);
  const negativePrompt = interaction.fields.getTextInputValue(REMIX_NEGATIVE);
  await startJob(interaction, { ...options, prompt, negativePrompt }, context, { countChosen: true });
}

/**
 * The job of the interaction's message again (its source picture fetched anew for an img2img result), or undefined
 * after telling the user why it cannot be had.
 */
async function jobOfMessage(interaction: ButtonInteraction | ModalSubmitInteraction, context: BotContext, verb: string): Promise<ImagineOptions | undefined> {
  const message = interaction.message;
  const options = message ? await optionsFromMessage(message, context) : undefined;
  if (!message || !options) {
    await answerPrivately(interaction, `I cannot ${verb} this: the image is gone, or I cannot read its settings any more.`);
    return undefined;
  }
  const source = message.embeds[0] && sourceFromEmbed(message.embeds[0].data);
  if (!source) return options;
  try {
    const picture = await fetchPicture(source.url);
    return { ...options, initImage: { image: picture.data.toString('base64'), width: picture.width, height: picture.height, strength: source.strength, source: source.url } };
  } catch (error) {
    if (!(error instanceof PictureUnavailableError)) throw error;
    await answerPrivately(interaction, `⚠️ I cannot ${verb} this: the picture it started from is unavailable. ${error.message}`);
    return undefined;
  }
}

async function pictureOrRefuse(interaction: ButtonInteraction, image: number, context: BotContext, verb: string): Promise<Awaited<ReturnType<typeof pictureOfMessage>> | undefined> {
  try {
    return await pictureOfMessage(interaction.message, image, context);
  } catch (error) {
    if (!(error instanceof PictureUnavailableError)) throw error;
    await answerPrivately(interaction, `⚠️ I cannot ${verb} that picture. ${error.message}`);
    return undefined;
  }
}
