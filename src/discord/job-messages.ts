import { ActionRowBuilder, ButtonBuilder, ButtonStyle, EmbedBuilder, MessageFlags, type Message, type RepliableInteraction } from 'discord.js';
import type { PreviewImage } from '../image/preview.ts';
import { MAX_UPSCALED_SIDE, type ImagineOptions } from '../jobs/options.ts';
import type { JobStatus, RejectionReason } from '../queue/types.ts';
import { encodeButton, type ButtonAction } from './custom-id.ts';
import { escapeMarkdown } from './markdown.ts';

/** The fields of a reply/edit this bot sends; files are added by the sender. */
export interface MessageContent {
  content: string;
  embeds: EmbedBuilder[];
  components: ActionRowBuilder<ButtonBuilder>[];
}

const PROMPT_PREVIEW_LENGTH = 120;
/** Discord refuses message content longer than this (in code points). */
const MESSAGE_LENGTH_LIMIT = 2000;
const PROGRESS_BAR_CELLS = 12;

export function cancelRow(jobId: string): ActionRowBuilder<ButtonBuilder> {
  return new ActionRowBuilder<ButtonBuilder>().addComponents(
    new ButtonBuilder().setCustomId(encodeButton({ kind: 'cancel', jobId })).setLabel('Cancel').setStyle(ButtonStyle.Secondary),
  );
}

/** Whether a message still offers this job's Cancel button. */
export function offersCancel(message: Message, jobId: string): boolean {
  const cancelId = encodeButton({ kind: 'cancel', jobId });
  return JSON.stringify(message.components.map((row) => row.toJSON())).includes(`"${cancelId}"`);
}

/** What the buttons of a result need to know of each of its pictures. */
export interface ResultPicture {
  width: number;
  height: number;
  /** The picture is itself an upscale: it is not varied, redrawn or upscaled again. */
  upscaled: boolean;
}

/**
 * The buttons of a result message: Reroll, Remix and Delete, then a row per action on a picture (Vary Subtle, Vary
 * Strong, Upscale), one button per picture of the message. With one picture, ×4 (where the size allows) and
 * Creative join the Upscale row; with several, Creative has a row of its own.
 */
export function resultRows(requesterId: string, pictures: readonly ResultPicture[]): ActionRowBuilder<ButtonBuilder>[] {
  const button = (action: ButtonAction, label: string, style = ButtonStyle.Secondary) => new ButtonBuilder().setCustomId(encodeButton(action)).setLabel(label).setStyle(style);
  const upscaled = pictures.some((picture) => picture.upscaled);
  const first = new ActionRowBuilder<ButtonBuilder>().addComponents(
    ...(upscaled ? [] : [button({ kind: 'reroll' }, 'Reroll', ButtonStyle.Primary).setEmoji('🎲'), button({ kind: 'remix' }, 'Remix').setEmoji('🎨')]),
    button({ kind: 'delete', requesterId }, 'Delete', ButtonStyle.Danger),
  );
  if (upscaled || pictures.length === 0) return [first];
  const single = pictures.length === 1;
  const perPicture = (label: (index: number) => string, action: (index: number) => ButtonAction) =>
    new ActionRowBuilder<ButtonBuilder>().addComponents(pictures.map((_, index) => button(action(index), label(index))));
  const name = (index: number, what: string) => (single ? what : `${what.split(' ')[0]} ${index + 1}${what.includes(' ') ? ` ${what.slice(what.indexOf(' ') + 1)}` : ''}`);
  const rows = [
    perPicture((index) => name(index, 'Vary (Subtle)'), (image) => ({ kind: 'vary', amount: 'subtle', image })),
    perPicture((index) => name(index, 'Vary (Strong)'), (image) => ({ kind: 'vary', amount: 'strong', image })),
    perPicture((index) => name(index, 'Upscale ×2'), (image) => ({ kind: 'upscale', factor: 2, creative: false, image })),
  ];
  const creative = (image: number): ButtonAction => ({ kind: 'upscale', factor: 2, creative: true, image });
  if (single) {
    const [picture] = pictures;
    if (Math.max(picture.width, picture.height) * 4 <= MAX_UPSCALED_SIDE) rows[2].addComponents(button({ kind: 'upscale', factor: 4, creative: false, image: 0 }, 'Upscale ×4'));
    rows[2].addComponents(button(creative(0), 'Upscale (Creative)'));
  } else {
    rows.push(perPicture((index) => name(index, 'Upscale (Creative)'), creative));
  }
  return [first, ...rows];
}

