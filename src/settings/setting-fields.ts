import { listedSizes, MAX_IMAGES_PER_JOB, parseSize, sizeLabel } from '../jobs/options.ts';
import type { OfferedModels } from '../models/catalog.ts';
import { PROMPT_SYNTAXES } from '../pipeline/types.ts';
import { isSchedulerName, SCHEDULERS } from '../schedulers/index.ts';
import { normalizeBannedWord } from './banned-words.ts';
import { DEFAULT_SAFETY, DEFAULT_SAFETY_NSFW_CHANNELS, SAFETY_POLICIES, type GuildSettings, type SafetyPolicy, type SettingName } from './guild-settings.ts';
import { operatorOffersSize, serverPolicy, type OperatorLimits } from './server-policy.ts';

// What /settings can change, each with how a moderator's text becomes its value and how it reads back. A value above
// the operator's limit is refused here with the limit named; server-policy.ts bounds it again when it is used.

/** A value a moderator typed that the setting does not take; the message is for them. */
export class SettingValueError extends Error {
  override name = 'SettingValueError';
}

export interface SettingContext {
  operator: OperatorLimits;
  /** The models the bot offers now; undefined while no model is known (model names are then taken as typed). */
  offered: OfferedModels | undefined;
  /** The server's settings before this change. */
  settings: GuildSettings;
}

export interface SettingField<K extends SettingName = SettingName> {
  key: K;
  /** The choice's value in /settings (snake case, as Discord shows option values). */
  option: string;
  label: string;
  /** What it does, for the help line. */
  help: string;
  /** What applies while the server has not set it (the bot operator's choice). */
  unset(context: Omit<SettingContext, 'settings'>): string;
  parse(text: string, context: SettingContext): NonNullable<GuildSettings[K]>;
  format(value: NonNullable<GuildSettings[K]>): string;
  /** Values to suggest while a moderator types (those with a fixed set of choices). */
  suggestions?(context: Omit<SettingContext, 'settings'>): string[];
}

/** Lists are short: a server's ids and words beyond these counts would be a mistake (or an attack on the store). */
const MAX_IDS = 100;
const MAX_BANNED_WORDS = 500;
const MAX_BANNED_WORD_LENGTH = 100;

function field<K extends SettingName>(definition: SettingField<K>): SettingField<K> {
  return definition;
}

function wholeNumber(text: string, what: string, min: number, max: number | undefined): number {
  const trimmed = text.trim();
  if (!/^\d{1,9}$/.test(trimmed)) throw new SettingValueError(`${what} must be a whole number.`);
  const value = Number(trimmed);
  if (value < min) throw new SettingValueError(`${what} must be at least ${min}.`);
  if (max !== undefined && value > max) throw new SettingValueError(`${what} can be at most ${max}, the bot operator's limit.`);
  return value;
}

function installedModel(text: string, offered: OfferedModels | undefined): string {
  const name = text.trim();
  if (name === '') throw new SettingValueError('Give a model name.');
  if (offered && !offered.models.some((model) => model.name === name)) {
    throw new SettingValueError(`No model is called "${name}"; the installed ones are ${offered.models.map((model) => model.name).join(', ')}.`);
  }
  return name;
}

