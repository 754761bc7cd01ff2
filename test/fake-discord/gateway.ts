import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { GatewayCloseCodes, GatewayDispatchEvents, GatewayIntentBits, GatewayOpcodes } from 'discord.js';
import { WebSocket, WebSocketServer } from 'ws';

/** One IDENTIFY the fake accepted. */
export interface IdentifyRecord {
  readonly at: Date;
  readonly sessionId: string;
  readonly intents: number;
  readonly shard: readonly [number, number] | undefined;
  readonly properties: unknown;
}

/** A gateway close, with who started it. */
export interface GatewayClose {
  readonly at: Date;
  readonly code: number;
  readonly by: 'client' | 'server';
}

export interface GatewayStats {
  readonly identifies: readonly IdentifyRecord[];
  readonly resumes: number;
  readonly heartbeats: number;
  readonly openConnections: number;
  readonly closes: readonly GatewayClose[];
}

export interface GatewayOptions {
  readonly botToken: string;
  readonly heartbeatIntervalMs: number;
  /** Privileged intents "enabled in the developer portal"; asking for others closes with 4014 like Discord. */
  readonly privilegedIntents: number;
  readonly readyData: (sessionId: string, shard: readonly [number, number]) => unknown;
  readonly guildCreateData: () => unknown;
}

interface DispatchEntry {
  readonly op: GatewayOpcodes.Dispatch;
  readonly s: number;
  readonly t: string;
  readonly d: unknown;
}

interface Session {
  readonly id: string;
  seq: number;
  readonly events: DispatchEntry[];
  socket: WebSocket | null;
  invalidated: boolean;
}

const PRIVILEGED_INTENTS = GatewayIntentBits.GuildMembers | GatewayIntentBits.GuildPresences | GatewayIntentBits.MessageContent;
const ALL_INTENTS = Object.values(GatewayIntentBits).reduce<number>((all, bit) => (typeof bit === 'number' ? all | bit : all), 0);
// Close codes after which Discord does not let a session resume.
const SESSION_ENDING_CLOSE_CODES = new Set([1000, 1001, 4004, 4007, 4009, 4010, 4011, 4012, 4013, 4014]);

interface PayloadIn {
  op: number;
  d: unknown;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The gateway half of the fake: HELLO, IDENTIFY → READY + GUILD_CREATE, heartbeats, RESUME with replay, dispatches. */
export class GatewayServer {
  readonly #options: GatewayOptions;
  readonly #wss = new WebSocketServer({ noServer: true });
  readonly #sessions = new Map<string, Session>();
  readonly #sessionBySocket = new Map<WebSocket, Session>();
  readonly #serverClosing = new Set<WebSocket>();
  #active: Session | null = null;
  readonly #identifies: IdentifyRecord[] = [];
  readonly #closes: GatewayClose[] = [];
  #resumes = 0;
  #heartbeats = 0;

  constructor(options: GatewayOptions) {
    this.#options = options;
  }

