import { createHash } from 'node:crypto';
import { AttachmentBuilder, EmbedBuilder, MessageFlags, type BaseMessageOptions, type Client } from 'discord.js';
import type { Logger } from 'pino';
import type { BotConfig } from '../config.ts';
import { failureForUser, JobCancelledError, JobFailedError } from '../jobs/errors.ts';
import type { JobResult } from '../jobs/runner.ts';
import type { SafetyPolicy } from '../settings/guild-settings.ts';
import { describeError } from '../log.ts';
import { JobDetachedError, type JobHandle, type JobStatus } from '../queue/types.ts';
import { animationIndexOf, formatBytes, imageIndexOf, planAnimations, planAttachments, type OutgoingFile } from './attachments.ts';
import { finalText, handedToChannelMessage, offersCancel, PREVIEW_FILE_NAME, resultRows, statusMessage, type MessageContent } from './job-messages.ts';
import { applySafetyPolicy, spoilerName } from './flagged-images.ts';
import type { ReplyTarget } from './reply-target.ts';
import { classifyFailure, failureText } from './rest-errors.ts';
import { resultEmbed } from './result-embed.ts';
import { ThrottledEditor } from './throttled-editor.ts';

export interface DeliveryContext {
  client: Client;
  logger: Logger;
  timing: BotConfig['timing'];
  /** What the job's server does with images the safety checker flags, in the job's channel. */
  safety: SafetyPolicy;
  /** Whether the safety checker checks the images: previews, drawn before it has, are then shown only under the policy `off`. */
  safetyChecked: boolean;
}

interface OutgoingMessage extends MessageContent {
  files: OutgoingFile[];
}

type Route = 'webhook' | 'channel';

/**
 * Carries one job from its deferred reply to its last message: queue position and step progress as
 * throttled edits, then the images (or why there are none). While the interaction token is usable it
 * edits the reply; once the token is about to expire it says so and switches to plain channel
 * messages that mention the requester. Every path ends in a message or, where none can be sent, a log line,
 * except a job that goes on without this process (JobDetachedError): that one is left as it is.
 */
export class JobDelivery {
  private interaction: ReplyTarget;
  private webhookUsableUntil: number;
  private readonly editor: ThrottledEditor<OutgoingMessage>;
  private readonly logger: Logger;
  private readonly attachmentLimit: number;
  private expiryTimer: NodeJS.Timeout | undefined;
  private handingOver: Promise<void> | undefined;
  private repliedOnce = false;
  /** Set once the job has settled: from then on only the final messages touch the reply. */
  private finishing = false;

  constructor(
    readonly job: JobHandle,
    interaction: ReplyTarget,
    private readonly context: DeliveryContext,
  ) {
    this.interaction = interaction;
    this.webhookUsableUntil = this.tokenDeadline(interaction);
    this.logger = context.logger.child({ jobId: job.id, userId: job.userId });
    this.attachmentLimit = interaction.attachmentSizeLimit;
    this.editor = new ThrottledEditor((message) => this.editStatus(message), context.timing.progressEditIntervalMs, (error) =>
      this.logger.warn({ error: describeError(error) }, 'progress edit failed'),
    );
  }

  /** Runs until the job's last message is out; never rejects. */
  async run(): Promise<void> {
    // Before any edit: a progress edit would hide the outcome the stopped bot may have posted.
    if (this.job.possiblyPosted && (await this.replyIsFinal())) {
      this.logger.info('the job’s outcome was already posted by the bot process that stopped');
      this.job.cancel('shutdown');
      await this.job.result.catch(() => undefined);
      await this.job.acknowledge?.().catch(() => undefined);
      return;
    }
    const unsubscribe = this.job.onStatus((status) => this.editor.update(this.status(status)));
    this.editor.update(this.status(this.job.status()));
    this.armExpiry();
    const outcome = await this.job.result.then(
      (result) => ({ result }),
      (error: unknown) => ({ error }),
    );
    this.finishing = true;
    clearTimeout(this.expiryTimer);
    await this.handingOver;
    await this.editor.close();
    if ('error' in outcome && outcome.error instanceof JobDetachedError) {
      unsubscribe();
      this.logger.info({ reason: outcome.error.message }, 'job left to another bot process');
      return;
    }
    try {
      if ('result' in outcome) await this.deliverResult(outcome.result);
      else await this.deliverFailure(outcome.error);
    } catch (error) {
      this.logger.error({ error: describeError(error) }, 'preparing the job’s message failed');
      await this.send({ ...finalText(this.job.options, '❌ Something went wrong while posting the image. Please try again.'), files: [] }, 0);
    } finally {
      unsubscribe();
      clearTimeout(this.expiryTimer);
    }
    await this.job.acknowledge?.().catch((error: unknown) =>
      this.logger.warn({ error: describeError(error) }, 'could not mark the job delivered; a restarted bot may post it again'),
    );
  }

