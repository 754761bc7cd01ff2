import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { parseSize, type GenerationPolicy } from './jobs/options.ts';
import { defaultEmbeddingsDir } from './models/embeddings.ts';
import { PIPELINE_PRESETS } from './models/presets.ts';
import { EXECUTION_PROVIDERS, type ExecutionProvider } from './pipeline/onnx-model.ts';
import { DECODERS, PROMPT_SYNTAXES } from './pipeline/types.ts';
import { PROJECT_ROOT } from './runtime.ts';

function isDirectory(path: string): boolean {
  return statSync(path, { throwIfNoEntry: false })?.isDirectory() ?? false;
}

/** Why `dir` is not a safety checker this bot can load (undefined when it is one). */
function safetyCheckerFolderProblem(dir: string): string | undefined {
  if (!isDirectory(dir)) return `${dir} is not a folder (give the safety checker's folder, with its model.onnx)`;
  if (existsSync(join(dir, 'model.onnx'))) return undefined;
  if (existsSync(join(dir, 'config.json'))) {
    return `${dir} has no model.onnx; for a PyTorch safety checker (config.json + model.safetensors) run \`npm run model:import -- ${dir} --safety-checker\` and give the folder it writes`;
  }
  return `${dir} has no model.onnx (give a model's safety_checker/ folder of an ONNX export, or one model:import --safety-checker wrote)`;
}

const snowflake = z.string({ error: 'is required' }).regex(/^\d{17,20}$/, 'must be a Discord ID (17 to 20 digits)');
const emptyAsUndefined = (value: unknown) => (value === '' ? undefined : value);
const optional = <T extends z.ZodType>(schema: T) => z.preprocess(emptyAsUndefined, schema.optional());
const integer = (min: number, fallback: number) =>
  z.preprocess(emptyAsUndefined, z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(min).default(fallback));
const size = z.string().transform((text, context) => {
  const parsed = parseSize(text);
  if (!parsed) context.addIssue({ code: 'custom', message: `"${text}" is not WIDTHxHEIGHT (e.g. 512x768)` });
  return parsed ?? { width: 0, height: 0 };
});

