import { InteractionResponseType, InteractionType, MessageFlags, MessageType } from 'discord.js';
import { DiscordErrors, FormErrors } from './errors.ts';
import type { InteractionLog, InteractionState } from './interactions.ts';
import { readMessagePayload, validateMessagePayload, type MessagePayload } from './message-payload.ts';
import type { MessageStore, StoredMessage } from './messages.ts';
import type { ParsedBody } from './request-body.ts';
import type { World } from './world.ts';

/** What a route answers: a status and, unless 204, a JSON body. */
export interface RouteResult {
  readonly status: number;
  readonly json?: unknown;
}

export interface ResponderDeps {
  readonly interactions: InteractionLog;
  readonly messages: MessageStore;
  readonly world: World;
  /** Discord's 3 s: callbacks later than this get 404 Unknown interaction. */
  readonly callbackDeadlineMs: number;
}

/** Which callback types Discord accepts for which interaction. */
const ALLOWED_CALLBACKS: Record<InteractionState['kind'], readonly InteractionResponseType[]> = {
  command: [InteractionResponseType.ChannelMessageWithSource, InteractionResponseType.DeferredChannelMessageWithSource, InteractionResponseType.Modal],
  button: [
    InteractionResponseType.ChannelMessageWithSource,
    InteractionResponseType.DeferredChannelMessageWithSource,
    InteractionResponseType.DeferredMessageUpdate,
    InteractionResponseType.UpdateMessage,
    InteractionResponseType.Modal,
  ],
  'modal-submit': [
    InteractionResponseType.ChannelMessageWithSource,
    InteractionResponseType.DeferredChannelMessageWithSource,
    InteractionResponseType.DeferredMessageUpdate,
    InteractionResponseType.UpdateMessage,
  ],
  autocomplete: [InteractionResponseType.ApplicationCommandAutocompleteResult],
};

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function readPayload(body: unknown, path: (string | number)[]): MessagePayload {
  const errors = new FormErrors();
  const payload = readMessagePayload(body ?? {}, errors, path);
  validateMessagePayload(payload, errors, path);
  errors.throwIfAny();
  return payload;
}

function validateChoices(data: unknown): void {
  const errors = new FormErrors();
  const choices = isRecord(data) ? data.choices : undefined;
  if (!Array.isArray(choices)) errors.add(['data', 'choices'], 'BASE_TYPE_REQUIRED', 'This field is required');
  else {
    if (choices.length > 25) errors.add(['data', 'choices'], 'BASE_TYPE_MAX_LENGTH', 'Must be 25 or fewer in length.');
    choices.forEach((choice: unknown, index) => {
      const ok =
        isRecord(choice) &&
        typeof choice.name === 'string' &&
        choice.name.length >= 1 &&
        choice.name.length <= 100 &&
        ((typeof choice.value === 'string' && choice.value.length <= 100) || typeof choice.value === 'number');
      if (!ok) errors.add(['data', 'choices', index], 'AUTOCOMPLETE_CHOICE_INVALID', 'Choices need a 1–100 character name and a string (≤100) or number value.');
    });
  }
  errors.throwIfAny();
}

