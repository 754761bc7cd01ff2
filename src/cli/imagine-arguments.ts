import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { InitImageError, inspectPicture, MAX_INIT_IMAGE_PIXELS } from '../image/init-image.ts';
import { OptionError, parseSize, resolveRequests, type GenerationPolicy, type ImagineOptions } from '../jobs/options.ts';
import { checkPromptLength } from '../jobs/prompt-length.ts';
import { resolveModelDir } from '../models/default-model.ts';
import { describeInstalledModel, resolveVae, scanModels, tinyDecoderFor, type InstalledModel, type InstalledVae } from '../models/installed.ts';
import { EXECUTION_PROVIDERS, type ExecutionProvider } from '../pipeline/onnx-model.ts';
import { ClipTokenizer } from '../pipeline/tokenizer.ts';
import { REQUEST_LIMITS, type GenerateRequest } from '../pipeline/types.ts';
import { SCHEDULERS } from '../schedulers/index.ts';
import { UsageError, type CommandLine, type CommandSpec, type Flag } from './command-line.ts';
import { PROMPT_SYNTAX_FLAG, readPromptSyntax } from './prompt-syntax.ts';

/** AUTOMATIC1111's default denoising strength. */
const DEFAULT_STRENGTH = 0.75;

export const IMAGINE_SPEC = {
  name: 'imagine',
  command: 'npm run imagine --',
  usage: '"<prompt>" [options]',
  description:
    'Draws an image with Stable Diffusion and saves it with its settings (as AUTOMATIC1111 does: a PNG text chunk, or a\n' +
    "JPEG's EXIF comment, that PNG Info tabs read). Everything is checked before the model loads.",
  flags: {
    negative: { type: 'string', value: 'TEXT', help: 'What to keep out of the image.', default: 'none' },
    seed: { type: 'string', value: 'N', help: 'Seed from 0 to 2^64-1: the same seed and settings draw the same image.', default: 'random, printed' },
    steps: { type: 'string', value: 'N', help: 'Denoising steps.', default: "the model's: 20, SD-Turbo 1, LCM 4" },
    guidance: { type: 'string', value: 'X', help: 'Guidance scale (CFG), 0 or more; 1 or less skips the negative prompt.', default: "the model's: 7.5, SD-Turbo 0" },
    size: { type: 'string', value: 'WxH', help: "Width x height, in the multiples the model's U-Net takes (64 for SD 1.x and 2.x).", default: "the model's native size" },
    scheduler: {
      type: 'string',
      value: 'NAME',
      help: `${SCHEDULERS.map((entry) => `"${entry.name}"`).join(', ')}, or a diffusers class name.`,
      default: "the model's own",
    },
    model: {
      type: 'string',
      value: 'DIR|NAME',
      help: 'A model folder, an installed model name (npm run model:list), or tiny for the generated test model.',
      default: 'SD_MODEL_DIR, else the only installed model, else tiny',
    },
    vae: {
      type: 'string',
      value: 'DIR|NAME',
      help: 'Decode with another VAE: one imported with npm run model:import (e.g. TAESD, much faster).',
      default: "the model's own",
    },
    image: {
      type: 'string',
      value: 'FILE',
      help: 'Start from this picture (PNG, JPEG or WebP): img2img. Drawn at its proportions unless --size says otherwise.',
      default: 'none: from noise',
    },
    strength: {
      type: 'string',
      value: 'X',
      help: 'With --image: how much of it to redraw, more than 0 and at most 1 (AUTOMATIC1111\'s denoising strength).',
      default: String(DEFAULT_STRENGTH),
    },
    out: { type: 'string', value: 'FILE', help: 'The file to write: .png, or .jpg/.jpeg for a JPEG.', default: 'imagine-<seed>.png' },
    'prompt-syntax': PROMPT_SYNTAX_FLAG,
    'preview-dir': {
      type: 'string',
      value: 'DIR',
      help: 'Also write a small JPEG of the image forming after each step (step-NN.jpg; made with the installed tiny decoder, else a rough color map).',
      default: 'no previews',
    },
    'steps-video': {
      type: 'string',
      value: 'FILE',
      help: 'Also write the denoising as an animation, one frame per step ending on the image: FILE.webp, or FILE.gif.',
      default: 'none',
    },
  },
  notes: [
    `EXECUTION_PROVIDER picks where it runs: ${EXECUTION_PROVIDERS.join(', ')} (default: cpu).`,
    'Exit status: 0 saved, 1 the generation failed, 2 bad arguments, 130 interrupted.',
  ],
} satisfies CommandSpec<Record<string, Flag>>;

