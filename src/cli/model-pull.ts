// npm run model:pull -- <preset | owner/repo> [options]   (--help lists them)
import { mkdir } from 'node:fs/promises';
import { config as loadDotenv } from 'dotenv';
import { autoPull } from '../models/first-run.ts';
import { checkRepoId } from '../models/hub-client.ts';
import { defaultModelsDir } from '../models/installed.ts';
import { PRESETS, findPreset } from '../models/presets.ts';
import { importModel } from '../import/import-model.ts';
import { PullProgress } from '../models/pull-progress.ts';
import { defaultModelName, displayPath, formatBytes, pullModel } from '../models/pull.ts';
import { runCli, UsageError, type CommandLine, type CommandSpec, type Flag } from './command-line.ts';
import { ImportProgress } from './import-progress.ts';

const SPEC = {
  name: 'model:pull',
  command: 'npm run model:pull --',
  usage: '<preset | owner/repo> [options]   |   --list   |   --auto',
  description:
    'Downloads a diffusers ONNX Stable Diffusion model from the Hugging Face hub into models/<name>, every file verified\n' +
    'against the hub\'s listing; an interrupted pull resumes when run again. A repository of PyTorch weights instead\n' +
    '(the diffusers layout, .safetensors) is downloaded the same way and imported (see npm run model:import).',
  flags: {
    revision: { type: 'string', value: 'REV', help: 'Branch, tag or commit of the repository.', default: "the preset's, else main" },
    subfolder: { type: 'string', value: 'DIR', help: 'The folder of the repository the model is in.', default: "the preset's, else the top" },
    name: { type: 'string', value: 'NAME', help: 'The installed model\'s name (its folder under models/).', default: 'the preset name, else the repository name' },
    force: { type: 'boolean', help: 'Download again even when the model is installed.' },
    list: { type: 'boolean', help: 'List the presets with their download sizes.' },
    auto: {
      type: 'boolean',
      help: 'Pull the AUTO_PULL preset unless it is installed (what npm start does first); nothing without AUTO_PULL.',
    },
  },
  notes: [
    'HF_TOKEN: access token for gated or private repositories. HF_ENDPOINT: another hub (a mirror).',
    'MODELS_DIR: where models go (default: models/ in the project).',
  ],
} satisfies CommandSpec<Record<string, Flag>>;

function presetTable(): string {
  const rows = PRESETS.map((preset) => [
    preset.name,
    preset.type,
    preset.precision,
    `~${formatBytes(preset.bytes)}`,
    `${preset.repo}${preset.revision === 'main' ? '' : `@${preset.revision}`}${preset.subfolder ? ` (${preset.subfolder}/)` : ''}`,
  ]);
  const header = ['preset', 'type', 'precision', 'download', 'repository'];
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column].length)));
  const format = (row: string[]) => row.map((cell, column) => cell.padEnd(widths[column])).join('  ').trimEnd();
  const descriptions = PRESETS.map((preset) => `  ${preset.name}: ${preset.description}`);
  return [format(header), ...rows.map(format), '', ...descriptions].join('\n');
}

function readCommandLine({ values, positionals }: CommandLine<typeof SPEC.flags>) {
  if (values.list) return { show: presetTable() } as const;
  if (values.auto) {
    if (positionals.length > 0) throw new UsageError('--auto pulls the AUTO_PULL preset; name no model with it');
    return { auto: true } as const;
  }
  if (positionals.length !== 1) {
    throw new UsageError(positionals.length === 0 ? 'name a preset or a repository (npm run model:pull -- --list shows the presets)' : `expected one preset or repository, got ${positionals.length}`);
  }
  const source = positionals[0];
  const preset = findPreset(source);
  if (!preset) {
    try {
      checkRepoId(source);
    } catch (error) {
      throw new UsageError(`${(error as Error).message}, nor a preset (${PRESETS.map((p) => p.name).join(', ')})`);
    }
  }
  return {
    request: {
      repo: preset?.repo ?? source,
      revision: values.revision ?? preset?.revision,
      subfolder: values.subfolder ?? preset?.subfolder,
      name: values.name ?? preset?.name ?? defaultModelName(source),
      ...(preset?.file ? { file: preset.file } : {}),
      force: values.force ?? false,
    },
  } as const;
}

async function main(commandLine: CommandLine<typeof SPEC.flags>): Promise<number> {
  loadDotenv({ quiet: true });
  const args = readCommandLine(commandLine);
  if ('show' in args) {
    process.stdout.write(`${args.show}\n`);
    return 0;
  }
  if ('auto' in args) {
    const dir = await autoPull();
    process.stdout.write(dir ? `${displayPath(dir)} is installed.\n` : 'AUTO_PULL is not set: nothing to pull.\n');
    return 0;
  }
  const modelsDir = defaultModelsDir();
  await mkdir(modelsDir, { recursive: true });
  const controller = new AbortController();
  const interrupt = () => controller.abort();
  process.once('SIGINT', interrupt);
  const progress = new PullProgress(process.stderr);
  const importProgress = new ImportProgress(process.stderr);
  try {
    const result = await pullModel(
      { ...args.request, modelsDir },
      {
        onEvent: progress.onEvent,
        signal: controller.signal,
        importPytorch: (folder, origin) => {
          progress.finish();
          // The import holds the thread: Ctrl-C stops it at once, leaving only hidden folders a new run reuses.
          process.off('SIGINT', interrupt);
          const { name, force } = args.request;
          return importModel({ source: folder, name, modelsDir, force, origin }, { onEvent: importProgress.onEvent }).finally(() => importProgress.finish());
        },
      },
    );
    const upscaler = args.request.file !== undefined;
    progress.finish();
    const shown = displayPath(result.dir);
    const commit = result.commit ? ` (commit ${result.commit.slice(0, 10)})` : '';
    const files = `${result.files} files, ${formatBytes(result.bytes)}, all verified`;
    process.stdout.write(
      `Installed ${result.name} from ${result.repo}${commit} into ${shown}${result.imported ? `, built from its PyTorch weights (${files})` : `: ${files}`}.\n` +
        (upscaler ? `The Upscale buttons use it (UPSCALER=${result.name} when several are installed).\n` : `Try it: npm run imagine -- "a lighthouse at dusk" --model ${shown}\n`),
    );
    return 0;
  } catch (error) {
    progress.finish();
    if (controller.signal.aborted) {
      process.stderr.write('model:pull: interrupted; run the same command again to resume where it stopped.\n');
      return 130;
    }
    throw error;
  }
}

runCli(SPEC, main);
