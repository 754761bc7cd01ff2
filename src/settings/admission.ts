import type { Logger } from 'pino';
import { MAX_IMAGES_PER_JOB, type GenerationPolicy, type ImagineOptions } from '../jobs/options.ts';
import type { OfferedModels } from '../models/catalog.ts';
import { BannedWords } from './banned-words.ts';
import type { BotOwners } from './owners.ts';
import { safetyPolicyFor, type GuildSettings, type SafetyPolicy } from './guild-settings.ts';
import { serverPolicy, type OperatorLimits, type ServerPolicy } from './server-policy.ts';
import { quotaDay, quotaResetAt, type ImageReservation, type SettingsStore } from './store.ts';

// The one place a request for images is checked against the server it comes from: who may ask and where, the
// server's content rules, its defaults and limits, and today's quotas. Neutral: the Discord side gives it plain ids.

/** A request as the Discord side sees it. */
export interface JobRequest {
  /** Undefined in a direct message with the bot: the operator's limits alone apply. */
  guildId: string | undefined;
  channelId: string;
  /** The channel is marked age-restricted (NSFW). */
  ageRestricted: boolean;
  userId: string;
  roleIds: readonly string[];
  options: ImagineOptions;
  /** Whether the user chose the number of images (else the server's default count applies). */
  countChosen: boolean;
  /** The models the queue offers (for the server's default and allowed models). */
  offered: OfferedModels | undefined;
}

export type Admission =
  | {
      admitted: true;
      /** The options with the server's defaults filled in. */
      options: ImagineOptions;
      /** The server's defaults and limits within the operator's, to settle the job with. */
      policy: GenerationPolicy;
      /** The server's share of the queue; undefined: none. */
      queueShare: number | undefined;
      /** What to do with the images the safety checker flags, in this channel. */
      safety: SafetyPolicy;
      /** The images counted against today's quotas; undefined for the bot's owners (held to none). */
      reservation: QuotaReservation | undefined;
      /** Gives back the images counted against today's quotas, for a job that made none. Safe to call twice. */
      giveBack(): Promise<void>;
    }
  | { admitted: false; reason: string };

export interface QuotaSummary {
  /** The bot's owners are held to no quota. */
  owner: boolean;
  /** When today's counts reset (ms since the epoch). */
  resetAt: number;
  user?: { used: number; limit: number | undefined };
  /** Absent in direct messages. */
  server?: { used: number; limit: number | undefined };
}

/** The images one job counts against today's quotas: plain data, so a job's record can carry it to another bot process. */
export type QuotaReservation = Pick<ImageReservation, 'guildId' | 'userId' | 'day' | 'images'>;

/** The key server quotas of direct messages are counted under. */
const DIRECT_MESSAGES = 'dm';
/** Channels and roles named in a refusal, at most. */
const LISTED = 10;

