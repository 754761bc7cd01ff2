import {
  InteractionWebhook,
  type Client,
  type InteractionReplyOptions,
  type Message,
  type RepliableInteraction,
  type WebhookMessageEditOptions,
} from 'discord.js';
import type { DeliveryRecord } from '../queue/types.ts';
import { DEFAULT_ATTACHMENT_LIMIT } from './attachments.ts';

/**
 * What a JobDelivery needs of the interaction it answers: a live one, or one rebuilt from the delivery record
 * a queue kept with the job, so a restarted bot can still edit the reply and send follow-ups through its token.
 */
export interface ReplyTarget {
  readonly channelId: string | null;
  readonly attachmentSizeLimit: number;
  /** When the interaction's token was issued (ms since the epoch): it works for INTERACTION_TOKEN_TTL_MS from then. */
  readonly tokenIssuedAt: number;
  editReply(message: WebhookMessageEditOptions): Promise<unknown>;
  followUp(message: InteractionReplyOptions): Promise<unknown>;
  /** The reply as Discord has it now. */
  fetchReply(): Promise<Message>;
}

/** Discord refuses acknowledgements after this long, so an acknowledged interaction is at most this old. */
const ACKNOWLEDGE_WINDOW_MS = 3_000;

export function liveTarget(interaction: RepliableInteraction): ReplyTarget {
  return {
    channelId: interaction.channelId,
    attachmentSizeLimit: interaction.attachmentSizeLimit ?? DEFAULT_ATTACHMENT_LIMIT,
    tokenIssuedAt: issuedAt(interaction),
    editReply: (message) => interaction.editReply(message),
    followUp: (message) => interaction.followUp(message),
    fetchReply: () => interaction.fetchReply(),
  };
}

/** The plain data a queue stores with the job (the token included: keep the queue's store private). */
export function deliveryRecord(interaction: RepliableInteraction, target: ReplyTarget): DeliveryRecord {
  return {
    applicationId: interaction.applicationId,
    token: interaction.token,
    tokenIssuedAt: target.tokenIssuedAt,
    channelId: target.channelId,
    attachmentSizeLimit: target.attachmentSizeLimit,
  };
}

/** The reply a delivery record points at, reached through the interaction's webhook; undefined when the record is not one of ours. */
export function storedTarget(client: Client<true>, record: DeliveryRecord): ReplyTarget | undefined {
  const { applicationId, token, tokenIssuedAt, channelId, attachmentSizeLimit } = record;
  if (typeof applicationId !== 'string' || typeof token !== 'string' || typeof tokenIssuedAt !== 'number') return undefined;
  if (typeof attachmentSizeLimit !== 'number' || (channelId !== null && typeof channelId !== 'string')) return undefined;
  const webhook = new InteractionWebhook(client, applicationId, token);
  return {
    channelId,
    attachmentSizeLimit,
    tokenIssuedAt,
    editReply: (message) => webhook.editMessage('@original', message),
    followUp: (message) => webhook.send(message),
    fetchReply: () => webhook.fetchMessage('@original'),
  };
}

/**
 * When the interaction's token was issued: its snowflake time, kept within what an acknowledged
 * interaction allows, so an API with odd ids or a skewed clock cannot make a fresh token look expired.
 */
function issuedAt(interaction: RepliableInteraction): number {
  const now = Date.now();
  return Math.min(Math.max(interaction.createdTimestamp, now - ACKNOWLEDGE_WINDOW_MS), now);
}
