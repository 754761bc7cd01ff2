import { MessageFlags, MessageType, type APIEmbed, type APIMessage, type APIMessageInteractionMetadata, type APIMessageTopLevelComponent } from 'discord.js';
import { DiscordErrors, FormErrors } from './errors.ts';
import type { SnowflakeGenerator } from './ids.ts';
import type { AttachmentReference, MessagePayload } from './message-payload.ts';
import type { UploadedFile } from './request-body.ts';
import type { FakeUser, World } from './world.ts';

/** A file attached to a stored message, with the exact bytes the bot uploaded. */
export interface StoredAttachment {
  readonly id: string;
  readonly filename: string;
  readonly contentType: string | undefined;
  readonly size: number;
  readonly data: Buffer;
  readonly description: string | undefined;
  /** Served by the fake: GET it to download `data`. */
  readonly url: string;
}

/** The visible state of a message at one moment (after its creation or after one edit). */
export interface MessageRevision {
  readonly at: Date;
  readonly content: string;
  readonly embeds: readonly APIEmbed[];
  readonly components: readonly APIMessageTopLevelComponent[];
  readonly attachments: readonly StoredAttachment[];
  readonly flags: number;
}

/** How the message came to be. */
export type MessageOrigin =
  | { readonly kind: 'channel' }
  | { readonly kind: 'interaction-response'; readonly interactionId: string }
  | { readonly kind: 'followup'; readonly interactionId: string };

/** A message as the fake stores it: current state, every earlier revision, and where it came from. */
export interface StoredMessage extends MessageRevision {
  readonly id: string;
  readonly channelId: string;
  readonly guildId: string | null;
  readonly author: FakeUser;
  readonly type: MessageType;
  readonly origin: MessageOrigin;
  readonly createdAt: Date;
  readonly editedAt: Date | null;
  readonly deletedAt: Date | null;
  /** Creation first, then one entry per edit; the last entry equals the current state. */
  readonly revisions: readonly MessageRevision[];
  readonly interactionMetadata: APIMessageInteractionMetadata | undefined;
  /** The nonce the bot created it with, if any. */
  readonly nonce: string | undefined;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export interface NewMessage {
  readonly channelId: string;
  readonly guildId: string | null;
  readonly author: FakeUser;
  readonly type: MessageType;
  readonly origin: MessageOrigin;
  /** Flags the server sets regardless of the payload (Ephemeral for an ephemeral defer, Loading while deferred). */
  readonly forcedFlags?: number;
  /** A deferred response's "is thinking…" placeholder, which may be empty. */
  readonly placeholder?: boolean;
  readonly interactionMetadata?: APIMessageInteractionMetadata;
  readonly nonce?: string;
}

// Flags a bot may set when creating a message; Ephemeral only counts on interaction responses.
const CREATE_FLAGS = MessageFlags.Ephemeral | MessageFlags.SuppressEmbeds | MessageFlags.SuppressNotifications | MessageFlags.IsComponentsV2;
const EDIT_FLAGS = MessageFlags.SuppressEmbeds | MessageFlags.IsComponentsV2;

function fileIndex(file: UploadedFile, position: number): string {
  return /^files\[(\d+)\]$/.exec(file.field)?.[1] ?? String(position);
}

export class MessageStore {
  readonly #messages = new Map<string, Mutable<StoredMessage>>();
  readonly #commandUploads = new Map<string, { channelId: string; attachment: StoredAttachment }>();
  readonly #ids: SnowflakeGenerator;
  readonly #world: World;
  readonly #baseUrl: string;

  constructor(ids: SnowflakeGenerator, world: World, baseUrl: string) {
    this.#ids = ids;
    this.#world = world;
    this.#baseUrl = baseUrl;
  }

