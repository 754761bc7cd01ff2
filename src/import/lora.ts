import { basename } from 'node:path';
import type { ParameterSpec } from '../graphs/onnx-graph.ts';
import type { WeightInit, WeightSource } from '../graphs/weights.ts';
import { SafetensorsFile } from '../models/safetensors.ts';

/*
 * LoRAs merged into the weights as they are read: W' = W + weight · (alpha / rank) · up · down, in float32 and
 * torch's layout (convolutions flattened to [out, in·kh·kw]). Two key formats:
 *  - kohya / AUTOMATIC1111: `lora_unet_<module>` / `lora_te_<module>` with `.` as `_` (diffusers module names, or
 *    the original LDM ones), `.lora_down.weight`, `.lora_up.weight`, `.alpha`; LoCon adds the convolutions;
 *  - diffusers / PEFT: `unet.<module>.lora_A.weight` / `.lora_B.weight` (alpha = rank unless given), and the older
 *    `.lora.down.weight` / `.lora.up.weight` and attention-processor `to_q_lora.down.weight` names.
 */

export interface LoraRequest {
  path: string;
  /** Multiplies the LoRA's change (default 1). */
  weight: number;
}

/** A component of the model, as the LoRA sees it: its parameters, and the other names a LoRA may give each module. */
export interface LoraTarget {
  component: string;
  parameters: ReadonlyMap<string, ParameterSpec>;
  /** kohya prefixes for this component ('lora_unet', 'lora_te'), and the PEFT/diffusers one ('unet', 'text_encoder'). */
  kohyaPrefix: string;
  peftPrefix: string;
  /** Another name of a module (without `.weight`) a LoRA may use: the LDM name of a U-Net module. */
  alias?: (module: string) => string | undefined;
}

interface LoraModule {
  down: Float32Array;
  downShape: number[];
  up: Float32Array;
  upShape: number[];
  alpha: number | undefined;
}

interface Delta {
  module: LoraModule;
  scale: number;
}

/** A LoRA's modules that matched the model, and the keys that matched nothing (reported, never dropped silently). */
export interface LoraMatch {
  name: string;
  weight: number;
  matched: number;
  unmatched: string[];
}

const KOHYA_SUFFIXES = { down: '.lora_down.weight', up: '.lora_up.weight', alpha: '.alpha' };
const UNSUPPORTED = [
  { pattern: /\.hada_w[12]_[ab]$/, kind: 'LoHa' },
  { pattern: /\.lokr_w[12](_[ab])?$/, kind: 'LoKr' },
  { pattern: /\.lora_mid\.weight$/, kind: 'LoCon with a Tucker middle factor' },
  { pattern: /\.dora_scale$/, kind: 'DoRA' },
];

/**
 * The LoRAs of an import, read and matched to the model's parameters before anything is written. Throws a
 * one-line error for a LoRA that fits none of the model's modules, or changes a weight of another shape (a LoRA
 * for another architecture).
 */
export class LoraSet {
  /** By component, then parameter: SDXL's two text encoders have parameters of the same names. */
  private readonly deltas = new Map<string, Map<string, Delta[]>>();
  readonly matches: LoraMatch[] = [];

  constructor(requests: readonly LoraRequest[], targets: readonly LoraTarget[]) {
    for (const request of requests) this.add(request, targets);
  }

  /** The weight source of `component` with every matching LoRA merged in. */
  merged(component: string, source: WeightSource): WeightSource {
    const deltas = this.deltas.get(component);
    if (!deltas) return source;
    return {
      read: (name: string, shape: readonly number[], init: WeightInit) => {
        const values = source.read(name, shape, init);
        for (const delta of deltas.get(name) ?? []) addDelta(values, delta);
        return values;
      },
    };
  }

  private add(request: LoraRequest, targets: readonly LoraTarget[]): void {
    const name = basename(request.path).replace(/\.safetensors$/i, '');
    const file = SafetensorsFile.open(request.path);
    let modules: Map<string, LoraModule>;
    try {
      modules = readModules(file, name);
    } finally {
      file.close();
    }
    if (modules.size === 0) throw new Error(`LoRA ${name}: no LoRA weights found (expected lora_down/lora_up or lora_A/lora_B tensors)`);

    const lookup = moduleLookup(targets);
    const unmatched: string[] = [];
    let matched = 0;
    for (const [key, module] of modules) {
      const target = lookup.get(key);
      if (!target) {
        unmatched.push(key);
        continue;
      }
      const [out, inFlat] = [module.upShape[0], module.downShape.slice(1).reduce((a, b) => a * b, 1)];
      const shape = target.shape;
      if (shape[0] !== out || shape.slice(1).reduce((a, b) => a * b, 1) !== inFlat || module.upShape[1] !== module.downShape[0]) {
        throw new Error(
          `LoRA ${name} does not fit this model: it changes ${key} as a [${out}, ${inFlat}] weight, but the model's ${target.parameter} is [${shape.join(', ')}] (a LoRA for another architecture?)`,
        );
      }
      const rank = module.downShape[0];
      const scale = request.weight * (module.alpha ?? rank) / rank;
      const component = this.deltas.get(target.component) ?? new Map<string, Delta[]>();
      component.set(target.parameter, [...(component.get(target.parameter) ?? []), { module, scale }]);
      this.deltas.set(target.component, component);
      matched++;
    }
    if (matched === 0) {
      throw new Error(`LoRA ${name} fits none of this model's modules (its ${modules.size} modules, e.g. ${[...modules.keys()][0]}, are for another architecture)`);
    }
    this.matches.push({ name, weight: request.weight, matched, unmatched });
  }
}