/** The command line asks for one image; the model's own limits apply, and no operator policy. */
const COMMAND_LINE_POLICY: GenerationPolicy = {
  defaultSteps: undefined,
  maxSteps: REQUEST_LIMITS.maxSteps,
  defaultGuidance: undefined,
  maxGuidance: REQUEST_LIMITS.maxGuidance,
  defaultScheduler: undefined,
  defaultSize: undefined,
  sizes: 'any',
  promptSyntax: 'a1111',
};

const IMAGE_FORMATS: Record<string, 'png' | 'jpeg'> = { '.png': 'png', '.jpg': 'jpeg', '.jpeg': 'jpeg' };

function readOptions({ values, positionals }: CommandLine<typeof IMAGINE_SPEC.flags>): ImagineOptions {
  if (positionals.length !== 1) {
    throw new UsageError(positionals.length === 0 ? 'a prompt is required' : `expected one prompt, got ${positionals.length} (quote the prompt)`);
  }
  const size = values.size === undefined ? undefined : parseSize(values.size);
  if (values.size !== undefined && !size) throw new UsageError(`--size must look like 512x512 (got "${values.size}")`);
  return {
    prompt: positionals[0],
    negativePrompt: values.negative,
    seed: values.seed?.trim(),
    steps: values.steps === undefined ? undefined : parseNumber('--steps', values.steps),
    guidance: values.guidance === undefined ? undefined : parseNumber('--guidance', values.guidance),
    size,
    scheduler: values.scheduler,
    promptSyntax: readPromptSyntax(values['prompt-syntax']),
    count: 1,
  };
}