const environmentSchema = z.object({
  DISCORD_TOKEN: z.string({ error: 'is required (the bot token from the Developer Portal)' }).min(1, 'is required'),
  DISCORD_APPLICATION_ID: snowflake,
  DISCORD_GUILD_ID: optional(snowflake),
  DISCORD_API_URL: optional(z.url({ protocol: /^https?$/, error: 'must be an http(s) URL such as http://127.0.0.1:8080/api' })),
  DISCORD_REST_TIMEOUT_MS: integer(100, 15_000),
  SD_MODEL_DIR: optional(z.string()),
  EXECUTION_PROVIDER: z.preprocess(emptyAsUndefined, z.enum(EXECUTION_PROVIDERS).default('cpu')),
  MODELS_DIR: optional(z.string()),
  AUTO_PULL: optional(z.enum(PIPELINE_PRESETS.map((preset) => preset.name) as [string, ...string[]], { error: `must be a preset: ${PIPELINE_PRESETS.map((preset) => preset.name).join(', ')}` })),
  UPSCALER: optional(z.string()),
  SAFETY_CHECKER: optional(
    z.string().transform((path, context) => {
      const problem = safetyCheckerFolderProblem(resolve(path));
      if (problem) context.addIssue({ code: 'custom', message: problem });
      return resolve(path);
    }),
  ),
  HF_TOKEN: optional(z.string()),
  HF_ENDPOINT: optional(z.url({ protocol: /^https?$/, error: 'must be an http(s) URL such as https://huggingface.co' })),
  DEFAULT_STEPS: optional(z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(1)),
  MAX_STEPS: integer(1, 50),
  DEFAULT_GUIDANCE: optional(z.coerce.number({ error: 'must be a number' }).min(0)),
  MAX_GUIDANCE: z.preprocess(emptyAsUndefined, z.coerce.number({ error: 'must be a number' }).min(0).default(20)),
  DEFAULT_SCHEDULER: optional(z.string()),
  DEFAULT_SIZE: optional(size),
  SIZES: z.preprocess(
    emptyAsUndefined,
    z
      .string()
      .optional()
      .transform((text, context) =>
        text === undefined
          ? ('model' as const)
          : text.split(',').map((part) => {
              const parsed = parseSize(part);
              if (!parsed) context.addIssue({ code: 'custom', message: `"${part.trim()}" is not WIDTHxHEIGHT` });
              return parsed ?? { width: 0, height: 0 };
            }),
      ),
  ),
  PROMPT_SYNTAX: z.preprocess(emptyAsUndefined, z.enum(PROMPT_SYNTAXES, { error: `must be one of ${PROMPT_SYNTAXES.join(', ')}` }).default('a1111')),
  DEFAULT_DECODER: z.preprocess(emptyAsUndefined, z.enum(DECODERS, { error: `must be one of ${DECODERS.join(', ')}` }).default('full')),
  PREVIEW_EVERY_STEPS: integer(0, 1),
  PREVIEW_BUDGET_PERCENT: z.preprocess(emptyAsUndefined, z.coerce.number({ error: 'must be a number' }).positive('must be more than 0').default(3)),
  EMBEDDINGS_DIR: optional(z.string().refine(isDirectory, 'must be an existing folder (of textual-inversion .safetensors files)')),
  MAX_QUEUE: integer(1, 20),
  MAX_JOBS_PER_USER: integer(1, 2),
  DAILY_IMAGES_PER_USER: optional(z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(0)),
  DAILY_IMAGES_PER_SERVER: optional(z.coerce.number({ error: 'must be a number' }).int('must be a whole number').min(0)),
  OWNER_IDS: z.preprocess(
    emptyAsUndefined,
    z
      .string()
      .default('')
      .transform((text, context) =>
        text
          .split(',')
          .map((part) => part.trim())
          .filter(Boolean)
          .map((id) => {
            if (!/^\d{17,20}$/.test(id)) context.addIssue({ code: 'custom', message: `"${id}" is not a Discord user ID (17 to 20 digits)` });
            return id;
          }),
      ),
  ),
  QUEUE_BACKEND: z.preprocess(emptyAsUndefined, z.enum(['local', 'bullmq']).default('local')),
  DATA_DIR: optional(z.string()),
  REDIS_URL: optional(z.url({ protocol: /^rediss?$/, error: 'must be a redis:// or rediss:// URL such as redis://127.0.0.1:6379' })),
  STALLED_JOB_TIMEOUT_MS: integer(1000, 15_000),
  RESULT_TTL_MS: integer(60_000, 24 * 60 * 60_000),
  PROGRESS_EDIT_INTERVAL_MS: integer(0, 2000),
  INTERACTION_TOKEN_TTL_MS: integer(1000, 15 * 60_000),
  TOKEN_EXPIRY_MARGIN_MS: integer(0, 60_000),
  SHUTDOWN_TIMEOUT_MS: integer(0, 30_000),
  LOG_LEVEL: z.preprocess(emptyAsUndefined, z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info')),
  HEALTH_FILE: optional(z.string()),
});

export type Environment = z.infer<typeof environmentSchema>;

/** Every variable the bot reads (.env.example documents each). */
export const ENVIRONMENT_VARIABLES = Object.keys(environmentSchema.shape);

export interface BotConfig {
  discord: {
    token: string;
    applicationId: string;
    guildId: string | undefined;
    /** REST base such as http://127.0.0.1:8080/api; discord.js's default when undefined. */
    apiUrl: string | undefined;
    /** How long one REST request may take before it counts as failed (discord.js then tries again, see rest-options.ts). */
    restTimeoutMs: number;
  };
  model: {
    /** Undefined: the generated tiny model, which draws noise. */
    dir: string | undefined;
    executionProvider: ExecutionProvider;
    /** A preset to download before the first start when no model is configured (AUTO_PULL). */
    autoPull: string | undefined;
    /** The Upscale buttons' upscaler (UPSCALER): a name, a file, "lanczos"; undefined: the only one installed. */
    upscaler: string | undefined;
    /** The safety checker's folder (SAFETY_CHECKER), run on every image in the pipeline thread; none when undefined. */
    safetyChecker: string | undefined;
  };
  generation: GenerationPolicy;
  /** The textual-inversion embeddings /embeddings lists (the pipeline thread reads the same EMBEDDINGS_DIR). */
  embeddingsDir: string;
  queue: { maxQueue: number; maxJobsPerUser: number };
  /** The ceilings of every server's /settings, and who may override a server's rules. */
  servers: {
    /** Images a member may make per day (UTC) on any one server; undefined: no limit. */
    dailyImagesPerUser: number | undefined;
    /** Images one server may make per day (UTC); undefined: no limit. */
    dailyImagesPerServer: number | undefined;
    /** Users who are never blocked or limited (besides the application's owner). */
    ownerIds: string[];
  };
  /** Where jobs run: this process's pipeline thread, or workers reached through Redis. */
  backend: LocalBackendConfig | RedisBackendConfig;
  timing: {
    progressEditIntervalMs: number;
    interactionTokenTtlMs: number;
    tokenExpiryMarginMs: number;
    shutdownTimeoutMs: number;
  };
  logLevel: Environment['LOG_LEVEL'];
  /** Where the process reports its health for a container health check (`npm run healthcheck`); none when undefined. */
  healthFile: string | undefined;
}

export interface LocalBackendConfig {
  kind: 'local';
  /** Where the queue keeps its journal of accepted jobs, so a restarted bot takes them up again, and the servers' settings. */
  dataDir: string;
}

export interface RedisBackendConfig {
  kind: 'bullmq';
  redisUrl: string;
  /** How long the job of a worker that died stays claimed before another worker takes it over. */
  stalledJobTimeoutMs: number;
  /** How long a finished job's images wait in Redis for a bot to post them. */
  resultTtlMs: number;
}

/** What `npm run worker` reads: no Discord settings (workers hold no token), the generation policy comes with each job. */
export interface WorkerConfig {
  redisUrl: string;
  model: BotConfig['model'];
  stalledJobTimeoutMs: number;
  shutdownTimeoutMs: number;
  logLevel: Environment['LOG_LEVEL'];
  healthFile: string | undefined;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Validates the environment (after dotenv) and names every variable that is wrong. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): BotConfig {
  const e = parseEnvironment(environmentSchema, env);
  if (e.DEFAULT_STEPS !== undefined && e.DEFAULT_STEPS > e.MAX_STEPS) {
    throw new ConfigError(`Invalid configuration (check .env):\n  DEFAULT_STEPS: ${e.DEFAULT_STEPS} is above MAX_STEPS (${e.MAX_STEPS})`);
  }
  if (e.DEFAULT_GUIDANCE !== undefined && e.DEFAULT_GUIDANCE > e.MAX_GUIDANCE) {
    throw new ConfigError(
      `Invalid configuration (check .env):\n  DEFAULT_GUIDANCE: ${e.DEFAULT_GUIDANCE} is above MAX_GUIDANCE (${e.MAX_GUIDANCE})`,
    );
  }
  const backend: BotConfig['backend'] =
    e.QUEUE_BACKEND === 'local'
      ? { kind: 'local', dataDir: e.DATA_DIR ? resolve(e.DATA_DIR) : join(PROJECT_ROOT, 'data') }
      : { kind: 'bullmq', redisUrl: requireRedisUrl(e.REDIS_URL, 'when QUEUE_BACKEND=bullmq'), stalledJobTimeoutMs: e.STALLED_JOB_TIMEOUT_MS, resultTtlMs: e.RESULT_TTL_MS };
  return {
    discord: {
      token: e.DISCORD_TOKEN,
      applicationId: e.DISCORD_APPLICATION_ID,
      guildId: e.DISCORD_GUILD_ID,
      apiUrl: e.DISCORD_API_URL?.replace(/\/+$/, ''),
      restTimeoutMs: e.DISCORD_REST_TIMEOUT_MS,
    },
    model: { dir: e.SD_MODEL_DIR, executionProvider: e.EXECUTION_PROVIDER, autoPull: e.AUTO_PULL, upscaler: e.UPSCALER, safetyChecker: e.SAFETY_CHECKER },
    generation: {
      defaultSteps: e.DEFAULT_STEPS,
      maxSteps: e.MAX_STEPS,
      defaultGuidance: e.DEFAULT_GUIDANCE,
      maxGuidance: e.MAX_GUIDANCE,
      defaultScheduler: e.DEFAULT_SCHEDULER,
      defaultSize: e.DEFAULT_SIZE,
      sizes: e.SIZES,
      promptSyntax: e.PROMPT_SYNTAX,
      defaultDecoder: e.DEFAULT_DECODER,
      // Never faster than the reply is edited.
      ...(e.PREVIEW_EVERY_STEPS > 0 && { previews: { everySteps: e.PREVIEW_EVERY_STEPS, minIntervalMs: e.PROGRESS_EDIT_INTERVAL_MS, maxShare: e.PREVIEW_BUDGET_PERCENT / 100 } }),
    },
    embeddingsDir: defaultEmbeddingsDir(env),
    queue: { maxQueue: e.MAX_QUEUE, maxJobsPerUser: e.MAX_JOBS_PER_USER },
    servers: { dailyImagesPerUser: e.DAILY_IMAGES_PER_USER, dailyImagesPerServer: e.DAILY_IMAGES_PER_SERVER, ownerIds: e.OWNER_IDS },
    backend,
    timing: {
      progressEditIntervalMs: e.PROGRESS_EDIT_INTERVAL_MS,
      interactionTokenTtlMs: e.INTERACTION_TOKEN_TTL_MS,
      tokenExpiryMarginMs: e.TOKEN_EXPIRY_MARGIN_MS,
      shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    },
    logLevel: e.LOG_LEVEL,
    healthFile: e.HEALTH_FILE,
  };
}

const workerSchema = environmentSchema.pick({
  REDIS_URL: true,
  SD_MODEL_DIR: true,
  EXECUTION_PROVIDER: true,
  MODELS_DIR: true,
  AUTO_PULL: true,
  UPSCALER: true,
  SAFETY_CHECKER: true,
  HF_TOKEN: true,
  HF_ENDPOINT: true,
  EMBEDDINGS_DIR: true,
  STALLED_JOB_TIMEOUT_MS: true,
  SHUTDOWN_TIMEOUT_MS: true,
  LOG_LEVEL: true,
  HEALTH_FILE: true,
});

/** The worker's share of the environment; REDIS_URL is required. */
export function loadWorkerConfig(env: NodeJS.ProcessEnv = process.env): WorkerConfig {
  const e = parseEnvironment(workerSchema, env);
  return {
    redisUrl: requireRedisUrl(e.REDIS_URL, 'for a worker (it takes its jobs from Redis)'),
    model: { dir: e.SD_MODEL_DIR, executionProvider: e.EXECUTION_PROVIDER, autoPull: e.AUTO_PULL, upscaler: e.UPSCALER, safetyChecker: e.SAFETY_CHECKER },
    stalledJobTimeoutMs: e.STALLED_JOB_TIMEOUT_MS,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    logLevel: e.LOG_LEVEL,
    healthFile: e.HEALTH_FILE,
  };
}

function parseEnvironment<T extends z.ZodType>(schema: T, env: NodeJS.ProcessEnv): z.infer<T> {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `  ${issue.path.join('.') || '(environment)'}: ${issue.message}`);
    throw new ConfigError(`Invalid configuration (check .env):\n${problems.join('\n')}`);
  }
  return parsed.data;
}

function requireRedisUrl(url: string | undefined, when: string): string {
  if (url === undefined) throw new ConfigError(`Invalid configuration (check .env):\n  REDIS_URL: is required ${when}`);
  return url;
}