function validateModal(data: unknown): void {
  const errors = new FormErrors();
  if (!isRecord(data)) errors.add(['data'], 'BASE_TYPE_REQUIRED', 'This field is required');
  else {
    if (typeof data.custom_id !== 'string' || data.custom_id.length < 1 || data.custom_id.length > 100) {
      errors.add(['data', 'custom_id'], 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 100 in length.');
    }
    if (typeof data.title !== 'string' || data.title.length < 1 || data.title.length > 45) {
      errors.add(['data', 'title'], 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 45 in length.');
    }
    if (!Array.isArray(data.components) || data.components.length < 1 || data.components.length > 5) {
      errors.add(['data', 'components'], 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 5 in length.');
    }
  }
  errors.throwIfAny();
}

/** Answers the interaction callback and the interaction webhook routes, with Discord's rules and errors. */
export class InteractionResponder {
  readonly #deps: ResponderDeps;

  constructor(deps: ResponderDeps) {
    this.#deps = deps;
  }

  /** POST /interactions/:id/:token/callback */
  callback(interactionId: string, token: string, body: ParsedBody, withResponse: boolean): RouteResult {
    const state = this.#deps.interactions.findById(interactionId);
    if (!state || state.token !== token) throw DiscordErrors.unknownInteraction();
    const latencyMs = Date.now() - state.dispatchedAt.getTime();
    state.callbackLatencyMs ??= latencyMs;
    if (state.callback) throw DiscordErrors.alreadyAcknowledged();
    if (latencyMs > this.#deps.callbackDeadlineMs) throw DiscordErrors.unknownInteraction();

    const json = isRecord(body.json) ? body.json : {};
    const type = json.type;
    if (typeof type !== 'number' || !ALLOWED_CALLBACKS[state.kind].includes(type)) {
      throw DiscordErrors.invalidFormBody({
        type: { _errors: [{ code: 'INTERACTION_RESPONSE_TYPE_INVALID', message: `Callback type ${String(type)} is not valid for a ${state.kind} interaction.` }] },
      });
    }
    const data = json.data;
    const message = this.#applyCallback(state, type, data, body);
    state.callback = { type, data, at: new Date(), latencyMs };
    if (!withResponse) return { status: 204 };
    return {
      status: 200,
      json: {
        interaction: {
          id: state.id,
          type: state.type,
          ...(message
            ? {
                response_message_id: message.id,
                response_message_loading: (message.flags & MessageFlags.Loading) !== 0,
                response_message_ephemeral: (message.flags & MessageFlags.Ephemeral) !== 0,
              }
            : {}),
        },
        resource: { type, ...(message ? { message: this.#deps.messages.toApi(message) } : {}) },
      },
    };
  }

  /** The interaction behind a webhook token, or Discord's answer for an unknown (10015) or expired (50027) token. */
  webhookInteraction(applicationId: string, token: string): InteractionState {
    const state = this.#deps.interactions.findByToken(token);
    if (!state || applicationId !== this.#deps.world.applicationId) throw DiscordErrors.unknownWebhook();
    if (Date.now() >= state.tokenExpiresAt.getTime()) throw DiscordErrors.invalidWebhookToken();
    // The webhook only exists once the interaction has been acknowledged.
    if (!state.callback) throw DiscordErrors.unknownWebhook();
    return state;
  }

  /** GET /webhooks/:app/:token/messages/(@original|:id) */
  getMessage(state: InteractionState, messageRef: string): RouteResult {
    return { status: 200, json: this.#deps.messages.toApi(this.#ownMessage(state, messageRef)) };
  }

  /** PATCH /webhooks/:app/:token/messages/(@original|:id) */
  editMessage(state: InteractionState, messageRef: string, body: ParsedBody): RouteResult {
    const target = this.#ownMessage(state, messageRef);
    const edited = this.#deps.messages.edit(target.id, readPayload(body.json, []), body.files, state.attachmentSizeLimit);
    return { status: 200, json: this.#deps.messages.toApi(edited) };
  }

  /** DELETE /webhooks/:app/:token/messages/(@original|:id) */
  deleteMessage(state: InteractionState, messageRef: string): RouteResult {
    this.#deps.messages.delete(this.#ownMessage(state, messageRef).id);
    return { status: 204 };
  }

  /** POST /webhooks/:app/:token — after a deferred reply the first followup replaces the "thinking" message. */
  followup(state: InteractionState, body: ParsedBody): RouteResult {
    const payload = readPayload(body.json, []);
    const { messages } = this.#deps;
    const original = state.originalMessageId === undefined ? undefined : messages.get(state.originalMessageId);
    if (original && !original.deletedAt && (original.flags & MessageFlags.Loading) !== 0) {
      const resolved = messages.edit(original.id, { ...payload, flags: undefined }, body.files, state.attachmentSizeLimit);
      return { status: 200, json: messages.toApi(resolved) };
    }
    const created = messages.create(
      {
        channelId: state.channelId,
        guildId: state.guildId,
        author: this.#deps.world.botUser,
        type: this.#responseMessageType(state),
        origin: { kind: 'followup', interactionId: state.id },
        interactionMetadata: this.#deps.interactions.metadataFor(state, state.originalMessageId),
      },
      payload,
      body.files,
      state.attachmentSizeLimit,
    );
    state.followupMessageIds = [...state.followupMessageIds, created.id];
    return { status: 200, json: messages.toApi(created) };
  }

  #applyCallback(state: InteractionState, type: InteractionResponseType, data: unknown, body: ParsedBody): StoredMessage | undefined {
    const { messages } = this.#deps;
    switch (type) {
      case InteractionResponseType.ChannelMessageWithSource:
        return this.#createOriginal(state, readPayload(data, ['data']), body, 0);
      case InteractionResponseType.DeferredChannelMessageWithSource: {
        const flags = isRecord(data) && typeof data.flags === 'number' ? data.flags : 0;
        return this.#createOriginal(state, {}, { json: undefined, files: [] }, MessageFlags.Loading | (flags & MessageFlags.Ephemeral));
      }
      case InteractionResponseType.DeferredMessageUpdate:
      case InteractionResponseType.UpdateMessage: {
        const source = state.sourceMessageId === undefined ? undefined : messages.get(state.sourceMessageId);
        if (!source || source.deletedAt) throw DiscordErrors.unknownMessage();
        state.originalMessageId = source.id;
        if (type === InteractionResponseType.DeferredMessageUpdate) return source;
        return messages.edit(source.id, readPayload(data, ['data']), body.files, state.attachmentSizeLimit);
      }
      case InteractionResponseType.ApplicationCommandAutocompleteResult:
        validateChoices(data);
        return undefined;
      case InteractionResponseType.Modal:
        validateModal(data);
        return undefined;
      default:
        throw new Error(`unhandled callback type ${type}`);
    }
  }

  #createOriginal(state: InteractionState, payload: MessagePayload, body: ParsedBody, forcedFlags: number): StoredMessage {
    const message = this.#deps.messages.create(
      {
        channelId: state.channelId,
        guildId: state.guildId,
        author: this.#deps.world.botUser,
        type: this.#responseMessageType(state),
        origin: { kind: 'interaction-response', interactionId: state.id },
        forcedFlags,
        placeholder: (forcedFlags & MessageFlags.Loading) !== 0,
        interactionMetadata: this.#deps.interactions.metadataFor(state),
      },
      payload,
      body.files,
      state.attachmentSizeLimit,
    );
    state.originalMessageId = message.id;
    return message;
  }

  #responseMessageType(state: InteractionState): MessageType {
    return state.type === InteractionType.ApplicationCommand ? MessageType.ChatInputCommand : MessageType.Default;
  }

  /** A message this interaction's webhook may touch: its original response or one of its followups. */
  #ownMessage(state: InteractionState, messageRef: string): StoredMessage {
    const id = messageRef === '@original' ? state.originalMessageId : messageRef;
    if (id === undefined || (id !== state.originalMessageId && !state.followupMessageIds.includes(id))) {
      throw DiscordErrors.unknownMessage();
    }
    return this.#deps.messages.require(id);
  }
}