/** Every name a LoRA may give a module of the targets → that module's weight parameter. */
function moduleLookup(targets: readonly LoraTarget[]): Map<string, { component: string; parameter: string; shape: number[] }> {
  const lookup = new Map<string, { component: string; parameter: string; shape: number[] }>();
  for (const target of targets) {
    for (const [parameter, { shape }] of target.parameters) {
      if (!parameter.endsWith('.weight') || shape.length < 2) continue;
      const module = parameter.slice(0, -'.weight'.length);
      const entry = { component: target.component, parameter, shape };
      const names = [module, target.alias?.(module)].filter((name): name is string => name !== undefined);
      for (const name of names) {
        lookup.set(`${target.kohyaPrefix}_${name.replace(/\./g, '_')}`, entry);
        lookup.set(`${target.peftPrefix}.${name}`, entry);
      }
    }
  }
  return lookup;
}

/** The LoRA modules of a file by module key (kohya `lora_unet_…`, or PEFT `unet.…`). */
function readModules(file: SafetensorsFile, name: string): Map<string, LoraModule> {
  const parts = new Map<string, { down?: string; up?: string; alpha?: string }>();
  for (const key of file.tensors.keys()) {
    const unsupported = UNSUPPORTED.find(({ pattern }) => pattern.test(key));
    if (unsupported) throw new Error(`LoRA ${name} is a ${unsupported.kind} network, which is not supported (only LoRA and LoCon are)`);
    const split = splitKey(key);
    if (!split) continue;
    const entry = parts.get(split.module) ?? {};
    entry[split.part] = key;
    parts.set(split.module, entry);
  }
  const modules = new Map<string, LoraModule>();
  for (const [module, { down, up, alpha }] of parts) {
    if (!down || !up) {
      if (down || up) throw new Error(`LoRA ${name}: ${module} has a ${down ? 'down' : 'up'} matrix without its ${down ? 'up' : 'down'} one`);
      continue;
    }
    modules.set(module, {
      down: file.readFloat32(down),
      downShape: file.info(down).shape,
      up: file.readFloat32(up),
      upShape: file.info(up).shape,
      alpha: alpha ? file.readFloat32(alpha)[0] : undefined,
    });
  }
  return modules;
}

/** A LoRA tensor key → its module key and which part it is, for every supported naming. */
function splitKey(key: string): { module: string; part: 'down' | 'up' | 'alpha' } | undefined {
  for (const [part, suffix] of Object.entries(KOHYA_SUFFIXES) as ['down' | 'up' | 'alpha', string][]) {
    if (key.endsWith(suffix) && key.startsWith('lora_')) return { module: key.slice(0, -suffix.length), part };
  }
  let match = /^(.*)\.(lora_A|lora_B|lora\.down|lora\.up)\.weight$/.exec(key);
  if (match) return { module: peftModule(match[1]), part: match[2] === 'lora_A' || match[2] === 'lora.down' ? 'down' : 'up' };
  match = /^(.*)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/.exec(key);
  if (match) return { module: peftModule(`${match[1]}.${match[2] === 'to_out' ? 'to_out.0' : match[2]}`), part: match[3] as 'down' | 'up' };
  match = /^(.*)\.alpha$/.exec(key);
  if (match && !key.startsWith('lora_')) return { module: peftModule(match[1]), part: 'alpha' };
  return undefined;
}

/** PEFT keys may carry `base_model.model.`; a U-Net-only file may have no `unet.` prefix at all. */
function peftModule(module: string): string {
  const stripped = module.replace(/^base_model\.model\./, '');
  return /^(unet|text_encoder|text_encoder_2)\./.test(stripped) ? stripped : `unet.${stripped}`;
}

/** values += scale · up · down, with up [out, rank] and down [rank, in·kh·kw]. */
function addDelta(values: Float32Array, { module, scale }: Delta): void {
  const rank = module.downShape[0];
  const out = module.upShape[0];
  const inner = module.down.length / rank;
  for (let row = 0; row < out; row++) {
    const target = row * inner;
    for (let r = 0; r < rank; r++) {
      const factor = Math.fround(scale * module.up[row * rank + r]);
      if (factor === 0) continue;
      const source = r * inner;
      for (let column = 0; column < inner; column++) values[target + column] += factor * module.down[source + column];
    }
  }
}