/** --image and --strength as the job's picture: the file read and its header checked now, before the model loads. */
async function readInitImage(file: string | undefined, strengthText: string | undefined): Promise<Pick<ImagineOptions, 'initImage'>> {
  if (file === undefined) {
    if (strengthText !== undefined) throw new UsageError('--strength needs --image (the picture to start from)');
    return {};
  }
  const strength = strengthText === undefined ? DEFAULT_STRENGTH : parseNumber('--strength', strengthText);
  if (!(strength > 0 && strength <= 1)) throw new UsageError(`--strength must be more than 0 and at most 1 (got ${strengthText})`);
  let data: Buffer;
  try {
    data = await readFile(file);
  } catch (error) {
    throw new UsageError(`--image: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  try {
    const { width, height } = await inspectPicture(data, MAX_INIT_IMAGE_PIXELS);
    return { initImage: { image: data.toString('base64'), width, height, strength, source: basename(file) } };
  } catch (error) {
    if (error instanceof InitImageError) throw new UsageError(`--image ${file}: ${error.message}`);
    throw error;
  }
}

function parseNumber(flag: string, text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value)) throw new UsageError(`${flag} must be a number (got "${text}")`);
  return value;
}

/** The output file's format, from its extension; its folder must exist and be writable. */
function checkOutput(out: string | undefined): 'png' | 'jpeg' {
  if (out === undefined) return 'png';
  const format = IMAGE_FORMATS[extname(out).toLowerCase()];
  if (!format) throw new UsageError(`--out must end in .png, .jpg or .jpeg (got "${out}")`);
  const folder = dirname(resolve(out));
  try {
    if (!statSync(folder).isDirectory()) throw new Error('not a folder');
    accessSync(folder, constants.W_OK);
  } catch {
    throw new UsageError(`--out: cannot write into ${folder} (it does not exist, or is not a writable folder)`);
  }
  return format;
}

/** The folder previews go to, made when missing; it must be writable. */
function checkPreviewDir(dir: string | undefined): string | undefined {
  if (dir === undefined) return undefined;
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
  } catch {
    throw new UsageError(`--preview-dir: cannot write into ${resolve(dir)}`);
  }
  return dir;
}

const ANIMATION_FORMATS: Record<string, 'webp' | 'gif'> = { '.webp': 'webp', '.gif': 'gif' };

/** The animation's file and format, from its extension; its folder must exist and be writable. */
function checkStepsVideo(file: string | undefined): { file: string; format: 'webp' | 'gif' } | undefined {
  if (file === undefined) return undefined;
  const format = ANIMATION_FORMATS[extname(file).toLowerCase()];
  if (!format) throw new UsageError(`--steps-video must end in .webp or .gif (got "${file}")`);
  const folder = dirname(resolve(file));
  try {
    if (!statSync(folder).isDirectory()) throw new Error('not a folder');
    accessSync(folder, constants.W_OK);
  } catch {
    throw new UsageError(`--steps-video: cannot write into ${folder} (it does not exist, or is not a writable folder)`);
  }
  return { file, format };
}

/** The installed tiny decoder that fits the model, for previews (none when no models folder or none installed). */
async function tinyDecoderForPreviews(model: InstalledModel): Promise<InstalledVae | undefined> {
  const { vaes } = await scanModels().catch(() => ({ vaes: [] }));
  return tinyDecoderFor(model, vaes);
}

function executionProviderFromEnv(): ExecutionProvider | undefined {
  const value = process.env.EXECUTION_PROVIDER;
  if (value === undefined || value === '') return undefined;
  const match = EXECUTION_PROVIDERS.find((name) => name === value);
  if (!match) throw new UsageError(`EXECUTION_PROVIDER must be one of ${EXECUTION_PROVIDERS.join(', ')} (got "${value}")`);
  return match;
}

/** Everything a mistake could be found in, found before the model loads: the complete request and its model. */
async function settle(options: ImagineOptions, modelChoice: string | undefined): Promise<{ request: GenerateRequest; model: InstalledModel }> {
  const model = await resolveModelDir(modelChoice).catch((error: Error) => {
    throw new UsageError(error.message);
  });
  if (model.notice) process.stderr.write(`${model.notice}\n`);
  const installed = await describeInstalledModel(model.dir).catch((error: Error) => {
    throw new UsageError(error.message);
  });
  try {
    const [request] = resolveRequests(options, COMMAND_LINE_POLICY, installed.info);
    checkPromptLength(request, await ClipTokenizer.fromDirectory(join(model.dir, 'tokenizer')), installed.info);
    return { request, model: installed };
  } catch (error) {
    if (error instanceof OptionError) throw new UsageError(error.message);
    throw error;
  }
}

/** What `npm run imagine` was asked for, checked in full before any model loads. */
export interface ImagineArguments {
  request: GenerateRequest;
  modelDir: string;
  vae: InstalledVae | undefined;
  executionProvider: ExecutionProvider | undefined;
  out: string | undefined;
  format: 'png' | 'jpeg';
  /** Where previews go (none when absent), and the tiny decoder that draws them, when one is installed. */
  previewDir: string | undefined;
  /** Where the steps animation goes (none when absent). */
  stepsVideo: { file: string; format: 'webp' | 'gif' } | undefined;
  tinyVae: InstalledVae | undefined;
}

/** Reads the command line (and EXECUTION_PROVIDER); throws UsageError naming the first mistake. */
export async function readImagineArguments(commandLine: CommandLine<typeof IMAGINE_SPEC.flags>): Promise<ImagineArguments> {
  const { values } = commandLine;
  const options = { ...readOptions(commandLine), ...(await readInitImage(values.image, values.strength)) };
  const format = checkOutput(values.out);
  const previewDir = checkPreviewDir(values['preview-dir']);
  const stepsVideo = checkStepsVideo(values['steps-video']);
  const executionProvider = executionProviderFromEnv();
  const { request, model } = await settle(options, values.model);
  const vae = values.vae === undefined ? undefined : await resolveVae(values.vae).catch((error: Error) => Promise.reject(new UsageError(error.message)));
  const tinyVae = previewDir === undefined && stepsVideo === undefined ? undefined : await tinyDecoderForPreviews(model);
  return { request, modelDir: model.dir, vae, executionProvider, out: values.out, format, previewDir, stepsVideo, tinyVae };
}
