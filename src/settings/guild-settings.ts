import { z } from 'zod';
import { PROMPT_SYNTAXES, type PromptSyntax } from '../pipeline/types.ts';

// A server's own settings, as moderators change them with /settings. Every field is optional: what a server has not
// set follows the operator's environment, which also stays the ceiling of every limit (see server-policy.ts).

export interface GuildSettings {
  defaultModel?: string;
  defaultSteps?: number;
  defaultGuidance?: number;
  defaultScheduler?: string;
  /** WIDTHxHEIGHT. */
  defaultSize?: string;
  defaultCount?: number;
  promptSyntax?: PromptSyntax;
  maxSteps?: number;
  /** Model names a job may use on this server; every installed one when absent. */
  allowedModels?: string[];
  /** Images a member may make per day (UTC). */
  userDailyImages?: number;
  /** Images the whole server may make per day (UTC). */
  serverDailyImages?: number;
  /** Jobs this server may have waiting or running at once. */
  queueShare?: number;
  /** Channels /imagine works in; every channel when empty. */
  allowedChannels?: string[];
  /** Roles whose members may use /imagine; everyone when empty. */
  allowedRoles?: string[];
  blockedUsers?: string[];
  blockedRoles?: string[];
  bannedWords?: string[];
  /** What happens to images the safety checker flags, outside age-restricted channels. */
  safety?: SafetyPolicy;
  /** The same in age-restricted (NSFW) channels. */
  safetyNsfwChannels?: SafetyPolicy;
}

/** off: posted as they are; spoiler: posted behind a spoiler; refuse: not posted (the requester is told why). */
export const SAFETY_POLICIES = ['off', 'spoiler', 'refuse'] as const;
export type SafetyPolicy = (typeof SAFETY_POLICIES)[number];
/** What applies while a server has chosen nothing: flagged images are hidden behind a spoiler except where the channel is age-restricted. */
export const DEFAULT_SAFETY: SafetyPolicy = 'spoiler';
export const DEFAULT_SAFETY_NSFW_CHANNELS: SafetyPolicy = 'off';

/** The policy for a job's flagged images, from the server's settings and whether its channel is age-restricted. */
export function safetyPolicyFor(settings: GuildSettings, ageRestricted: boolean): SafetyPolicy {
  return ageRestricted ? (settings.safetyNsfwChannels ?? DEFAULT_SAFETY_NSFW_CHANNELS) : (settings.safety ?? DEFAULT_SAFETY);
}

const count = z.number().int().min(0);
const ids = z.array(z.string().regex(/^\d{17,20}$/));

const guildSettingsSchema = z.object({
  defaultModel: z.string().min(1).optional(),
  defaultSteps: z.number().int().min(1).optional(),
  defaultGuidance: z.number().min(0).optional(),
  defaultScheduler: z.string().min(1).optional(),
  defaultSize: z.string().regex(/^\d+x\d+$/).optional(),
  defaultCount: z.number().int().min(1).optional(),
  promptSyntax: z.enum(PROMPT_SYNTAXES).optional(),
  maxSteps: z.number().int().min(1).optional(),
  allowedModels: z.array(z.string().min(1)).optional(),
  userDailyImages: count.optional(),
  serverDailyImages: count.optional(),
  queueShare: z.number().int().min(1).optional(),
  allowedChannels: ids.optional(),
  allowedRoles: ids.optional(),
  blockedUsers: ids.optional(),
  blockedRoles: ids.optional(),
  bannedWords: z.array(z.string().min(1)).optional(),
  safety: z.enum(SAFETY_POLICIES).optional(),
  safetyNsfwChannels: z.enum(SAFETY_POLICIES).optional(),
}) satisfies z.ZodType<GuildSettings>;

/** The settings stored as JSON text; throws naming the first problem when the text is not a server's settings. */
export function parseGuildSettings(json: string): GuildSettings {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (error) {
    throw new Error(`not JSON (${(error as Error).message})`);
  }
  const parsed = guildSettingsSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${issue.path.join('.') || 'the settings'}: ${issue.message}`);
  }
  return parsed.data;
}

/** What a settings field holds, for the JSON a store keeps: unset fields and empty lists are left out. */
export function compactSettings(settings: GuildSettings): GuildSettings {
  return Object.fromEntries(
    Object.entries(settings).filter(([, value]) => value !== undefined && !(Array.isArray(value) && value.length === 0)),
  ) as GuildSettings;
}

export type SettingName = keyof GuildSettings;
