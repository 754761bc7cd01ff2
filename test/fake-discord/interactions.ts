import {
  ApplicationCommandOptionType,
  ApplicationCommandType,
  ButtonStyle,
  ComponentType,
  GatewayDispatchEvents,
  InteractionContextType,
  InteractionResponseType,
  InteractionType,
  Locale,
  type APIApplicationCommand,
  type APIApplicationCommandOption,
  type APIBaseInteraction,
  type APIMessageInteractionMetadata,
} from 'discord.js';
import type { CommandRegistry } from './commands.ts';
import { makeInteractionToken, type SnowflakeGenerator } from './ids.ts';
import { characterCount, walkComponents } from './message-payload.ts';
import type { MessageStore, StoredMessage } from './messages.ts';
import { DEFAULT_MEMBER_PERMISSIONS, type FakeChannel, type FakeUser, type World } from './world.ts';

/** What `sendCommand` & co. return: enough to find the interaction, its original response and followups. */
export interface InteractionHandle {
  readonly id: string;
  readonly token: string;
}

export type InteractionKind = 'command' | 'autocomplete' | 'button' | 'modal-submit';

/** The accepted initial response (POST /interactions/:id/:token/callback). */
export interface InteractionCallbackRecord {
  readonly type: InteractionResponseType;
  /** The callback's `data` as the bot sent it (message payload, choices, modal, …). */
  readonly data: unknown;
  readonly at: Date;
  /** Time from dispatching INTERACTION_CREATE to receiving this callback. */
  readonly latencyMs: number;
}

/** An interaction the fake dispatched, and everything the bot did with it so far. */
export interface FakeInteraction extends InteractionHandle {
  readonly type: InteractionType;
  readonly kind: InteractionKind;
  /** Command name for commands and autocomplete, custom_id for buttons and modal submits. */
  readonly name: string;
  readonly user: FakeUser;
  readonly channelId: string;
  readonly guildId: string | null;
  readonly dispatchedAt: Date;
  /** The INTERACTION_CREATE data exactly as dispatched. */
  readonly payload: APIBaseInteraction<InteractionType, unknown>;
  readonly attachmentSizeLimit: number;
  /** For buttons: the clicked message; for modal submits: the message whose component opened the modal. */
  readonly sourceMessageId: string | undefined;
  /** For modal submits: the interaction that answered with the modal. */
  readonly triggeredBy: string | undefined;
  readonly callback: InteractionCallbackRecord | undefined;
  /** Latency of the first callback attempt, also when it came too late and got 10062. */
  readonly callbackLatencyMs: number | undefined;
  readonly originalMessageId: string | undefined;
  readonly followupMessageIds: readonly string[];
  /** Webhook routes answer 401 Invalid Webhook Token from this moment on. */
  readonly tokenExpiresAt: Date;
}

export type InteractionState = { -readonly [K in keyof FakeInteraction]: FakeInteraction[K] };

export type OptionValue = string | number | boolean | CommandFile;

/** A file given to an attachment option, as the Discord client uploads it; width and height as Discord reports them for images. */
export interface CommandFile {
  readonly filename: string;
  readonly data: Buffer;
  readonly contentType?: string;
  readonly width?: number;
  readonly height?: number;
}

/** Who invokes, and with what rights. Defaults: user `tester`, plain member permissions, the bot role's permissions. */
export interface InvocationOptions {
  readonly user?: FakeUser;
  /** Member permissions in the channel (a PermissionFlagsBits combination or its decimal string). */
  readonly memberPermissions?: bigint | string;
  readonly roles?: readonly string[];
  /** The bot's permissions in the channel, sent as `app_permissions` (default: what the channel grants the bot). */
  readonly appPermissions?: bigint | string;
  /** Sent as `attachment_size_limit`; uploads bigger than this get 413 like Discord. Default 10 MiB. */
  readonly attachmentSizeLimit?: number;
  readonly locale?: Locale;
}

export interface SendCommandOptions extends InvocationOptions {
  readonly name: string;
  /** Option values by option name; types come from the deployed command definition. */
  readonly options?: Readonly<Record<string, OptionValue>>;
  /** Default: the fake guild's text channel. */
  readonly channelId?: string;
  /** Run the command in the user's DM with the bot instead of the guild. */
  readonly dm?: boolean;
  /**
   * Send the option values as given, without the Discord client's checks (type, choices, length, known names), as a
   * modified client, or a command deployed before its definition changed, can.
   */
  readonly unchecked?: boolean;
}

