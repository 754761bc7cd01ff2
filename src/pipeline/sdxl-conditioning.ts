import type { TextEmbedding, TextEncoderRole } from './text-encoder.ts';

/*
 * What StableDiffusionXLPipeline adds to the U-Net's conditioning: besides the joined text-encoder states, the
 * pooled embedding of the second text encoder (`text_embeds`) and the "micro-conditioning" ids (`time_ids`),
 * and zeros in place of an empty negative prompt for models whose `force_zeros_for_empty_prompt` says so.
 */

/** Both text encoders give their penultimate layer (hidden_states[-2]); the second also its projected pooled output. */
export const SDXL_TEXT_ENCODERS: readonly TextEncoderRole[] = [
  { folder: 'text_encoder', tokenizer: 'tokenizer', hiddenState: 'penultimate', pooled: false },
  { folder: 'text_encoder_2', tokenizer: 'tokenizer_2', hiddenState: 'penultimate', pooled: true },
];

/** diffusers' `_get_add_time_ids` with its defaults: original size, crop top-left (0, 0), target size, each (height, width). */
export function timeIds(size: { width: number; height: number }): Float32Array {
  return Float32Array.of(size.height, size.width, 0, 0, size.height, size.width);
}

/** `rows` copies of `row`, one per batch entry (the negative's and the prompt's ids are the same). */
export function repeatRows(row: Float32Array, rows: number): Float32Array {
  const out = new Float32Array(row.length * rows);
  for (let index = 0; index < rows; index++) out.set(row, index * row.length);
  return out;
}

/**
 * The prompt's conditioning stacked after zeros of the same shape, for the states and the pooled embedding alike:
 * what diffusers uses as the negative when none is given and `force_zeros_for_empty_prompt` is set.
 */
export function withZeroNegative(prompt: TextEmbedding): TextEmbedding {
  const stack = (values: Float32Array) => {
    const out = new Float32Array(2 * values.length);
    out.set(values, values.length);
    return out;
  };
  return { ...prompt, data: stack(prompt.data), ...(prompt.pooled ? { pooled: stack(prompt.pooled) } : {}) };
}