export class JobAdmission {
  constructor(
    private readonly store: SettingsStore,
    private readonly operator: OperatorLimits,
    private readonly owners: BotOwners,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Reads the server's settings; throws SettingsStoreError when they cannot be read (never treated as "no rules"). */
  private async settingsOf(guildId: string | undefined): Promise<GuildSettings> {
    return guildId === undefined ? {} : (await this.store.read(guildId)).settings;
  }

  private policyOf(settings: GuildSettings): ServerPolicy {
    return serverPolicy(this.operator, settings);
  }

  /** Today's counts against the quotas that apply to this user here (for /info); undefined limits: none. */
  async quotas(guildId: string | undefined, userId: string): Promise<QuotaSummary> {
    const now = this.now();
    const resetAt = quotaResetAt(now);
    if (await this.owners.isOwner(userId)) return { owner: true, resetAt };
    const policy = this.policyOf(await this.settingsOf(guildId));
    const used = await this.store.usage(guildId ?? DIRECT_MESSAGES, userId, quotaDay(now));
    return {
      owner: false,
      resetAt,
      user: { used: used.user, limit: policy.userDailyImages },
      ...(guildId === undefined ? {} : { server: { used: used.server, limit: policy.serverDailyImages } }),
    };
  }

  async admit(request: JobRequest): Promise<Admission> {
    const settings = await this.settingsOf(request.guildId);
    const policy = this.policyOf(settings);
    const owner = await this.owners.isOwner(request.userId);
    const refusal = (owner ? undefined : accessRefusal(request, settings)) ?? contentRefusal(request, settings) ?? modelRefusal(request, settings);
    if (refusal) {
      this.logger.info({ guildId: request.guildId, userId: request.userId, reason: refusal.kind }, 'request refused by the server settings');
      return { admitted: false, reason: refusal.text };
    }

    const options: ImagineOptions = {
      ...request.options,
      model: request.options.model ?? defaultModel(settings, request.offered),
      count: request.countChosen ? request.options.count : Math.min(settings.defaultCount ?? request.options.count, MAX_IMAGES_PER_JOB),
    };
    const safety = safetyPolicyFor(settings, request.ageRestricted);
    const admitted = { admitted: true as const, options, policy: policy.generation, queueShare: policy.queueShare, safety };
    if (owner) return { ...admitted, reservation: undefined, giveBack: async () => undefined };

    const now = this.now();
    const counted: QuotaReservation = { guildId: request.guildId ?? DIRECT_MESSAGES, userId: request.userId, day: quotaDay(now), images: options.count };
    const verdict = await this.store.reserve({
      ...counted,
      userLimit: policy.userDailyImages,
      serverLimit: request.guildId === undefined ? undefined : policy.serverDailyImages,
    });
    if (!verdict.ok) return { admitted: false, reason: quotaText(verdict.quota, verdict.used, verdict.limit, options.count, quotaResetAt(now)) };
    let given = false;
    return {
      ...admitted,
      reservation: counted,
      giveBack: async () => {
        if (given) return;
        given = true;
        await this.giveBack(counted);
      },
    };
  }

  /** Gives back a job's images (one that made none), also for a job another bot process admitted. */
  giveBack(reservation: QuotaReservation): Promise<void> {
    return this.store.giveBack(reservation);
  }
}

interface Refusal {
  kind: string;
  text: string;
}

function accessRefusal(request: JobRequest, settings: GuildSettings): Refusal | undefined {
  const blocked = { kind: 'blocked', text: '🚫 You cannot use /imagine on this server. Ask its moderators if you think this is a mistake.' };
  if (settings.blockedUsers?.includes(request.userId)) return blocked;
  if (settings.blockedRoles?.some((role) => request.roleIds.includes(role))) return blocked;
  const channels = settings.allowedChannels ?? [];
  if (channels.length > 0 && !channels.includes(request.channelId)) {
    return { kind: 'channel', text: `📍 On this server, /imagine works in ${mentions(channels, (id) => `<#${id}>`)}.` };
  }
  const roles = settings.allowedRoles ?? [];
  if (roles.length > 0 && !roles.some((role) => request.roleIds.includes(role))) {
    return { kind: 'role', text: `🔒 On this server, /imagine is for members with the role ${mentions(roles, (id) => `<@&${id}>`)}.` };
  }
  return undefined;
}

function contentRefusal(request: JobRequest, settings: GuildSettings): Refusal | undefined {
  if (!new BannedWords(settings.bannedWords ?? []).foundIn(request.options.prompt, request.options.negativePrompt)) return undefined;
  // The word is not named: the answer must not repeat it, and naming it would teach how to get around it.
  return { kind: 'banned-word', text: '🚫 Your prompt uses a word or phrase this server does not allow. Please rephrase it.' };
}

function modelRefusal(request: JobRequest, settings: GuildSettings): Refusal | undefined {
  const allowed = allowedModels(settings, request.offered);
  const chosen = request.options.model ?? settings.defaultModel;
  if (!allowed || chosen === undefined || allowed.includes(chosen)) return undefined;
  return { kind: 'model', text: `⚠️ The model ${chosen} is not used on this server; choose one of ${allowed.join(', ')}.` };
}

/** The server's allowed models that are installed; undefined when the server allows every model. */
function allowedModels(settings: GuildSettings, offered: OfferedModels | undefined): string[] | undefined {
  if (!settings.allowedModels?.length) return undefined;
  const installed = offered?.models.map((model) => model.name);
  return installed ? settings.allowedModels.filter((name) => installed.includes(name)) : settings.allowedModels;
}

/** The server's default model; else the operator's when the server allows it, else the first allowed one. */
export function defaultModel(settings: GuildSettings, offered: OfferedModels | undefined): string | undefined {
  if (settings.defaultModel) return settings.defaultModel;
  const allowed = allowedModels(settings, offered);
  if (!allowed || (offered && allowed.includes(offered.defaultName))) return undefined;
  return allowed[0];
}

function mentions(ids: readonly string[], format: (id: string) => string): string {
  const shown = ids.slice(0, LISTED).map(format);
  const more = ids.length > LISTED ? ` (and ${ids.length - LISTED} more)` : '';
  return `${shown.length === 1 ? shown[0] : `${shown.slice(0, -1).join(', ')} or ${shown.at(-1)}`}${more}`;
}

/** Why a job does not fit today's quota, and when it resets (Discord shows the time in the reader's own zone). */
function quotaText(quota: 'user' | 'server', used: number, limit: number, asked: number, resetAt: number): string {
  const seconds = Math.floor(resetAt / 1000);
  const left = Math.max(limit - used, 0);
  const whose = quota === 'user' ? `You have used ${used} of your ${limit} images for today` : `This server has used ${used} of its ${limit} images for today`;
  const fits = left > 0 ? ` — ${left} left, and this job needs ${asked}` : '';
  return `📅 ${whose}${fits}. The quota resets <t:${seconds}:R> (<t:${seconds}:t>).`;
}