export interface SendAutocompleteOptions extends SendCommandOptions {
  /** Name of the option the user is typing in; its value is sent as the typed text. */
  readonly focused: string;
}

export interface ClickButtonOptions extends InvocationOptions {
  readonly messageId: string;
  readonly customId: string;
  /**
   * Click on the message as it looked in this earlier revision (index into `revisions`), as a client that has not
   * yet received the later edits does: the button must be on that revision, and the interaction carries it.
   */
  readonly revision?: number;
}

export interface SubmitModalOptions extends InvocationOptions {
  /** The interaction that answered with the modal (callback type 9). */
  readonly from: InteractionHandle;
  /** Text input values by custom_id. */
  readonly values: Readonly<Record<string, string>>;
}

export const DEFAULT_ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024;

export interface InteractionDeps {
  readonly ids: SnowflakeGenerator;
  readonly world: World;
  readonly commands: CommandRegistry;
  readonly messages: MessageStore;
  readonly dispatch: (event: string, data: unknown) => void;
  readonly tokenLifetimeMs: number;
}

function permissionString(value: bigint | string, what: string): string {
  const text = typeof value === 'bigint' ? value.toString() : value;
  if (!/^\d+$/.test(text)) throw new Error(`${what} must be a permission bitfield (bigint or decimal string), got "${text}"`);
  return text;
}

function describe(option: APIApplicationCommandOption): string {
  return `${option.name} (${ApplicationCommandOptionType[option.type]})`;
}

type ValueOption = APIApplicationCommandOption & {
  choices?: { name: string; value: string | number }[];
  min_value?: number;
  max_value?: number;
  min_length?: number;
  max_length?: number;
  autocomplete?: boolean;
  required?: boolean;
};

/** Checks a value the way the Discord client does before it lets the user submit the command. */
function checkOptionValue(command: string, option: ValueOption, value: OptionValue): void {
  const fail = (why: string) => {
    throw new Error(`/${command} option ${describe(option)}: ${why} (got ${JSON.stringify(value)})`);
  };
  switch (option.type) {
    case ApplicationCommandOptionType.String:
      if (typeof value !== 'string') fail('expects a string');
      else {
        if (option.min_length !== undefined && characterCount(value) < option.min_length) fail(`shorter than min_length ${option.min_length}`);
        if (option.max_length !== undefined && characterCount(value) > option.max_length) fail(`longer than max_length ${option.max_length}`);
      }
      break;
    case ApplicationCommandOptionType.Integer:
    case ApplicationCommandOptionType.Number:
      if (typeof value !== 'number' || !Number.isFinite(value)) fail('expects a number');
      else {
        if (option.type === ApplicationCommandOptionType.Integer && !Number.isSafeInteger(value)) fail('expects an integer');
        if (option.min_value !== undefined && value < option.min_value) fail(`below min_value ${option.min_value}`);
        if (option.max_value !== undefined && value > option.max_value) fail(`above max_value ${option.max_value}`);
      }
      break;
    case ApplicationCommandOptionType.Boolean:
      if (typeof value !== 'boolean') fail('expects a boolean');
      break;
    default:
      fail('option type not supported by the fake (string, integer, number, boolean are)');
  }
  if (option.choices && option.choices.length > 0 && !option.choices.some((choice) => choice.value === value)) {
    fail(`not one of the choices ${option.choices.map((c) => JSON.stringify(c.value)).join(', ')}`);
  }
}

/** Dispatches interactions over the gateway and keeps a record of each. */
export class InteractionLog {
  readonly #deps: InteractionDeps;
  readonly #byId = new Map<string, InteractionState>();
  readonly #byToken = new Map<string, InteractionState>();

  constructor(deps: InteractionDeps) {
    this.#deps = deps;
  }

