import onnxProto from 'onnx-proto';
import type { onnx as OnnxTypes } from 'onnx-proto';

// onnx-proto is CommonJS (module.exports = root), so its namespace is reached through the default export.
const { onnx } = onnxProto;
type ModelProto = OnnxTypes.IModelProto;
type NodeProto = OnnxTypes.INodeProto;

/** The two inputs the edit adds: vectors `[batch, sequence, width]` (the table's float type) and where they apply, `[batch, sequence, 1]`. */
export const OVERRIDE_VECTORS_INPUT = 'token_embedding_overrides';
export const OVERRIDE_MASK_INPUT = 'token_embedding_override_mask';

/**
 * Lets a CLIP text encoder take textual-inversion vectors in place of the token embeddings of chosen positions,
 * as AUTOMATIC1111's `EmbeddingsWithFixes` does in PyTorch: the token-embedding lookup
 * `Gather(table [vocab, width], input_ids)` gets a `Where(mask, overrides, lookup)` behind it. Where the mask is
 * false the lookup passes through untouched, so every other output is what the graph gave before. Works on any
 * export whose lookup has that form (torch's exports of transformers' CLIPTextModel, the project's own graphs),
 * without touching the weights. Returns false, leaving the model alone, when no such lookup is found.
 */
export function addTokenEmbeddingOverride(model: ModelProto): boolean {
  const graph = model.graph;
  if (!graph?.node || !(graph.input ?? []).some((input) => input.name === 'input_ids')) return false;

  const lookups = tokenLookups(graph);
  if (lookups.length !== 1) return false;
  const { node, width, dataType } = lookups[0];

  const looked = node.output?.[0] ?? '';
  if ((graph.output ?? []).some((output) => output.name === looked)) return false;
  const overridden = `${looked}_with_overrides`;
  for (const consumer of graph.node) {
    consumer.input = (consumer.input ?? []).map((input) => (input === looked ? overridden : input));
  }
  const where: NodeProto = { opType: 'Where', name: 'TokenEmbeddingOverride', input: [OVERRIDE_MASK_INPUT, OVERRIDE_VECTORS_INPUT, looked], output: [overridden] };
  graph.node.splice(graph.node.indexOf(node) + 1, 0, where);
  graph.input = [
    ...(graph.input ?? []),
    valueInfo(OVERRIDE_VECTORS_INPUT, dataType, ['batch', 'sequence', width]),
    valueInfo(OVERRIDE_MASK_INPUT, onnx.TensorProto.DataType.BOOL, ['batch', 'sequence', 1]),
  ];
  return true;
}

/** The Gather nodes that look rows of a [vocab, width] constant up by input_ids (directly or through Cast/Identity). */
function tokenLookups(graph: OnnxTypes.IGraphProto): { node: NodeProto; width: number; dataType: number }[] {
  const ids = new Set(['input_ids']);
  for (const node of graph.node ?? []) {
    if ((node.opType === 'Cast' || node.opType === 'Identity') && !node.domain && ids.has(node.input?.[0] ?? '')) ids.add(node.output?.[0] ?? '');
  }
  const tables = new Map((graph.initializer ?? []).filter((tensor) => tensor.dims?.length === 2).map((tensor) => [tensor.name ?? '', tensor]));
  const lookups: { node: NodeProto; width: number; dataType: number }[] = [];
  for (const node of graph.node ?? []) {
    if (node.opType !== 'Gather' || node.domain || !ids.has(node.input?.[1] ?? '')) continue;
    const axis = node.attribute?.find((attribute) => attribute.name === 'axis')?.i;
    const table = tables.get(node.input?.[0] ?? '');
    if (!table || Number(axis ?? 0) !== 0) continue;
    lookups.push({ node, width: Number(table.dims![1]), dataType: table.dataType ?? onnx.TensorProto.DataType.FLOAT });
  }
  return lookups;
}

function valueInfo(name: string, elemType: number, dims: (number | string)[]): OnnxTypes.IValueInfoProto {
  const dim = dims.map((value) => (typeof value === 'number' ? { dimValue: value } : { dimParam: value }));
  return { name, type: { tensorType: { elemType, shape: { dim } } } };
}
