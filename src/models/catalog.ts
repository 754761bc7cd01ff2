import { resolve } from 'node:path';
import { OptionError, quoteInput } from '../jobs/options.ts';
import type { ModelInfo } from '../pipeline/types.ts';
import { defaultModelsDir, describeInstalledModel, scanModels, tinyDecoderFor, type InstalledModel } from './installed.ts';

/** The models jobs may name, as a bot offers them: the default one's name and each model's description. */
export interface OfferedModels {
  defaultName: string;
  /** By name, sorted. */
  models: readonly ModelInfo[];
}

export interface CatalogEntry {
  name: string;
  dir: string;
  /** Read from the model's files, without loading it: what requests for it are checked against. */
  info: ModelInfo;
  /** The installed tiny decoder the model's pipeline loads beside its VAE (its name is info.tinyDecoder). */
  tinyVaeDir?: string;
}

/**
 * The models jobs may ask for by name: those installed under the models directory, plus the default model
 * (which may live elsewhere: SD_MODEL_DIR, or the generated tiny model). Names are looked up, never used as paths.
 */
export class ModelCatalog {
  private constructor(
    private readonly entries: ReadonlyMap<string, CatalogEntry>,
    readonly defaultName: string,
  ) {}

  static async load(defaultModelDir: string, modelsDir: string = defaultModelsDir()): Promise<ModelCatalog> {
    const { models, vaes } = await scanModels(modelsDir);
    const entryOf = (model: InstalledModel): CatalogEntry => {
      const tiny = tinyDecoderFor(model, vaes);
      return tiny ? { name: model.name, dir: model.dir, info: { ...model.info, tinyDecoder: tiny.name }, tinyVaeDir: tiny.dir } : { name: model.name, dir: model.dir, info: model.info };
    };
    const entries = new Map<string, CatalogEntry>();
    for (const model of models) entries.set(model.name, entryOf(model));
    const installedDefault = [...entries.values()].find((entry) => resolve(entry.dir) === resolve(defaultModelDir));
    if (installedDefault) return new ModelCatalog(entries, installedDefault.name);
    const described = await describeInstalledModel(defaultModelDir);
    // A default model from elsewhere that shares a name with an installed one wins: jobs without a model get it.
    entries.set(described.name, entryOf(described));
    return new ModelCatalog(entries, described.name);
  }

  /** Every name a job may ask for, sorted. */
  names(): string[] {
    return [...this.entries.keys()].sort((a, b) => a.localeCompare(b));
  }

  /** The entry for a job's model option (the default when absent); throws OptionError naming the choices. */
  resolve(name: string | undefined): CatalogEntry {
    const entry = this.entries.get(name ?? this.defaultName);
    if (entry) return entry;
    throw new OptionError(`No model is called ${quoteInput(name ?? this.defaultName)}; choose one of ${this.names().join(', ')}.`);
  }
}

/**
 * The model a job's options are checked against: the one it names, as the catalog describes it, or with no
 * catalog the loaded model (undefined while loading), which is then the only name allowed. Throws OptionError.
 */
export function modelForJob(requested: string | undefined, catalog: ModelCatalog | undefined, loaded: ModelInfo | undefined): ModelInfo | undefined {
  if (catalog) return catalog.resolve(requested).info;
  if (loaded && requested !== undefined && requested !== loaded.name) {
    throw new OptionError(`No model is called ${quoteInput(requested)}; this bot runs ${loaded.name} only.`);
  }
  return loaded;
}

/** What a backend offers: its catalog's models (known before any loads), else its one model once loaded. */
export function offeredModels(catalog: ModelCatalog | undefined, loaded: ModelInfo | undefined): OfferedModels | undefined {
  if (catalog) return { defaultName: catalog.defaultName, models: catalog.names().map((name) => catalog.resolve(name).info) };
  return loaded && { defaultName: loaded.name, models: [loaded] };
}

/** The offered model a job's option names (the default when absent); throws OptionError naming the choices. */
export function offeredModel(offered: OfferedModels, name: string | undefined): ModelInfo {
  const wanted = name ?? offered.defaultName;
  const model = offered.models.find((candidate) => candidate.name === wanted);
  if (!model) throw new OptionError(`No model is called ${quoteInput(wanted)}; choose one of ${offered.models.map((candidate) => candidate.name).join(', ')}.`);
  return model;
}