  /** All messages ever created, in creation order, deleted ones included. */
  all(): StoredMessage[] {
    return [...this.#messages.values()];
  }

  get(id: string): StoredMessage | undefined {
    return this.#messages.get(id);
  }

  /** The live (not deleted) message with this id, or Discord's 10008 Unknown Message. */
  require(id: string): StoredMessage {
    const message = this.#messages.get(id);
    if (!message || message.deletedAt) throw DiscordErrors.unknownMessage();
    return message;
  }

  /**
   * A file a user attached to a command (an attachment option): Discord uploads it before the interaction, and its
   * CDN serves it whether or not a message ever shows it.
   */
  commandAttachment(channelId: string, upload: UploadedFile): StoredAttachment {
    const stored = this.#storeUpload(upload, channelId, undefined);
    this.#commandUploads.set(stored.id, { channelId, attachment: stored });
    return stored;
  }

  attachment(channelId: string, attachmentId: string): StoredAttachment | undefined {
    const uploaded = this.#commandUploads.get(attachmentId);
    if (uploaded?.channelId === channelId) return uploaded.attachment;
    for (const message of this.#messages.values()) {
      // Discord's CDN stops serving a deleted message's files.
      if (message.channelId !== channelId || message.deletedAt) continue;
      for (const revision of message.revisions) {
        const found = revision.attachments.find((a) => a.id === attachmentId);
        if (found) return found;
      }
    }
    return undefined;
  }

  /** Creates a message; throws Discord's errors for empty or oversized messages. */
  create(spec: NewMessage, payload: MessagePayload, files: readonly UploadedFile[], attachmentSizeLimit: number): StoredMessage {
    this.#checkFileSizes(files, attachmentSizeLimit);
    const attachments = this.#resolveAttachments([], payload.attachments, files, spec.channelId);
    const content = payload.content ?? '';
    const embeds = payload.embeds ?? [];
    const components = payload.components ?? [];
    if (!spec.placeholder && content === '' && embeds.length === 0 && components.length === 0 && attachments.length === 0) {
      throw DiscordErrors.emptyMessage();
    }
    const now = new Date();
    const flags = ((payload.flags ?? 0) & CREATE_FLAGS) | (spec.forcedFlags ?? 0);
    const revision: MessageRevision = { at: now, content, embeds, components, attachments, flags };
    const message: Mutable<StoredMessage> = {
      ...revision,
      id: this.#ids.next(),
      channelId: spec.channelId,
      guildId: spec.guildId,
      author: spec.author,
      type: spec.type,
      origin: spec.origin,
      createdAt: now,
      editedAt: null,
      deletedAt: null,
      revisions: [revision],
      interactionMetadata: spec.interactionMetadata,
      nonce: spec.nonce,
    };
    this.#messages.set(message.id, message);
    return message;
  }

  /**
   * Applies an edit: fields that are absent stay, `null` clears. Ephemeral cannot change; Loading is removed
   * (the first edit of a deferred response is what replaces "is thinking…").
   */
  edit(id: string, payload: MessagePayload, files: readonly UploadedFile[], attachmentSizeLimit: number): StoredMessage {
    const message = this.#messages.get(id);
    if (!message || message.deletedAt) throw DiscordErrors.unknownMessage();
    this.#checkFileSizes(files, attachmentSizeLimit);
    const attachments =
      payload.attachments === undefined
        ? [...message.attachments, ...this.#resolveAttachments([], undefined, files, message.channelId)]
        : this.#resolveAttachments(message.attachments, payload.attachments ?? [], files, message.channelId);
    const keptFlags = message.flags & ~EDIT_FLAGS & ~MessageFlags.Loading;
    const flags = payload.flags === undefined || payload.flags === null ? message.flags & ~MessageFlags.Loading : keptFlags | (payload.flags & EDIT_FLAGS);
    const revision: MessageRevision = {
      at: new Date(),
      content: payload.content === undefined ? message.content : (payload.content ?? ''),
      embeds: payload.embeds === undefined ? message.embeds : (payload.embeds ?? []),
      components: payload.components === undefined ? message.components : (payload.components ?? []),
      attachments,
      flags,
    };
    Object.assign(message, revision, { editedAt: revision.at });
    message.revisions = [...message.revisions, revision];
    return message;
  }

  delete(id: string): void {
    const message = this.#messages.get(id);
    if (!message || message.deletedAt) throw DiscordErrors.unknownMessage();
    message.deletedAt = new Date();
  }

  #checkFileSizes(files: readonly UploadedFile[], limit: number): void {
    if (files.some((file) => file.data.length > limit)) throw DiscordErrors.entityTooLarge();
  }

  /**
   * Discord's attachment rules: without an `attachments` array every upload is added; with one, the result is
   * exactly the listed entries (existing ids kept, `files[n]` indexes added) plus uploads the list did not mention.
   */
  #resolveAttachments(
    current: readonly StoredAttachment[],
    references: readonly AttachmentReference[] | null | undefined,
    files: readonly UploadedFile[],
    channelId: string,
  ): StoredAttachment[] {
    const uploads = new Map(files.map((file, position) => [fileIndex(file, position), file]));
    const result: StoredAttachment[] = [];
    const errors = new FormErrors();
    (references ?? []).forEach((reference, index) => {
      const existing = current.find((a) => a.id === reference.id);
      const upload = uploads.get(reference.id);
      if (existing) {
        result.push(reference.description === undefined ? existing : { ...existing, description: reference.description });
      } else if (upload) {
        result.push(this.#storeUpload(upload, channelId, reference));
        uploads.delete(reference.id);
      } else {
        errors.add(['attachments', index, 'id'], 'ATTACHMENT_NOT_FOUND', `Attachment "${reference.id}" is neither an attachment of this message nor an uploaded files[n].`);
      }
    });
    errors.throwIfAny();
    for (const upload of uploads.values()) result.push(this.#storeUpload(upload, channelId, undefined));
    if (result.length > 10) throw DiscordErrors.invalidFormBody({ attachments: { _errors: [{ code: 'BASE_TYPE_MAX_LENGTH', message: 'Must be 10 or fewer in length.' }] } });
    return result;
  }

  #storeUpload(file: UploadedFile, channelId: string, reference: AttachmentReference | undefined): StoredAttachment {
    const id = this.#ids.next();
    const filename = reference?.filename ?? file.filename;
    return {
      id,
      filename,
      contentType: file.contentType,
      size: file.data.length,
      data: file.data,
      description: reference?.description,
      url: `${this.#baseUrl}/attachments/${channelId}/${id}/${encodeURIComponent(filename)}`,
    };
  }

  /** The message as Discord's API returns it. */
  toApi(message: StoredMessage): APIMessage {
    return {
      id: message.id,
      channel_id: message.channelId,
      author: this.#world.apiUser(message.author),
      content: message.content,
      timestamp: message.createdAt.toISOString(),
      edited_timestamp: message.editedAt?.toISOString() ?? null,
      tts: false,
      mention_everyone: false,
      mentions: [],
      mention_roles: [],
      attachments: message.attachments.map((a) => ({
        id: a.id,
        filename: a.filename,
        size: a.size,
        url: a.url,
        proxy_url: a.url,
        ...(a.contentType === undefined ? {} : { content_type: a.contentType }),
        ...(a.description === undefined ? {} : { description: a.description }),
      })),
      embeds: [...message.embeds],
      components: [...message.components],
      pinned: false,
      type: message.type,
      flags: message.flags,
      ...(message.origin.kind === 'channel' ? {} : { webhook_id: this.#world.applicationId, application_id: this.#world.applicationId }),
      ...(message.interactionMetadata ? { interaction_metadata: message.interactionMetadata } : {}),
      ...(message.nonce === undefined ? {} : { nonce: message.nonce }),
    };
  }
}
