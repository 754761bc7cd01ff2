import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { isPickleName, pickleRefusal, SafetensorsFile, SafetensorsSet } from '../models/safetensors.ts';
import { WEIGHT_FILE_NAMES } from '../models/select-files.ts';


/** A JSON file holding an object (a config, model_index.json); `what` names it in the error. */
export function readJsonObject(path: string, what: string): Record<string, unknown> {
  if (!existsSync(path)) throw new Error(`${what}: ${path} is missing`);
  try {
    const value = JSON.parse(readFileSync(path, 'utf8'));
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not a JSON object');
    return value;
  } catch (error) {
    throw new Error(`${what}: cannot read ${path}: ${(error as Error).message}`);
  }
}

/** A component folder's config.json. */
export function readComponentConfig(dir: string, component: string): Record<string, unknown> {
  return readJsonObject(join(dir, 'config.json'), component);
}

/**
 * Opens the weights of a diffusers / transformers component folder: `<name>.safetensors`, or the shards listed
 * in `<name>.safetensors.index.json`, preferring full precision over an `.fp16` variant. Pickled weights alone
 * are refused, with how to get safetensors.
 */
export function openComponentWeights(dir: string, component: string): SafetensorsSet {
  for (const { single, indexes } of WEIGHT_FILE_NAMES) {
    if (existsSync(join(dir, single))) return new SafetensorsSet([SafetensorsFile.open(join(dir, single))]);
    const index = indexes.map((name) => join(dir, name)).find(existsSync);
    if (index) return openShards(dir, index, component);
  }
  const files = existsSync(dir) ? readdirSync(dir) : [];
  const pickle = files.find(isPickleName);
  if (pickle) throw pickleRefusal(join(dir, pickle));
  throw new Error(`${component}: ${dir} has no .safetensors weights${files.length ? ` (it has ${files.slice(0, 8).join(', ')})` : ''}`);
}

function openShards(dir: string, indexPath: string, component: string): SafetensorsSet {
  let weightMap: Record<string, unknown>;
  try {
    weightMap = JSON.parse(readFileSync(indexPath, 'utf8')).weight_map;
    if (weightMap === null || typeof weightMap !== 'object') throw new Error('no weight_map');
  } catch (error) {
    throw new Error(`${component}: cannot read ${basename(indexPath)}: ${(error as Error).message}`);
  }
  const shards = [...new Set(Object.values(weightMap))];
  const files: SafetensorsFile[] = [];
  try {
    for (const shard of shards) {
      if (typeof shard !== 'string' || shard !== basename(shard) || !shard.endsWith('.safetensors')) {
        throw new Error(`${component}: ${basename(indexPath)} lists ${JSON.stringify(shard)}, not a .safetensors file beside it`);
      }
      files.push(SafetensorsFile.open(join(dir, shard)));
    }
  } catch (error) {
    for (const file of files) file.close();
    throw error;
  }
  return new SafetensorsSet(files);
}