  get stats(): GatewayStats {
    return {
      identifies: [...this.#identifies],
      resumes: this.#resumes,
      heartbeats: this.#heartbeats,
      openConnections: [...this.#wss.clients].filter((c) => c.readyState === WebSocket.OPEN).length,
      closes: [...this.#closes],
    };
  }

  /** True when a session exists that dispatches can go to (now, or on resume). */
  get hasSession(): boolean {
    return this.#active !== null && !this.#active.invalidated;
  }

  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(request.url ?? '/', 'ws://fake');
    if (url.pathname !== '/') {
      socket.end('HTTP/1.1 404 Not Found\r\n\r\n');
      return;
    }
    this.#wss.handleUpgrade(request, socket, head, (ws) => this.#onConnection(ws, url.searchParams));
  }

  /** Sends a dispatch (op 0) on the active session; it is replayed on RESUME if the socket is down right now. */
  dispatch(event: string, data: unknown): void {
    const session = this.#active;
    if (!session || session.invalidated) {
      throw new Error(`fake gateway: cannot dispatch ${event}: no client has identified (log a discord.js Client in first)`);
    }
    this.#dispatchOn(session, event, data);
  }

  /** Sends op 7 Reconnect to every open socket: discord.js closes and RESUMEs. */
  requestReconnect(): void {
    for (const ws of this.#wss.clients) this.#send(ws, { op: GatewayOpcodes.Reconnect, d: null });
  }

  /** Closes every socket from the server side with `code` (4000 lets the client resume; 4004, 4009, … end the session). */
  dropConnections(code: number): void {
    // A socket the client is already closing (e.g. after op 7) is not dropped again: its close stays the client's.
    for (const ws of this.#wss.clients) if (ws.readyState === WebSocket.OPEN) this.#closeFromServer(ws, code, 'fake: connection dropped');
  }

  async close(): Promise<void> {
    for (const ws of this.#wss.clients) ws.terminate();
    await new Promise<void>((resolve) => this.#wss.close(() => resolve()));
  }

  #onConnection(ws: WebSocket, params: URLSearchParams): void {
    ws.on('close', (code) => this.#onClose(ws, code));
    ws.on('message', (raw, isBinary) => this.#onMessage(ws, raw.toString(), isBinary));
    ws.on('error', () => ws.terminate());
    if (params.get('v') !== '10') return this.#closeFromServer(ws, GatewayCloseCodes.InvalidAPIVersion, 'Invalid API version');
    if ((params.get('encoding') ?? 'json') !== 'json') return this.#closeFromServer(ws, GatewayCloseCodes.DecodeError, 'fake supports encoding=json only');
    this.#send(ws, { op: GatewayOpcodes.Hello, d: { heartbeat_interval: this.#options.heartbeatIntervalMs } });
  }

  #onClose(ws: WebSocket, code: number): void {
    const byServer = this.#serverClosing.delete(ws);
    this.#closes.push({ at: new Date(), code, by: byServer ? 'server' : 'client' });
    const session = this.#sessionBySocket.get(ws);
    this.#sessionBySocket.delete(ws);
    if (session && session.socket === ws) {
      session.socket = null;
      if (SESSION_ENDING_CLOSE_CODES.has(code)) session.invalidated = true;
    }
  }

  #onMessage(ws: WebSocket, text: string, isBinary: boolean): void {
    let payload: PayloadIn;
    try {
      const parsed: unknown = isBinary ? undefined : JSON.parse(text);
      if (!isRecord(parsed) || typeof parsed.op !== 'number') throw new Error('not a gateway payload');
      payload = { op: parsed.op, d: parsed.d };
    } catch {
      return this.#closeFromServer(ws, GatewayCloseCodes.DecodeError, 'Error while decoding payload.');
    }
    const identified = this.#sessionBySocket.has(ws);
    switch (payload.op) {
      case GatewayOpcodes.Heartbeat:
        this.#heartbeats += 1;
        this.#send(ws, { op: GatewayOpcodes.HeartbeatAck });
        break;
      case GatewayOpcodes.Identify:
        if (identified) return this.#closeFromServer(ws, GatewayCloseCodes.AlreadyAuthenticated, 'Already authenticated.');
        this.#identify(ws, payload.d);
        break;
      case GatewayOpcodes.Resume:
        if (identified) return this.#closeFromServer(ws, GatewayCloseCodes.AlreadyAuthenticated, 'Already authenticated.');
        this.#resume(ws, payload.d);
        break;
      case GatewayOpcodes.PresenceUpdate:
      case GatewayOpcodes.VoiceStateUpdate:
      case GatewayOpcodes.RequestGuildMembers:
        if (!identified) return this.#closeFromServer(ws, GatewayCloseCodes.NotAuthenticated, 'Not authenticated.');
        break;
      default:
        return this.#closeFromServer(ws, GatewayCloseCodes.UnknownOpcode, 'Unknown opcode.');
    }
  }

  #identify(ws: WebSocket, data: unknown): void {
    if (!isRecord(data) || data.token !== this.#options.botToken) {
      return this.#closeFromServer(ws, GatewayCloseCodes.AuthenticationFailed, 'Authentication failed.');
    }
    const intents = data.intents;
    if (typeof intents !== 'number' || !Number.isInteger(intents) || (intents & ~ALL_INTENTS) !== 0) {
      return this.#closeFromServer(ws, GatewayCloseCodes.InvalidIntents, 'Invalid intent(s).');
    }
    if ((intents & PRIVILEGED_INTENTS & ~this.#options.privilegedIntents) !== 0) {
      return this.#closeFromServer(ws, GatewayCloseCodes.DisallowedIntents, 'Disallowed intent(s).');
    }
    const shard = Array.isArray(data.shard) ? ([Number(data.shard[0]), Number(data.shard[1])] as const) : undefined;
    if (shard && !(shard[0] >= 0 && shard[0] < shard[1])) {
      return this.#closeFromServer(ws, GatewayCloseCodes.InvalidShard, 'Invalid shard.');
    }
    const session: Session = { id: randomBytes(16).toString('hex'), seq: 0, events: [], socket: ws, invalidated: false };
    this.#sessions.set(session.id, session);
    this.#sessionBySocket.set(ws, session);
    this.#active = session;
    this.#identifies.push({ at: new Date(), sessionId: session.id, intents, shard, properties: data.properties });
    this.#dispatchOn(session, GatewayDispatchEvents.Ready, this.#options.readyData(session.id, shard ?? [0, 1]));
    if ((intents & GatewayIntentBits.Guilds) !== 0) {
      this.#dispatchOn(session, GatewayDispatchEvents.GuildCreate, this.#options.guildCreateData());
    }
  }

  #resume(ws: WebSocket, data: unknown): void {
    const session = isRecord(data) && typeof data.session_id === 'string' ? this.#sessions.get(data.session_id) : undefined;
    if (!isRecord(data) || !session || session.invalidated || data.token !== this.#options.botToken || typeof data.seq !== 'number') {
      this.#send(ws, { op: GatewayOpcodes.InvalidSession, d: false });
      return;
    }
    const previous = session.socket;
    if (previous && previous !== ws) this.#closeFromServer(previous, GatewayCloseCodes.SessionTimedOut, 'Session resumed elsewhere.');
    session.socket = ws;
    this.#sessionBySocket.set(ws, session);
    this.#active = session;
    this.#resumes += 1;
    const lastSeen = data.seq;
    for (const entry of session.events) if (entry.s > lastSeen) this.#send(ws, entry);
    this.#dispatchOn(session, GatewayDispatchEvents.Resumed, {});
  }

  #dispatchOn(session: Session, event: string, data: unknown): void {
    session.seq += 1;
    const entry: DispatchEntry = { op: GatewayOpcodes.Dispatch, s: session.seq, t: event, d: data };
    session.events.push(entry);
    if (session.socket) this.#send(session.socket, entry);
  }

  #send(ws: WebSocket, payload: object): void {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(payload));
  }

  #closeFromServer(ws: WebSocket, code: number, reason: string): void {
    this.#serverClosing.add(ws);
    const session = this.#sessionBySocket.get(ws);
    if (session && SESSION_ENDING_CLOSE_CODES.has(code)) session.invalidated = true;
    ws.close(code, reason);
  }
}
