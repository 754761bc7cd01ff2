import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { APIApplicationCommand } from 'discord.js';
import { ApiServer, type RequestRecord } from './api-server.ts';
import { CommandRegistry } from './commands.ts';
import { FaultInjector, type DelaySpec, type FaultRule, type FaultSpec } from './faults.ts';
import { GatewayServer, type GatewayStats } from './gateway.ts';
import { makeBotToken, SnowflakeGenerator } from './ids.ts';
import {
  InteractionLog,
  type ClickButtonOptions,
  type FakeInteraction,
  type InteractionHandle,
  type SendAutocompleteOptions,
  type SendCommandOptions,
  type SubmitModalOptions,
} from './interactions.ts';
import { MessageStore, type StoredMessage } from './messages.ts';
import { InteractionResponder } from './responses.ts';
import { restRoutes } from './rest-routes.ts';
import { Router } from './router.ts';
import { World, type FakeUser } from './world.ts';

export interface FakeDiscordOptions {
  /** HELLO heartbeat_interval (Discord: about 41 s). */
  readonly heartbeatIntervalMs?: number;
  /** Callbacks later than this after dispatch get 404 Unknown interaction (Discord: 3 s). */
  readonly callbackDeadlineMs?: number;
  /** Interaction tokens stop working this long after dispatch (Discord: 15 min). */
  readonly interactionTokenLifetimeMs?: number;
  /** Privileged intents the application may use (GatewayIntentBits bits); others close the gateway with 4014. */
  readonly privilegedIntents?: number;
  readonly botUsername?: string;
  readonly guildName?: string;
  readonly channelName?: string;
  /** Roles the guild has besides @everyone and the bot's (no permissions of their own); `fake.roleId(name)` gives their ids. */
  readonly roleNames?: readonly string[];
  /** Also an age-restricted (NSFW) text channel: `fake.ageRestrictedChannelId`. */
  readonly ageRestrictedChannel?: boolean;
  /** The address it listens on; `0.0.0.0` lets containers reach it. Default `127.0.0.1`. */
  readonly listenHost?: string;
  /** The host name in its URLs (apiUrl, the gateway URL it hands out), e.g. `host.containers.internal`. Default listenHost. */
  readonly publicHost?: string;
}

function listen(server: Server, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve((server.address() as AddressInfo).port));
  });
}

/**
 * A fake Discord on 127.0.0.1 that a real discord.js Client logs into:
 * `new Client({ intents, rest: { api: fake.apiUrl } }).login(fake.botToken)`.
 */
export class FakeDiscord {
  /** Pass as `rest: { api }` to discord.js (it appends /v10). */
  readonly apiUrl: string;
  /** What GET /gateway/bot answers; discord.js connects here. */
  readonly gatewayUrl: string;
  readonly botToken: string;
  readonly applicationId: string;
  readonly guildId: string;
  /** The guild's text channel, where commands run by default. */
  readonly channelId: string;
  readonly botUser: FakeUser;

  readonly #server: Server;
  readonly #world: World;
  readonly #commands: CommandRegistry;
  readonly #messages: MessageStore;
  readonly #interactions: InteractionLog;
  readonly #gateway: GatewayServer;
  readonly #api: ApiServer;
  readonly #faults = new FaultInjector();
  readonly #sockets = new Set<Socket>();
  #closed = false;