  /** Whether the reply already shows an outcome (it is past "thinking…" and lost its Cancel button); false when it cannot be read. */
  private async replyIsFinal(): Promise<boolean> {
    if (!this.webhookUsable()) return false;
    try {
      const reply = await this.interaction.fetchReply();
      return !reply.flags.has(MessageFlags.Loading) && !offersCancel(reply, this.job.id);
    } catch (error) {
      this.logger.warn({ error: describeError(error) }, 'could not read the reply to see whether it was posted');
      return false;
    }
  }

  /** Whether this follow-up of the reply is in the channel already; false when that cannot be read. */
  private async followUpPosted(message: OutgoingMessage): Promise<boolean> {
    try {
      const reply = await this.interaction.fetchReply();
      const channel = await this.context.client.channels.fetch(this.interaction.channelId ?? '');
      if (!channel?.isTextBased()) return false;
      const later = await channel.messages.fetch({ after: reply.id, limit: FOLLOW_UP_SEARCH_LIMIT });
      return later.some((posted) => posted.interactionMetadata?.originalResponseMessageId === reply.id && posted.content === message.content);
    } catch (error) {
      this.logger.warn({ error: describeError(error) }, 'could not look whether the follow-up was posted');
      return false;
    }
  }

  /** Continues on a fresh interaction on the same message (a button press acknowledged with deferUpdate). */
  retarget(interaction: ReplyTarget): void {
    if (this.finishing) return;
    this.interaction = interaction;
    this.webhookUsableUntil = this.tokenDeadline(interaction);
    this.repliedOnce = true;
    this.armExpiry();
  }

  private tokenDeadline(interaction: ReplyTarget): number {
    const { interactionTokenTtlMs, tokenExpiryMarginMs } = this.context.timing;
    return interaction.tokenIssuedAt + interactionTokenTtlMs - tokenExpiryMarginMs;
  }

  private webhookUsable(): boolean {
    return Date.now() < this.webhookUsableUntil;
  }

