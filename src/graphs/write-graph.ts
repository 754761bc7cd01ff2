import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ExternalDataFile } from './external-data.ts';
import { type GraphOptions, GraphBuilder, type ModelProto, type ParameterSpec, encodeModel } from './onnx-graph.ts';

/** The external data file name diffusers' and Optimum's large exports use. */
export const EXTERNAL_DATA_FILE = 'model.onnx_data';

export interface WriteGraphOptions extends Omit<GraphOptions, 'externalData'> {
  /** Keep the weights in this file beside model.onnx (needed past protobuf's 2 GB); inside model.onnx when absent. */
  externalDataFile?: string;
}

export interface WrittenGraph {
  parameters: number;
  /** model.onnx plus its external data. */
  bytes: number;
}

/**
 * Builds one graph and writes `dir/model.onnx` (and its external data, streamed as the weights are read: memory
 * holds the graph's structure and one tensor at a time).
 */
export async function writeGraph(dir: string, build: (g: GraphBuilder) => ModelProto, options: WriteGraphOptions): Promise<WrittenGraph> {
  await mkdir(dir, { recursive: true });
  const location = options.externalDataFile;
  const externalData = location ? ExternalDataFile.create(join(dir, location), location) : undefined;
  let model: Uint8Array;
  let parameters: number;
  try {
    const g = new GraphBuilder({ ...options, externalData });
    model = encodeModel(build(g));
    parameters = g.parameterCount;
  } finally {
    externalData?.close();
  }
  await writeFile(join(dir, 'model.onnx'), model);
  return { parameters, bytes: model.byteLength + (externalData?.byteLength ?? 0) };
}

/** The parameters a graph reads, by state-dict name, found without reading any weights. */
export function listParameters(build: (g: GraphBuilder) => ModelProto): Map<string, ParameterSpec> {
  const g = new GraphBuilder({ precision: 'fp32', attention: 'unfused' });
  build(g);
  return g.parameters;
}

/** The number of values in a set of parameters (torch's numel() summed). */
export function countValues(parameters: ReadonlyMap<string, ParameterSpec>): number {
  let count = 0;
  for (const { shape } of parameters.values()) count += shape.reduce((a, b) => a * b, 1);
  return count;
}

/** The values of a graph's parameters, counted without reading any weights. */
export function countParameters(build: (g: GraphBuilder) => ModelProto): number {
  return countValues(listParameters(build));
}