/** Discord ids from mentions (<#id>, <@&id>, <@id>, <@!id>) or bare ids, separated by spaces or commas. */
function discordIds(text: string, what: string): string[] {
  const parts = text.split(/[\s,]+/).filter(Boolean);
  const ids = parts.map((part) => {
    const match = /^(?:<(?:#|@&|@!?))?(\d{17,20})>?$/.exec(part);
    if (!match) throw new SettingValueError(`"${part.slice(0, 40)}" is not a ${what} (mention it, or give its id).`);
    return match[1];
  });
  const unique = [...new Set(ids)];
  if (unique.length === 0) throw new SettingValueError(`Give at least one ${what}.`);
  if (unique.length > MAX_IDS) throw new SettingValueError(`At most ${MAX_IDS} of them.`);
  return unique;
}

function safetyPolicy(text: string): SafetyPolicy {
  const value = text.trim().toLowerCase();
  const policy = SAFETY_POLICIES.find((candidate) => candidate === value);
  if (!policy) throw new SettingValueError(`Choose ${SAFETY_POLICIES.join(', ')}.`);
  return policy;
}

const channelList = (ids: readonly string[]) => ids.map((id) => `<#${id}>`).join(' ');
const roleList = (ids: readonly string[]) => ids.map((id) => `<@&${id}>`).join(' ');
const userList = (ids: readonly string[]) => ids.map((id) => `<@${id}>`).join(' ');

export const SETTING_FIELDS = [
  field({
    key: 'defaultModel',
    option: 'default_model',
    label: 'Default model',
    help: 'the model a job uses when it names none',
    unset: ({ offered }) => offered?.defaultName ?? 'the bot’s default model',
    parse: (text, { offered }) => installedModel(text, offered),
    format: (value) => value,
    suggestions: ({ offered }) => offered?.models.map((model) => model.name) ?? [],
  }),
  field({
    key: 'defaultSteps',
    option: 'default_steps',
    label: 'Default steps',
    help: 'denoising steps when a job gives none (bounded by the model and max steps)',
    unset: ({ operator }) => String(operator.generation.defaultSteps ?? 'the model’s'),
    parse: (text, { operator, settings }) => wholeNumber(text, 'Default steps', 1, serverPolicy(operator, settings).generation.maxSteps),
    format: String,
  }),
  field({
    key: 'defaultGuidance',
    option: 'default_guidance',
    label: 'Default guidance',
    help: 'the CFG scale when a job gives none',
    unset: ({ operator }) => String(operator.generation.defaultGuidance ?? 'the model’s'),
    parse: (text, { operator }) => {
      const value = Number(text.trim());
      if (text.trim() === '' || !Number.isFinite(value) || value < 0) throw new SettingValueError('Default guidance must be a number of at least 0.');
      const max = operator.generation.maxGuidance;
      if (value > max) throw new SettingValueError(`Default guidance can be at most ${max}, the bot operator's limit.`);
      return value;
    },
    format: String,
  }),
  field({
    key: 'defaultScheduler',
    option: 'default_scheduler',
    label: 'Default scheduler',
    help: 'the sampler when a job names none',
    unset: ({ operator }) => operator.generation.defaultScheduler ?? 'the model’s',
    parse: (text) => {
      const name = text.trim();
      if (!isSchedulerName(name)) throw new SettingValueError(`Unknown scheduler "${name.slice(0, 40)}"; choose one of ${SCHEDULERS.map((entry) => entry.name).join(', ')}.`);
      return name;
    },
    format: (value) => value,
    suggestions: () => SCHEDULERS.map((entry) => entry.name),
  }),
  field({
    key: 'defaultSize',
    option: 'default_size',
    label: 'Default size',
    help: 'WIDTHxHEIGHT when a job gives none (one of the sizes the bot offers)',
    unset: ({ operator }) => (operator.generation.defaultSize ? sizeLabel(operator.generation.defaultSize) : 'the model’s native size'),
    parse: (text, { operator }) => {
      const size = parseSize(text);
      if (!size) throw new SettingValueError(`"${text.trim().slice(0, 40)}" is not WIDTHxHEIGHT, e.g. 512x768.`);
      const label = sizeLabel(size);
      if (!operatorOffersSize(operator.generation, label)) {
        const sizes = listedSizes(operator.generation).map(sizeLabel);
        throw new SettingValueError(`The bot does not offer ${label}; choose one of ${sizes.join(', ')}.`);
      }
      return label;
    },
    format: (value) => value,
    suggestions: ({ operator }) => listedSizes(operator.generation).map(sizeLabel),
  }),
  field({
    key: 'defaultCount',
    option: 'default_count',
    label: 'Default count',
    help: 'images per job when a job gives no count',
    unset: () => '1',
    parse: (text) => wholeNumber(text, 'Default count', 1, MAX_IMAGES_PER_JOB),
    format: String,
  }),
  field({
    key: 'promptSyntax',
    option: 'prompt_syntax',
    label: 'Prompt syntax',
    help: '`a1111` reads (word:1.3) weights and [de-emphasis]; `plain` reads the prompt as plain text, as diffusers does',
    unset: ({ operator }) => operator.generation.promptSyntax,
    parse: (text) => {
      const value = text.trim().toLowerCase();
      const syntax = PROMPT_SYNTAXES.find((candidate) => candidate === value);
      if (!syntax) throw new SettingValueError(`Prompt syntax is ${PROMPT_SYNTAXES.join(' or ')}.`);
      return syntax;
    },
    format: (value) => value,
    suggestions: () => [...PROMPT_SYNTAXES],
  }),
  field({
    key: 'maxSteps',
    option: 'max_steps',
    label: 'Max steps',
    help: 'the most denoising steps a job may ask for',
    unset: ({ operator }) => String(operator.generation.maxSteps),
    parse: (text, { operator }) => wholeNumber(text, 'Max steps', 1, operator.generation.maxSteps),
    format: String,
  }),
  field({
    key: 'allowedModels',
    option: 'allowed_models',
    label: 'Allowed models',
    help: 'the installed models jobs may use, separated by commas (every one when unset)',
    unset: () => 'every installed model',
    parse: (text, { offered }) => {
      const names = [...new Set(text.split(',').map((name) => name.trim()).filter(Boolean))];
      if (names.length === 0) throw new SettingValueError('Give at least one model name.');
      return names.map((name) => installedModel(name, offered));
    },
    format: (value) => value.join(', '),
  }),
  field({
    key: 'userDailyImages',
    option: 'user_daily_images',
    label: 'Images per member per day',
    help: 'a member’s daily quota on this server (resets at 00:00 UTC)',
    unset: ({ operator }) => String(operator.dailyImagesPerUser ?? 'no limit'),
    parse: (text, { operator }) => wholeNumber(text, 'Images per member per day', 0, operator.dailyImagesPerUser),
    format: String,
  }),
  field({
    key: 'serverDailyImages',
    option: 'server_daily_images',
    label: 'Images per day (whole server)',
    help: 'the whole server’s daily quota (resets at 00:00 UTC)',
    unset: ({ operator }) => String(operator.dailyImagesPerServer ?? 'no limit'),
    parse: (text, { operator }) => wholeNumber(text, 'Images per day', 0, operator.dailyImagesPerServer),
    format: String,
  }),
  field({
    key: 'queueShare',
    option: 'queue_share',
    label: 'Queue share',
    help: 'the most jobs this server may have waiting or running at once',
    unset: ({ operator }) => `the whole queue (${operator.maxQueue} jobs)`,
    parse: (text, { operator }) => wholeNumber(text, 'Queue share', 1, operator.maxQueue),
    format: String,
  }),
  field({
    key: 'allowedChannels',
    option: 'allowed_channels',
    label: 'Allowed channels',
    help: 'the channels /imagine works in (mention them; every channel when unset)',
    unset: () => 'every channel',
    parse: (text) => discordIds(text, 'channel'),
    format: channelList,
  }),
  field({
    key: 'allowedRoles',
    option: 'allowed_roles',
    label: 'Allowed roles',
    help: 'the roles whose members may use /imagine (everyone when unset)',
    unset: () => 'everyone',
    parse: (text) => discordIds(text, 'role'),
    format: roleList,
  }),
  field({
    key: 'blockedUsers',
    option: 'blocked_users',
    label: 'Blocked members',
    help: 'members who may not use /imagine here',
    unset: () => 'none',
    parse: (text) => discordIds(text, 'member'),
    format: userList,
  }),
  field({
    key: 'blockedRoles',
    option: 'blocked_roles',
    label: 'Blocked roles',
    help: 'roles whose members may not use /imagine here',
    unset: () => 'none',
    parse: (text) => discordIds(text, 'role'),
    format: roleList,
  }),
  field({
    key: 'bannedWords',
    option: 'banned_words',
    label: 'Banned words',
    help: 'words and phrases refused in prompts, separated by commas (whole words, any case)',
    unset: () => 'none',
    parse: (text) => {
      const words = text.split(',').map((word) => word.trim()).filter(Boolean);
      for (const word of words) {
        if ([...word].length > MAX_BANNED_WORD_LENGTH) throw new SettingValueError(`A banned word or phrase is at most ${MAX_BANNED_WORD_LENGTH} characters.`);
        if (normalizeBannedWord(word) === '') throw new SettingValueError(`"${word.slice(0, 40)}" has no letters or digits to match.`);
      }
      const unique = [...new Set(words)];
      if (unique.length === 0) throw new SettingValueError('Give at least one word or phrase, separated by commas.');
      if (unique.length > MAX_BANNED_WORDS) throw new SettingValueError(`At most ${MAX_BANNED_WORDS} banned words and phrases.`);
      return unique;
    },
    // Shown only to moderators, behind spoilers: the list is not something to read by accident.
    format: (value) => value.map((word) => `||${word.replace(/\|/g, '')}||`).join(', '),
  }),
  field({
    key: 'safety',
    option: 'safety',
    label: 'Safety checker',
    help: 'images the safety checker flags: `off` posts them as they are, `spoiler` behind a spoiler, `refuse` not at all (outside age-restricted channels)',
    unset: () => DEFAULT_SAFETY,
    parse: safetyPolicy,
    format: (value) => value,
    suggestions: () => [...SAFETY_POLICIES],
  }),
  field({
    key: 'safetyNsfwChannels',
    option: 'safety_nsfw_channels',
    label: 'Safety checker in age-restricted channels',
    help: 'the same for channels marked age-restricted (NSFW)',
    unset: () => DEFAULT_SAFETY_NSFW_CHANNELS,
    parse: safetyPolicy,
    format: (value) => value,
    suggestions: () => [...SAFETY_POLICIES],
  }),
] as const satisfies readonly SettingField<SettingName>[];

export function settingField(option: string): SettingField | undefined {
  return (SETTING_FIELDS as readonly SettingField[]).find((candidate) => candidate.option === option);
}
