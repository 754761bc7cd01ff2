import { MessageFlags, MessageType, PermissionFlagsBits } from 'discord.js';
import type { CommandRegistry } from './commands.ts';
import { DiscordErrors, FormErrors } from './errors.ts';
import { readMessagePayload, validateMessagePayload, type MessagePayload } from './message-payload.ts';
import type { MessageStore, StoredMessage } from './messages.ts';
import type { ParsedBody } from './request-body.ts';
import type { InteractionResponder } from './responses.ts';
import type { RouteDefinition } from './router.ts';
import { DEFAULT_ATTACHMENT_SIZE_LIMIT } from './interactions.ts';
import type { FakeChannel, World } from './world.ts';

export interface RestDeps {
  readonly world: World;
  readonly commands: CommandRegistry;
  readonly messages: MessageStore;
  readonly responder: InteractionResponder;
  readonly gatewayUrl: string;
}

const ok = (json: unknown) => ({ status: 200, json });
const noContent = { status: 204 } as const;
/** How long Discord remembers a message's nonce for enforce_nonce ("the past few minutes"). */
const NONCE_MEMORY_MS = 5 * 60_000;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The nonce of a message create body (up to 25 characters, or an integer) and whether the bot asked to enforce it. */
function readNonce(json: unknown): { nonce: string | undefined; enforce: boolean } {
  const body = isRecord(json) ? json : {};
  const { nonce } = body;
  if (nonce !== undefined && nonce !== null && !(typeof nonce === 'string' ? [...nonce].length <= 25 : Number.isSafeInteger(nonce))) {
    throw DiscordErrors.invalidFormBody({ nonce: { _errors: [{ code: 'BASE_TYPE_MAX_LENGTH', message: 'Must be 25 or fewer in length.' }] } });
  }
  return { nonce: nonce === undefined || nonce === null ? undefined : String(nonce), enforce: body.enforce_nonce === true };
}

function channelPayload(body: ParsedBody): MessagePayload {
  const errors = new FormErrors();
  const payload = readMessagePayload(body.json ?? {}, errors);
  validateMessagePayload(payload, errors);
  errors.throwIfAny();
  // Only interaction responses can be ephemeral.
  return { ...payload, flags: payload.flags === undefined || payload.flags === null ? payload.flags : payload.flags & ~MessageFlags.Ephemeral };
}