export function promptPreview(options: ImagineOptions): string {
  const oneLine = [...options.prompt.replace(/\s+/g, ' ').trim()];
  const preview = oneLine.length > PROMPT_PREVIEW_LENGTH ? `${oneLine.slice(0, PROMPT_PREVIEW_LENGTH - 1).join('')}…` : oneLine.join('');
  return `> ${escapeMarkdown(preview)}`;
}

export function statusText(status: JobStatus): string {
  if (status.state === 'running') {
    if (status.loadingModel) return `📦 Loading the model ${status.loadingModel}…`;
    const image = status.images > 1 ? ` image ${status.image}/${status.images}` : '';
    const done = status.totalSteps > 0 ? Math.round((status.step / status.totalSteps) * PROGRESS_BAR_CELLS) : 0;
    const bar = '▰'.repeat(done) + '▱'.repeat(PROGRESS_BAR_CELLS - done);
    return `🎨 Generating${image} — step ${status.step}/${status.totalSteps}  ${bar}`;
  }
  if (status.modelLoading) return `⏳ The model is still loading — you are #${status.position} in the queue.`;
  return status.position === 1 ? '⏳ You are next in the queue.' : `⏳ Queued — #${status.position} in line.`;
}

/** The file name a preview is uploaded as, which its embed shows. */
export const PREVIEW_FILE_NAME = 'preview.jpg';
const PREVIEW_COLOR = 0x4f545c;

/** The reply while a job waits or runs; a running job's newest preview (uploaded as PREVIEW_FILE_NAME) in an embed marked as one. */
export function statusMessage(jobId: string, options: ImagineOptions, status: JobStatus): MessageContent {
  const preview = status.state === 'running' && !status.loadingModel ? status.preview : undefined;
  return { content: `${promptPreview(options)}\n${statusText(status)}`, embeds: preview ? [previewEmbed(preview)] : [], components: [cancelRow(jobId)] };
}

function previewEmbed({ step, totalSteps }: PreviewImage): EmbedBuilder {
  return new EmbedBuilder()
    .setColor(PREVIEW_COLOR)
    .setImage(`attachment://${PREVIEW_FILE_NAME}`)
    .setFooter({ text: `Preview after step ${step}/${totalSteps} — the finished image replaces it` });
}

export function handedToChannelMessage(jobId: string, options: ImagineOptions, status: JobStatus): MessageContent {
  return {
    content: `${promptPreview(options)}\n${statusText(status)}\nThis is taking a while: I will post the result in this channel and mention you.`,
    embeds: [],
    components: [cancelRow(jobId)],
  };
}

export function finalText(options: ImagineOptions, text: string): MessageContent {
  return { content: `${promptPreview(options)}\n${text}`, embeds: [], components: [] };
}

/**
 * Answers an interaction with a message only its user sees, mentioning nobody. Cut to Discord's limit, so that a
 * message quoting what the user typed can never be refused for its length.
 */
export async function answerPrivately(interaction: RepliableInteraction, content: string): Promise<void> {
  const characters = [...content];
  const fitted = characters.length > MESSAGE_LENGTH_LIMIT ? `${characters.slice(0, MESSAGE_LENGTH_LIMIT - 1).join('')}…` : content;
  await interaction.reply({ content: fitted, flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] } });
}

export function refusalText(reason: RejectionReason, limit: number): string {
  switch (reason) {
    case 'queue_full':
      return `🚦 The queue is full (${limit} jobs). Please try again in a minute.`;
    case 'user_limit':
      return `🚦 You already have ${limit} job${limit === 1 ? '' : 's'} in the queue. Wait for one to finish, then try again.`;
    case 'server_limit':
      return `🚦 This server already has ${limit} job${limit === 1 ? '' : 's'} in the queue, its share. Please try again in a minute.`;
    case 'closed':
      return '🔌 The bot is shutting down and not taking new jobs. Please try again shortly.';
    case 'unavailable':
      return '🔌 Image generation is temporarily unavailable (the job queue cannot be reached). Please try again in a few minutes.';
    case 'duplicate':
      return 'This command is already being handled.';
  }
}
