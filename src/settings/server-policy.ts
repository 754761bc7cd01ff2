import type { BotConfig } from '../config.ts';
import { listedSizes, parseSize, sizeLabel, type GenerationPolicy } from '../jobs/options.ts';
import type { GuildSettings } from './guild-settings.ts';

// The operator's environment is the ceiling of every server's settings: a server may lower a limit or choose a
// default within it, never go beyond it. Values are checked when a moderator sets them (see setting-fields.ts) and
// bounded again when used, so an operator who lowers a limit later lowers it for every server at once.

/** What the operator set for every server (environment variables). */
export interface OperatorLimits {
  generation: GenerationPolicy;
  /** MAX_QUEUE: the most jobs waiting or running, all servers together. */
  maxQueue: number;
  /** DAILY_IMAGES_PER_USER / DAILY_IMAGES_PER_SERVER; undefined: no daily limit. */
  dailyImagesPerUser: number | undefined;
  dailyImagesPerServer: number | undefined;
}

export function operatorLimits(config: BotConfig): OperatorLimits {
  return { generation: config.generation, maxQueue: config.queue.maxQueue, ...config.servers };
}

/** The server's limits and defaults in force, each within the operator's. */
export interface ServerPolicy {
  generation: GenerationPolicy;
  userDailyImages: number | undefined;
  serverDailyImages: number | undefined;
  /** Jobs the server may have waiting or running at once; undefined: only MAX_QUEUE applies. */
  queueShare: number | undefined;
}

export function serverPolicy(operator: OperatorLimits, settings: GuildSettings): ServerPolicy {
  const base = operator.generation;
  const defaultGuidance = settings.defaultGuidance !== undefined && settings.defaultGuidance <= base.maxGuidance ? settings.defaultGuidance : base.defaultGuidance;
  const size = settings.defaultSize === undefined ? undefined : parseSize(settings.defaultSize);
  const defaultSize = size && operatorOffersSize(base, settings.defaultSize!) ? size : base.defaultSize;
  return {
    generation: {
      ...base,
      maxSteps: Math.min(base.maxSteps, settings.maxSteps ?? base.maxSteps),
      // stepRange bounds the default by maxSteps.
      defaultSteps: settings.defaultSteps ?? base.defaultSteps,
      defaultGuidance,
      defaultScheduler: settings.defaultScheduler ?? base.defaultScheduler,
      defaultSize,
      promptSyntax: settings.promptSyntax ?? base.promptSyntax,
    },
    userDailyImages: lowest(operator.dailyImagesPerUser, settings.userDailyImages),
    serverDailyImages: lowest(operator.dailyImagesPerServer, settings.serverDailyImages),
    queueShare: settings.queueShare === undefined || settings.queueShare >= operator.maxQueue ? undefined : settings.queueShare,
  };
}

/** Whether the operator offers this size (SIZES, or those that suit the models without it, or DEFAULT_SIZE; any size when SIZES=any). */
export function operatorOffersSize(policy: GenerationPolicy, label: string): boolean {
  if (policy.sizes === 'any') return true;
  return [...listedSizes(policy), ...(policy.defaultSize ? [policy.defaultSize] : [])].some((size) => sizeLabel(size) === label);
}

/** The lower of two limits, where undefined means none. */
function lowest(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.min(a, b);
}