  private armExpiry(): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = setTimeout(() => {
      if (!this.finishing) this.handingOver = this.handOverToChannel();
    }, Math.max(0, this.webhookUsableUntil - Date.now()));
  }

  /** Last edit through the expiring token: from now on the result goes to the channel. */
  private async handOverToChannel(): Promise<void> {
    const expiring = this.interaction;
    await this.editor.close();
    const notice = { ...handedToChannelMessage(this.job.id, this.job.options, this.job.status()), files: [] };
    try {
      await this.editThroughWebhook(notice, expiring);
    } catch (error) {
      this.logger.warn({ error: describeError(error) }, 'could not edit the reply before its token expired');
    }
    // A Cancel press meanwhile brought a fresh token; only the expiring one is given up.
    if (this.interaction === expiring) this.webhookUsableUntil = 0;
    this.logger.info('interaction token about to expire: the result will be posted as a channel message');
  }

  /** Every status edit names its files: the preview its embed shows, or none (which removes an earlier one). */
  private status(reported: JobStatus): OutgoingMessage {
    const previewsHidden = this.context.safetyChecked && this.context.safety !== 'off';
    const status = previewsHidden && reported.state === 'running' ? { ...reported, preview: undefined } : reported;
    const message = statusMessage(this.job.id, this.job.options, status);
    const preview = message.embeds.length > 0 && status.state === 'running' ? status.preview : undefined;
    return { ...message, files: preview ? [{ name: PREVIEW_FILE_NAME, data: Buffer.from(preview.jpeg) }] : [] };
  }

  private async editStatus(message: OutgoingMessage): Promise<void> {
    if (!this.webhookUsable()) return;
    try {
      await this.editThroughWebhook(message, this.interaction);
    } catch (error) {
      if (classifyFailure(error) === 'token') this.webhookUsableUntil = 0;
      throw error;
    }
  }

  private async deliverResult(finished: JobResult): Promise<void> {
    const safe = applySafetyPolicy(finished, this.context.safety);
    const flagged = finished.images.filter((image) => image.nsfw).length;
    if (flagged > 0) this.logger.info({ flagged, policy: this.context.safety }, 'the safety checker flagged images');
    if ('refusal' in safe) {
      await this.send({ ...finalText(this.job.options, safe.refusal), files: [] }, 0);
      return;
    }
    const { result, spoilered } = safe;
    const baseName = `imagine-${result.images[0].settings.seed}`;
    const plan = await planAnimations(await planAttachments(result.images, this.attachmentLimit, baseName), result.images, this.attachmentLimit, baseName);
    const embed = resultEmbed(result, this.job.options.initImage?.source);
    const notes = plan.tooLarge.map(
      (file) => `⚠️ ${file.name} is ${formatBytes(file.bytes)}, over this channel’s upload limit (${formatBytes(this.attachmentLimit)}), so it is not attached.`,
    );
    if (safe.note) notes.unshift(safe.note);
    // A steps animation shows its image, and the strip every animated image: hidden with a flagged one.
    const stripHidden = result.images.some((image, index) => image.animation && spoilered.has(index));
    const hidden = (file: OutgoingFile): OutgoingFile => {
      const hide = file === plan.strip ? stripHidden : spoilered.has(imageIndexOf(file.name) ?? animationIndexOf(file.name) ?? -1);
      return hide ? { ...file, name: spoilerName(file.name) } : file;
    };
    const batches = plan.batches.length > 0 ? plan.batches.map((batch) => batch.map(hidden)) : [[]];
    let sent = 0;
    for (const [index, files] of batches.entries()) {
      const part = batches.length > 1 ? `Images ${index + 1}/${batches.length}` : '';
      const content = [part, ...(index === 0 ? notes : [])].filter(Boolean).join('\n');
      const pictures = files
        .map((file) => imageIndexOf(file.name))
        .filter((image) => image !== undefined)
        .map((image) => result.images[image].settings)
        .map(({ width, height, upscale }) => ({ width, height, upscaled: upscale !== undefined }));
      // Where an animation does not play (phones, some clients), the embed shows its first, middle and last frames.
      const shown = plan.strip && files.includes(plan.strip) ? EmbedBuilder.from(embed.toJSON()).setImage(`attachment://${plan.strip.name}`) : embed;
      if (await this.send({ content, embeds: [shown], components: resultRows(this.job.userId, pictures), files }, index)) sent++;
    }
    const summary = { images: result.images.length, elapsedMs: Math.round(result.elapsedMs), messages: `${sent}/${batches.length}` };
    if (sent === batches.length) this.logger.info(summary, 'job delivered');
    else this.logger.error(summary, 'job not delivered: its messages could not be posted');
  }

  private async deliverFailure(error: unknown): Promise<void> {
    let text: string;
    if (error instanceof JobCancelledError) {
      text =
        error.reason === 'user'
          ? '🛑 Cancelled.'
          : '🛑 Cancelled: the bot is shutting down. Please try again in a moment.';
      this.logger.info({ reason: error.reason }, 'job cancelled');
    } else {
      // Backends reject with JobFailedError, whose message is for the user (see failureForUser); anything else is ours to log.
      const failure = error instanceof JobFailedError ? error : failureForUser(error, this.job.id, this.logger);
      text = `❌ Generation failed: ${failure.message}`;
      this.logger.info({ reason: failure.message }, 'job failed');
    }
    await this.send({ ...finalText(this.job.options, text), files: [] }, 0);
  }

  /**
   * Sends part `part` of the job's last word (0: the reply itself, edited; later parts: follow-ups) through the
   * webhook while it is usable, else (or when the webhook fails) to the channel. When Discord refuses the message
   * it falls back to simpler forms: without the embed but with the images, then without the images but with the
   * embed (Reroll reads the settings from either), then plain text. Returns whether anything was posted.
   *
   * Repeating a post must not duplicate it: channel posts carry a nonce Discord enforces (a repeat returns the
   * message already made), and a failed edit of the reply is checked before anything else is tried.
   */
  private async send(message: OutgoingMessage, part: number): Promise<boolean> {
    const variants: OutgoingMessage[] = [message];
    let lastError: unknown;
    for (let variant = 0; variant < variants.length; variant++) {
      for (const route of this.routes()) {
        try {
          await this.sendVia(route, variants[variant], part);
          return true;
        } catch (error) {
          lastError = error;
          const kind = classifyFailure(error);
          this.logger.warn({ route, variant, error: describeError(error) }, 'sending the job message failed');
          if (kind === 'unavailable' && route === 'webhook' && (part === 0 ? await this.replyIsFinal() : await this.followUpPosted(variants[variant]))) {
            this.logger.info({ part }, 'the message went through although its answer was lost');
            return true;
          }
          if (kind === 'token' && route === 'webhook') this.webhookUsableUntil = 0;
          if (kind === 'token' || kind === 'unavailable') continue;
          break;
        }
      }
      if (variant === 0) variants.push(...fallbacks(message, lastError));
    }
    this.logger.error({ error: describeError(lastError) }, 'could not tell the user about their job in any way');
    return false;
  }

  private routes(): Route[] {
    return this.webhookUsable() ? ['webhook', 'channel'] : ['channel'];
  }

  private async sendVia(route: Route, message: OutgoingMessage, part: number): Promise<void> {
    if (route === 'channel') return this.sendToChannel(message, part);
    if (part === 0 || !this.repliedOnce) {
      await this.editThroughWebhook(message, this.interaction);
      this.repliedOnce = true;
    } else {
      await this.interaction.followUp({ ...toDiscord(message), allowedMentions: { parse: [] } });
    }
  }

  private async editThroughWebhook(message: OutgoingMessage, interaction: ReplyTarget): Promise<void> {
    await interaction.editReply({ ...toDiscord(message), allowedMentions: { parse: [] } });
  }

  /** The requester is mentioned (and pinged) on the first message only. */
  private async sendToChannel(message: OutgoingMessage, part: number): Promise<void> {
    const channel = await this.context.client.channels.fetch(this.interaction.channelId ?? '');
    if (!channel?.isSendable()) throw new Error(`channel ${this.interaction.channelId} cannot take messages`);
    await channel.send({
      ...toDiscord(message),
      content: [`<@${this.job.userId}>`, message.content].filter(Boolean).join(' '),
      allowedMentions: { parse: [], users: part === 0 ? [this.job.userId] : [] },
      nonce: messageNonce(this.job.id, part),
      enforceNonce: true,
    });
  }
}