  all(): FakeInteraction[] {
    return [...this.#byId.values()];
  }

  get(idOrHandle: string | InteractionHandle): InteractionState {
    const id = typeof idOrHandle === 'string' ? idOrHandle : idOrHandle.id;
    const found = this.#byId.get(id);
    if (!found) throw new Error(`fake: no interaction with id ${id}`);
    return found;
  }

  findById(id: string): InteractionState | undefined {
    return this.#byId.get(id);
  }

  findByToken(token: string): InteractionState | undefined {
    return this.#byToken.get(token);
  }

  expireToken(tokenOrHandle: string | InteractionHandle): void {
    const token = typeof tokenOrHandle === 'string' ? tokenOrHandle : tokenOrHandle.token;
    const state = this.#byToken.get(token);
    if (!state) throw new Error('fake.expireInteractionToken: unknown interaction token');
    state.tokenExpiresAt = new Date(Date.now() - 1);
  }

  sendCommand(options: SendCommandOptions): InteractionHandle {
    const { command, channel } = this.#resolveCommand(options);
    const data = this.#commandData(command, options.options ?? {}, undefined, options.unchecked === true, channel.id);
    return this.#dispatch(InteractionType.ApplicationCommand, 'command', command.name, options, channel, data, undefined, undefined);
  }

  sendAutocomplete(options: SendAutocompleteOptions): InteractionHandle {
    const { command, channel } = this.#resolveCommand(options);
    const data = this.#commandData(command, options.options ?? {}, options.focused, false, channel.id);
    return this.#dispatch(InteractionType.ApplicationCommandAutocomplete, 'autocomplete', command.name, options, channel, data, undefined, undefined);
  }

  clickButton(options: ClickButtonOptions): InteractionHandle {
    const stored = this.#deps.messages.get(options.messageId);
    if (!stored || stored.deletedAt) throw new Error(`fake.clickButton: message ${options.messageId} does not exist (or was deleted)`);
    const shown = options.revision === undefined ? undefined : stored.revisions[options.revision];
    if (options.revision !== undefined && !shown) throw new Error(`fake.clickButton: message ${stored.id} has no revision ${options.revision}`);
    const message: StoredMessage = shown ? { ...stored, ...shown } : stored;
    const component = [...walkComponents(message.components)].find((c) => c.custom_id === options.customId);
    if (!component) {
      const known = [...walkComponents(message.components)].flatMap((c) => (typeof c.custom_id === 'string' ? [c.custom_id] : []));
      throw new Error(`fake.clickButton: message ${message.id} has no component "${options.customId}" (it has: ${known.join(', ') || 'none'})`);
    }
    if (component.type !== ComponentType.Button || component.style === ButtonStyle.Link) {
      throw new Error(`fake.clickButton: component "${options.customId}" is not a clickable button`);
    }
    if (component.disabled === true) throw new Error(`fake.clickButton: button "${options.customId}" is disabled`);
    const channel = this.#channel(message.channelId);
    const data = { custom_id: options.customId, component_type: ComponentType.Button };
    return this.#dispatch(InteractionType.MessageComponent, 'button', options.customId, options, channel, data, message, undefined);
  }

  submitModal(options: SubmitModalOptions): InteractionHandle {
    const from = this.get(options.from);
    if (from.callback?.type !== InteractionResponseType.Modal) {
      throw new Error(`fake.submitModal: interaction ${from.id} did not answer with a modal (callback type 9)`);
    }
    const modal = from.callback.data as { custom_id: string; components: unknown[] };
    const inputs = [...walkComponents(modal.components)].filter((c) => c.type === ComponentType.TextInput);
    for (const name of Object.keys(options.values)) {
      if (!inputs.some((input) => input.custom_id === name)) {
        throw new Error(`fake.submitModal: modal "${modal.custom_id}" has no text input "${name}"`);
      }
    }
    const components = modal.components.flatMap((top): unknown[] => {
      const inputsHere = [...walkComponents([top])].filter((c) => c.type === ComponentType.TextInput);
      if (inputsHere.length === 0) return [];
      const submitted = inputsHere.map((input) => {
        const value = options.values[input.custom_id as string] ?? '';
        if (input.required !== false && value === '') throw new Error(`fake.submitModal: required text input "${String(input.custom_id)}" has no value`);
        if (typeof input.max_length === 'number' && value.length > input.max_length) {
          throw new Error(`fake.submitModal: "${String(input.custom_id)}" is longer than its max_length ${input.max_length}`);
        }
        return { type: ComponentType.TextInput, id: input.id, custom_id: input.custom_id, value };
      });
      const row = top as { type: number; id?: number };
      return row.type === ComponentType.ActionRow
        ? [{ type: row.type, id: row.id, components: submitted }]
        : [{ type: row.type, id: row.id, component: submitted[0] }];
    });
    const source = from.sourceMessageId === undefined ? undefined : this.#deps.messages.get(from.sourceMessageId);
    const channel = this.#channel(from.channelId);
    const invocation: InvocationOptions = { ...options, user: options.user ?? from.user };
    const data = { custom_id: modal.custom_id, components };
    return this.#dispatch(InteractionType.ModalSubmit, 'modal-submit', modal.custom_id, invocation, channel, data, source, from.id);
  }

  /** The interaction_metadata Discord puts on messages created by an interaction response. */
  metadataFor(state: FakeInteraction, originalResponseMessageId?: string): APIMessageInteractionMetadata {
    const base = {
      id: state.id,
      user: this.#deps.world.apiUser(state.user),
      authorizing_integration_owners: state.payload.authorizing_integration_owners,
      ...(originalResponseMessageId ? { original_response_message_id: originalResponseMessageId } : {}),
    };
    if (state.kind === 'button') {
      return { ...base, type: InteractionType.MessageComponent, interacted_message_id: state.sourceMessageId ?? '' };
    }
    if (state.kind === 'modal-submit' && state.triggeredBy) {
      const trigger = this.metadataFor(this.get(state.triggeredBy));
      if (trigger.type === InteractionType.ModalSubmit) throw new Error('a modal cannot be opened from a modal submit');
      return { ...base, type: InteractionType.ModalSubmit, triggering_interaction_metadata: trigger };
    }
    return { ...base, type: InteractionType.ApplicationCommand };
  }

  #resolveCommand(options: SendCommandOptions): { command: APIApplicationCommand; channel: FakeChannel } {
    const { world, commands } = this.#deps;
    const user = options.user ?? world.user('tester');
    const channel = options.dm ? world.dmChannelWith(user) : this.#channel(options.channelId ?? world.textChannel.id);
    const command = commands.findChatInput(options.name, channel.guildId);
    if (!command) {
      const deployed = [...commands.list(null), ...commands.list(world.guildId)].map((c) => c.name);
      throw new Error(`fake: /${options.name} is not deployed (deployed: ${deployed.join(', ') || 'none'}); PUT the commands first`);
    }
    return { command, channel };
  }