  private constructor(server: Server, port: number, options: FakeDiscordOptions) {
    const host = options.publicHost ?? options.listenHost ?? '127.0.0.1';
    const baseUrl = `http://${host}:${port}`;
    const ids = new SnowflakeGenerator();
    this.#server = server;
    this.apiUrl = `${baseUrl}/api`;
    this.gatewayUrl = `ws://${host}:${port}`;
    this.#world = new World(ids, {
      botUsername: options.botUsername ?? 'imagine-bot',
      guildName: options.guildName ?? 'Fake Guild',
      channelName: options.channelName ?? 'general',
      roleNames: options.roleNames ?? [],
      ageRestrictedChannel: options.ageRestrictedChannel,
    });
    this.applicationId = this.#world.applicationId;
    this.guildId = this.#world.guildId;
    this.channelId = this.#world.textChannel.id;
    this.botUser = this.#world.botUser;
    this.botToken = makeBotToken(this.applicationId);
    this.#commands = new CommandRegistry(ids, this.applicationId);
    this.#messages = new MessageStore(ids, this.#world, baseUrl);
    this.#gateway = new GatewayServer({
      botToken: this.botToken,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 41_250,
      privilegedIntents: options.privilegedIntents ?? 0,
      readyData: (sessionId, shard) => ({
        v: 10,
        user: this.#world.apiUser(this.botUser),
        guilds: [{ id: this.guildId, unavailable: true }],
        session_id: sessionId,
        resume_gateway_url: this.gatewayUrl,
        shard,
        application: { id: this.applicationId, flags: 0 },
      }),
      guildCreateData: () => this.#world.gatewayGuildCreate(),
    });
    this.#interactions = new InteractionLog({
      ids,
      world: this.#world,
      commands: this.#commands,
      messages: this.#messages,
      dispatch: (event, data) => this.#gateway.dispatch(event, data),
      tokenLifetimeMs: options.interactionTokenLifetimeMs ?? 15 * 60_000,
    });
    const responder = new InteractionResponder({
      interactions: this.#interactions,
      messages: this.#messages,
      world: this.#world,
      callbackDeadlineMs: options.callbackDeadlineMs ?? 3_000,
    });
    this.#api = new ApiServer({
      router: new Router(restRoutes({ world: this.#world, commands: this.#commands, messages: this.#messages, responder, gatewayUrl: this.gatewayUrl })),
      faults: this.#faults,
      messages: this.#messages,
      botToken: this.botToken,
    });
    server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
    server.on('request', (request, response) => void this.#api.handle(request, response));
    server.on('upgrade', (request, socket, head) => this.#gateway.handleUpgrade(request, socket, head));
  }

  /** Starts a fake on an ephemeral port of 127.0.0.1 (or options.listenHost). */
  static async start(options: FakeDiscordOptions = {}): Promise<FakeDiscord> {
    const server = createServer();
    const port = await listen(server, options.listenHost ?? '127.0.0.1');
    return new FakeDiscord(server, port, options);
  }

  /** The age-restricted channel (start the fake with ageRestrictedChannel: true). */
  get ageRestrictedChannelId(): string {
    const channel = this.#world.ageRestrictedChannel;
    if (!channel) throw new Error('fake.ageRestrictedChannelId: start the fake with ageRestrictedChannel: true');
    return channel.id;
  }

  /** The id of a role given in the roleNames option. */
  roleId(name: string): string {
    const id = this.#world.roleIds.get(name);
    if (!id) throw new Error(`fake.roleId: no role "${name}" (start the fake with roleNames: ["${name}"])`);
    return id;
  }

  /** The user with this username (created on first use, member of the guild). */
  user(username: string): FakeUser {
    return this.#world.user(username);
  }

  // ---- application commands ----

  /** Global commands as deployed (PUT/POST /applications/:app/commands). */
  globalCommands(): APIApplicationCommand[] {
    return this.#commands.list(null);
  }

  /** Commands deployed to a guild (default: the fake guild). */
  guildCommands(guildId: string = this.guildId): APIApplicationCommand[] {
    return this.#commands.list(guildId);
  }

  // ---- interactions ----

  /** Dispatches a slash command (INTERACTION_CREATE type 2). The command must be deployed. */
  sendCommand(options: SendCommandOptions): InteractionHandle {
    return this.#interactions.sendCommand(options);
  }

  /** Dispatches an autocomplete request (type 4) for the focused option. */
  sendAutocomplete(options: SendAutocompleteOptions): InteractionHandle {
    return this.#interactions.sendAutocomplete(options);
  }

  /** Clicks a button on a stored message (type 3); the message must carry that custom_id. */
  clickButton(options: ClickButtonOptions): InteractionHandle {
    return this.#interactions.clickButton(options);
  }

  /** Submits the modal another interaction answered with (type 5). */
  submitModal(options: SubmitModalOptions): InteractionHandle {
    return this.#interactions.submitModal(options);
  }

  /** The record of a dispatched interaction: callback, latency, original response id, followup ids. */
  interaction(handle: InteractionHandle | string): FakeInteraction {
    return this.#interactions.get(handle);
  }

  interactions(): FakeInteraction[] {
    return this.#interactions.all();
  }

  /** The original response (or the clicked message after an update), if the bot created one. */
  originalResponse(handle: InteractionHandle | string): StoredMessage | undefined {
    const id = this.#interactions.get(handle).originalMessageId;
    return id === undefined ? undefined : this.#messages.get(id);
  }

  /** Followup messages, in order. (After a deferred reply the first followup becomes the original response.) */
  followups(handle: InteractionHandle | string): StoredMessage[] {
    return this.#interactions.get(handle).followupMessageIds.flatMap((id) => this.#messages.get(id) ?? []);
  }

  /** Makes the interaction's webhook routes answer 401 Invalid Webhook Token (50027), as after 15 minutes. */
  expireInteractionToken(tokenOrHandle: InteractionHandle | string): void {
    this.#interactions.expireToken(tokenOrHandle);
  }

  // ---- messages ----

  /** Every message ever created (deleted ones included, see `deletedAt`), in creation order. */
  get messages(): readonly StoredMessage[] {
    return this.#messages.all();
  }

  /** Deletes a message as a member or moderator would: it is gone, and so are its files. */
  deleteMessage(id: string): void {
    this.#messages.delete(id);
  }

  message(id: string): StoredMessage | undefined {
    return this.#messages.get(id);
  }

  /** Live (not deleted) messages of a channel, ephemeral ones included. */
  channelMessages(channelId: string = this.channelId): StoredMessage[] {
    return this.#messages.all().filter((m) => m.channelId === channelId && !m.deletedAt);
  }

  // ---- REST log and faults ----

  /** Every REST request so far, in completion order. */
  get requests(): readonly RequestRecord[] {
    return this.#api.requests;
  }

  /** Requests for routes the fake does not know (answered 404 `{ message: '404: Not Found', code: 0 }`). */
  unhandledRequests(): RequestRecord[] {
    return this.#api.requests.filter((r) => r.route === null);
  }

  /** Bugs in the fake itself (answered 500); a test should expect this to stay empty. */
  get internalErrors(): readonly Error[] {
    return this.#api.internalErrors;
  }

  /** Makes the next `times` matching requests fail with 500, 429 (rate limit headers), 403 or 400 (an embed refused). */
  failNext(spec: FaultSpec): FaultRule {
    return this.#faults.add(spec);
  }

  /**
   * Answers the next matching requests late: each takes effect at once, its answer comes `delayMs` later (a client
   * that times out sooner cannot tell whether it worked, as with a slow Discord).
   */
  delayNext(spec: DelaySpec): { readonly hits: number; readonly remaining: number } {
    return this.#faults.addDelay(spec);
  }

  /**
   * The bot's permissions in a channel (default: the fake guild's text channel), as a moderator's change to its role or
   * the channel's overwrites sets them: interactions there carry them as `app_permissions`, and the channel's message
   * routes enforce View Channel, Send Messages, Attach Files and Read Message History as Discord does.
   */
  setAppPermissions(permissions: bigint, channelId: string = this.channelId): void {
    this.#world.setAppPermissions(channelId, permissions);
  }

  // ---- gateway ----

  get gateway(): GatewayStats {
    return this.#gateway.stats;
  }

  /** Sends op 7 Reconnect; discord.js reconnects and RESUMEs, events sent meanwhile are replayed. */
  requestGatewayReconnect(): void {
    this.#gateway.requestReconnect();
  }

  /** Closes gateway sockets from the server with `code` (4000: client resumes; 4004 etc.: session over). */
  dropGatewayConnections(code = 4000): void {
    this.#gateway.dropConnections(code);
  }

  // ---- waiting and shutdown ----

  /** Resolves with the first truthy value of `condition`, polled every 10 ms; rejects after `timeoutMs`. */
  async waitFor<T>(condition: () => T | undefined | null | false | 0 | '', timeoutMs = 5_000, description = 'condition'): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.#closed) throw new Error(`fake.waitFor(${description}): the fake was closed`);
      const value = condition();
      if (value) return value;
      if (Date.now() >= deadline) throw new Error(`fake.waitFor(${description}) timed out after ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Closes the gateway sockets and the HTTP server, leaving no handles behind. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#api.close();
    await this.#gateway.close();
    const serverClosed = new Promise<void>((resolve, reject) => this.#server.close((error) => (error ? reject(error) : resolve())));
    const socketsClosed = [...this.#sockets].map((socket) => new Promise((resolve) => socket.once('close', resolve)));
    for (const socket of this.#sockets) socket.destroy();
    await Promise.all([serverClosed, ...socketsClosed]);
    // libuv releases the listening handle one loop turn after the close callback.
    await new Promise((resolve) => setImmediate(resolve));
  }
}