/** How many later messages of the channel are searched for a follow-up whose answer was lost (Discord's most per request). */
const FOLLOW_UP_SEARCH_LIMIT = 100;

/** Discord's limit on a nonce. */
const NONCE_LENGTH = 25;

/** The same for every try of one part of one job (in this process or after a restart), so Discord keeps one message. */
function messageNonce(jobId: string, part: number): string {
  return createHash('sha256').update(`${jobId}/${part}`).digest('base64url').slice(0, NONCE_LENGTH);
}

/**
 * Simpler forms of a message Discord refused. When the upload is at fault (too large, no Attach Files) the embed
 * stays and the images go; otherwise the images stay and the embed goes first (their PNG parameters keep the
 * settings for Reroll). Plain text, without buttons, comes last.
 */
function fallbacks(message: OutgoingMessage, error: unknown): OutgoingMessage[] {
  const kind = classifyFailure(error);
  const why = failureText(error);
  const withNote = (note: string) => [message.content, `⚠️ ${note}`].filter(Boolean).join('\n');
  const hasFiles = message.files.length > 0;
  const hasEmbed = message.embeds.length > 0;
  const uploadAtFault = kind === 'permissions' || kind === 'too_large';
  // Trying again helps unless the channel refuses uploads (or this one): the reason then says what would help.
  const advice = (text: string) => (uploadAtFault ? why : `${why} ${text}`);
  const variants: OutgoingMessage[] = [];
  if (hasFiles && hasEmbed && !uploadAtFault) variants.push({ ...message, embeds: [], content: withNote(`${why} Here is the image without its settings card.`) });
  if (hasFiles) variants.push({ ...message, files: [], content: withNote(advice('Press 🎲 Reroll to try again.')) });
  if (hasFiles || hasEmbed || message.components.length > 0) variants.push({ content: withNote(advice('Please run /imagine again.')), embeds: [], components: [], files: [] });
  return variants;
}

function toDiscord(message: OutgoingMessage): BaseMessageOptions {
  return {
    content: message.content,
    embeds: message.embeds,
    components: message.components,
    files: message.files.map((file) => new AttachmentBuilder(file.data, { name: file.name })),
  };
}