/** Every REST route the fake answers (paths are below /api/v10). */
export function restRoutes(deps: RestDeps): RouteDefinition[] {
  const { world, commands, messages, responder } = deps;

  const application = (id: string | undefined): void => {
    if (id !== world.applicationId) throw DiscordErrors.unknownApplication();
  };
  // Deploying commands to a guild the bot is not in answers Missing Access.
  const guildOfBot = (id: string | undefined): string => {
    if (id !== world.guildId) throw DiscordErrors.missingAccess();
    return id;
  };
  const channel = (id: string | undefined) => {
    const found = id === undefined ? undefined : world.channel(id);
    if (!found) throw DiscordErrors.unknownChannel();
    return found;
  };
  // Guild channels check the bot's permissions there; a DM with the bot has no such limits.
  const requirePermissions = (target: FakeChannel, ...needed: bigint[]): void => {
    if (target.guildId === null) return;
    const granted = world.appPermissionsIn(target.id);
    if ((granted & PermissionFlagsBits.ViewChannel) === 0n) throw DiscordErrors.missingAccess();
    if (needed.some((permission) => (granted & permission) === 0n)) throw DiscordErrors.missingPermissions();
  };
  // Ephemeral messages only exist for the interaction webhook, not in the channel.
  const channelMessage = (channelId: string | undefined, messageId: string | undefined): StoredMessage => {
    requirePermissions(channel(channelId));
    const message = messageId === undefined ? undefined : messages.get(messageId);
    if (!message || message.deletedAt || message.channelId !== channelId || (message.flags & MessageFlags.Ephemeral) !== 0) {
      throw DiscordErrors.unknownMessage();
    }
    return message;
  };

  return [
    { method: 'GET', template: '/gateway', auth: 'none', handle: () => ok({ url: deps.gatewayUrl }) },
    {
      method: 'GET',
      template: '/gateway/bot',
      auth: 'bot',
      handle: () =>
        ok({
          url: deps.gatewayUrl,
          shards: 1,
          session_start_limit: { total: 1000, remaining: 999, reset_after: 14_400_000, max_concurrency: 1 },
        }),
    },
    { method: 'GET', template: '/users/@me', auth: 'bot', handle: () => ok(world.apiUser(world.botUser)) },
    {
      method: 'GET',
      template: '/applications/@me',
      auth: 'bot',
      handle: () =>
        ok({
          id: world.applicationId,
          name: world.botUser.username,
          icon: null,
          description: '',
          summary: '',
          bot_public: false,
          bot_require_code_grant: false,
          bot: world.apiUser(world.botUser),
          owner: world.apiUser(world.owner),
          team: null,
          verify_key: '0'.repeat(64),
          flags: 0,
        }),
    },
    {
      method: 'GET',
      template: '/applications/:application/commands',
      auth: 'bot',
      handle: ({ params }) => (application(params.application), ok(commands.list(null))),
    },
    {
      method: 'PUT',
      template: '/applications/:application/commands',
      auth: 'bot',
      handle: ({ params, body }) => (application(params.application), ok(commands.overwrite(null, body.json))),
    },
    {
      method: 'POST',
      template: '/applications/:application/commands',
      auth: 'bot',
      handle: ({ params, body }) => {
        application(params.application);
        const { command, created } = commands.upsert(null, body.json);
        return { status: created ? 201 : 200, json: command };
      },
    },
    {
      method: 'GET',
      template: '/applications/:application/commands/:command',
      auth: 'bot',
      handle: ({ params }) => (application(params.application), ok(commands.get(null, params.command))),
    },
    {
      method: 'GET',
      template: '/applications/:application/guilds/:guild/commands',
      auth: 'bot',
      handle: ({ params }) => (application(params.application), ok(commands.list(guildOfBot(params.guild)))),
    },
    {
      method: 'PUT',
      template: '/applications/:application/guilds/:guild/commands',
      auth: 'bot',
      handle: ({ params, body }) => (application(params.application), ok(commands.overwrite(guildOfBot(params.guild), body.json))),
    },
    {
      method: 'POST',
      template: '/applications/:application/guilds/:guild/commands',
      auth: 'bot',
      handle: ({ params, body }) => {
        application(params.application);
        const { command, created } = commands.upsert(guildOfBot(params.guild), body.json);
        return { status: created ? 201 : 200, json: command };
      },
    },
    {
      method: 'POST',
      template: '/interactions/:interaction/:token/callback',
      auth: 'none',
      handle: ({ params, query, body }) => responder.callback(params.interaction, params.token, body, query.get('with_response') === 'true'),
    },
    {
      method: 'POST',
      template: '/webhooks/:application/:token',
      auth: 'none',
      handle: ({ params, body }) => responder.followup(responder.webhookInteraction(params.application, params.token), body),
    },
    ...(['@original', ':message'] as const).flatMap((ref): RouteDefinition[] => {
      const template = `/webhooks/:application/:token/messages/${ref}`;
      const target = (params: Readonly<Record<string, string>>) => (ref === '@original' ? '@original' : params.message);
      return [
        {
          method: 'GET',
          template,
          auth: 'none',
          handle: ({ params }) => responder.getMessage(responder.webhookInteraction(params.application, params.token), target(params)),
        },
        {
          method: 'PATCH',
          template,
          auth: 'none',
          handle: ({ params, body }) => responder.editMessage(responder.webhookInteraction(params.application, params.token), target(params), body),
        },
        {
          method: 'DELETE',
          template,
          auth: 'none',
          handle: ({ params }) => responder.deleteMessage(responder.webhookInteraction(params.application, params.token), target(params)),
        },
      ];
    }),
    { method: 'GET', template: '/channels/:channel', auth: 'bot', handle: ({ params }) => ok(world.apiChannel(channel(params.channel))) },
    {
      method: 'POST',
      template: '/channels/:channel/messages',
      auth: 'bot',
      handle: ({ params, body }) => {
        const target = channel(params.channel);
        requirePermissions(target, PermissionFlagsBits.SendMessages, ...(body.files.length > 0 ? [PermissionFlagsBits.AttachFiles] : []));
        const { nonce, enforce } = readNonce(body.json);
        // enforce_nonce: the same author's message with this nonce from the last few minutes is returned, not created again.
        const earlier = enforce
          ? messages
              .all()
              .find((m) => m.nonce === nonce && m.channelId === target.id && m.author.id === world.botUser.id && !m.deletedAt && Date.now() - m.createdAt.getTime() < NONCE_MEMORY_MS)
          : undefined;
        if (earlier) return ok(messages.toApi(earlier));
        const created = messages.create(
          { channelId: target.id, guildId: target.guildId, author: world.botUser, type: MessageType.Default, origin: { kind: 'channel' }, nonce },
          channelPayload(body),
          body.files,
          DEFAULT_ATTACHMENT_SIZE_LIMIT,
        );
        return ok(messages.toApi(created));
      },
    },
    {
      method: 'GET',
      template: '/channels/:channel/messages',
      auth: 'bot',
      // Newest first, as Discord lists them; `after` a message id, at most `limit` (1-100, default 50).
      handle: ({ params, query }) => {
        const target = channel(params.channel);
        requirePermissions(target, PermissionFlagsBits.ReadMessageHistory);
        const after = BigInt(query.get('after') ?? '0');
        const limit = Math.min(100, Math.max(1, Number(query.get('limit') ?? 50)));
        const listed = messages
          .all()
          .filter((m) => m.channelId === target.id && !m.deletedAt && (m.flags & MessageFlags.Ephemeral) === 0 && BigInt(m.id) > after)
          .slice(0, limit)
          .reverse();
        return ok(listed.map((m) => messages.toApi(m)));
      },
    },
    {
      method: 'GET',
      template: '/channels/:channel/messages/:message',
      auth: 'bot',
      handle: ({ params }) => {
        requirePermissions(channel(params.channel), PermissionFlagsBits.ReadMessageHistory);
        return ok(messages.toApi(channelMessage(params.channel, params.message)));
      },
    },
    {
      method: 'PATCH',
      template: '/channels/:channel/messages/:message',
      auth: 'bot',
      handle: ({ params, body }) => {
        const message = channelMessage(params.channel, params.message);
        if (message.author.id !== world.botUser.id) throw DiscordErrors.cannotEditOthersMessage();
        return ok(messages.toApi(messages.edit(message.id, channelPayload(body), body.files, DEFAULT_ATTACHMENT_SIZE_LIMIT)));
      },
    },
    {
      method: 'DELETE',
      template: '/channels/:channel/messages/:message',
      auth: 'bot',
      handle: ({ params }) => (messages.delete(channelMessage(params.channel, params.message).id), noContent),
    },
    {
      method: 'GET',
      template: '/guilds/:guild',
      auth: 'bot',
      handle: ({ params }) => {
        if (params.guild !== world.guildId) throw DiscordErrors.unknownGuild();
        return ok(world.apiGuild());
      },
    },
    {
      method: 'GET',
      template: '/guilds/:guild/members/:user',
      auth: 'bot',
      handle: ({ params }) => {
        if (params.guild !== world.guildId) throw DiscordErrors.unknownGuild();
        const user = world.userById(params.user);
        if (!user) throw DiscordErrors.unknownMember();
        return ok(world.apiMember(user));
      },
    },
  ];
}