  /** The `data` of a chat-input command interaction, with the option marked `focused` for autocomplete. */
  #commandData(command: APIApplicationCommand, given: Readonly<Record<string, OptionValue>>, focused: string | undefined, unchecked: boolean, channelId: string) {
    // Files given to attachment options are uploaded first; the option's value is the attachment's id.
    const attachments: Record<string, unknown> = {};
    const values = Object.fromEntries(
      Object.entries(given).map(([name, value]) => {
        if (typeof value !== 'object') return [name, value];
        const stored = this.#deps.messages.commandAttachment(channelId, { field: 'files[0]', filename: value.filename, contentType: value.contentType, data: value.data });
        attachments[stored.id] = {
          id: stored.id,
          filename: stored.filename,
          size: stored.size,
          url: stored.url,
          proxy_url: stored.url,
          ...(value.contentType ? { content_type: value.contentType } : {}),
          ...(value.width !== undefined ? { width: value.width, height: value.height } : {}),
        };
        return [name, stored.id];
      }),
    );
    const attachmentIds = new Set(Object.keys(attachments));
    return {
      id: command.id,
      name: command.name,
      type: ApplicationCommandType.ChatInput,
      ...(command.guild_id ? { guild_id: command.guild_id } : {}),
      options: unchecked ? this.#uncheckedOptions(command, values) : this.#commandOptions(command, values, focused, attachmentIds),
      ...(attachmentIds.size > 0 ? { resolved: { attachments } } : {}),
    };
  }

  /** The values as given; the type is the deployed option's, else the value's own. */
  #uncheckedOptions(command: APIApplicationCommand, given: Readonly<Record<string, OptionValue>>) {
    const typeOf = (value: OptionValue) =>
      typeof value === 'string'
        ? ApplicationCommandOptionType.String
        : typeof value === 'boolean'
          ? ApplicationCommandOptionType.Boolean
          : Number.isInteger(value)
            ? ApplicationCommandOptionType.Integer
            : ApplicationCommandOptionType.Number;
    return Object.entries(given).map(([name, value]) => ({ name, type: command.options?.find((option) => option.name === name)?.type ?? typeOf(value), value }));
  }

  #commandOptions(command: APIApplicationCommand, given: Readonly<Record<string, OptionValue>>, focused: string | undefined, attachmentIds: ReadonlySet<string>) {
    const definitions = (command.options ?? []) as ValueOption[];
    if (definitions.some((o) => o.type === ApplicationCommandOptionType.Subcommand || o.type === ApplicationCommandOptionType.SubcommandGroup)) {
      throw new Error(`fake: /${command.name} has subcommands, which the fake does not support`);
    }
    for (const name of Object.keys(given)) {
      if (!definitions.some((o) => o.name === name)) {
        throw new Error(`fake: /${command.name} has no option "${name}" (it has: ${definitions.map(describe).join(', ') || 'none'})`);
      }
    }
    if (focused !== undefined) {
      const target = definitions.find((o) => o.name === focused);
      if (!target?.autocomplete) throw new Error(`fake: /${command.name} option "${focused}" does not have autocomplete enabled`);
      if (!(focused in given)) throw new Error(`fake.sendAutocomplete: give the typed text of "${focused}" in options`);
    }
    return definitions.flatMap((option) => {
      const value = given[option.name];
      if (value === undefined) {
        if (option.required && focused === undefined) throw new Error(`fake: /${command.name} requires option ${describe(option)}`);
        return [];
      }
      if (option.name === focused) return [{ name: option.name, type: option.type, value: String(value), focused: true }];
      if (option.type === ApplicationCommandOptionType.Attachment) {
        if (typeof value !== 'string' || !attachmentIds.has(value)) throw new Error(`/${command.name} option ${describe(option)}: give a file ({ filename, data })`);
      } else {
        checkOptionValue(command.name, option, value);
      }
      return [{ name: option.name, type: option.type, value }];
    });
  }

  #channel(id: string): FakeChannel {
    const channel = this.#deps.world.channel(id);
    if (!channel) throw new Error(`fake: unknown channel ${id}`);
    return channel;
  }

  #dispatch(
    type: InteractionType,
    kind: InteractionKind,
    name: string,
    invocation: InvocationOptions,
    channel: FakeChannel,
    data: unknown,
    message: StoredMessage | undefined,
    triggeredBy: string | undefined,
  ): InteractionHandle {
    const { ids, world, messages } = this.#deps;
    const user = invocation.user ?? world.user('tester');
    if (world.userById(user.id) !== user) throw new Error(`fake: user ${user.username} was not created by this fake (use fake.user(name))`);
    const id = ids.next();
    const token = makeInteractionToken(id);
    const inGuild = channel.guildId !== null;
    const attachmentSizeLimit = invocation.attachmentSizeLimit ?? DEFAULT_ATTACHMENT_SIZE_LIMIT;
    const locale = invocation.locale ?? Locale.EnglishUS;
    const payload: APIBaseInteraction<InteractionType, unknown> = {
      id,
      application_id: world.applicationId,
      type,
      data,
      token,
      version: 1,
      channel: world.apiChannel(channel),
      channel_id: channel.id,
      app_permissions: permissionString(invocation.appPermissions ?? world.appPermissionsIn(channel.id), 'appPermissions'),
      locale,
      entitlements: [],
      // "0" as the guild-install owner marks the bot's own DM.
      authorizing_integration_owners: { 0: inGuild ? world.guildId : '0' },
      context: inGuild ? InteractionContextType.Guild : InteractionContextType.BotDM,
      attachment_size_limit: attachmentSizeLimit,
      ...(message ? { message: messages.toApi(message) } : {}),
      ...(inGuild
        ? {
            guild_id: world.guildId,
            guild: { id: world.guildId, locale: Locale.EnglishUS, features: [] },
            guild_locale: Locale.EnglishUS,
            member: {
              ...world.apiMember(user, invocation.roles),
              permissions: permissionString(invocation.memberPermissions ?? DEFAULT_MEMBER_PERMISSIONS, 'memberPermissions'),
              user: world.apiUser(user),
            },
          }
        : { user: world.apiUser(user) }),
    };
    this.#deps.dispatch(GatewayDispatchEvents.InteractionCreate, payload);
    const dispatchedAt = new Date();
    const state: InteractionState = {
      id,
      token,
      type,
      kind,
      name,
      user,
      channelId: channel.id,
      guildId: channel.guildId,
      dispatchedAt,
      payload,
      attachmentSizeLimit,
      sourceMessageId: message?.id,
      triggeredBy,
      callback: undefined,
      callbackLatencyMs: undefined,
      originalMessageId: undefined,
      followupMessageIds: [],
      tokenExpiresAt: new Date(dispatchedAt.getTime() + this.#deps.tokenLifetimeMs),
    };
    this.#byId.set(id, state);
    this.#byToken.set(token, state);
    return { id, token };
  }
}

