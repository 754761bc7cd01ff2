import type { AutoencoderKLConfig, UNetConfig } from '../graphs/configs.ts';

/*
 * Where a diffusers / transformers parameter lives in a single-file checkpoint with the original Stable
 * Diffusion (LDM) names, as AUTOMATIC1111 and ComfyUI save them. Each function maps one diffusers name to its
 * LDM key, the reverse of diffusers' single-file conversion, so the importer reads exactly the tensors the
 * graph asks for.
 */

/** A tensor of the checkpoint, or a block of its rows (OpenCLIP fuses q, k and v into one in_proj). */
export interface TensorRef {
  key: string;
  rows?: { start: number; end: number };
  /** Stored as the transpose of the diffusers tensor (OpenCLIP's text_projection). */
  transposed?: boolean;
}

const UNET_RESNET_NAMES: Record<string, string> = {
  norm1: 'in_layers.0',
  conv1: 'in_layers.2',
  time_emb_proj: 'emb_layers.1',
  norm2: 'out_layers.0',
  conv2: 'out_layers.3',
  conv_shortcut: 'skip_connection',
};

function renameFirst(rest: string, names: Record<string, string>): string {
  const [first, ...others] = rest.split('.');
  return [names[first] ?? first, ...others].join('.');
}

/** UNet2DConditionModel name → `model.diffusion_model.*` key (`input_blocks`, `middle_block`, `output_blocks`, …). */
export function unetLdmKey(name: string, config: UNetConfig): string | undefined {
  const perBlock = config.layers_per_block + 1;
  const direct: Record<string, string> = {
    conv_in: 'input_blocks.0.0',
    'time_embedding.linear_1': 'time_embed.0',
    'time_embedding.linear_2': 'time_embed.2',
    'add_embedding.linear_1': 'label_emb.0.0',
    'add_embedding.linear_2': 'label_emb.0.2',
    conv_norm_out: 'out.0',
    conv_out: 'out.2',
  };
  const module = name.replace(/\.(weight|bias)$/, '');
  const parameter = name.slice(module.length);
  let ldm = direct[module];
  let match: RegExpMatchArray | null;
  if (ldm) {
    // mapped above
  } else if ((match = /^down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(module))) {
    const index = 1 + Number(match[1]) * perBlock + Number(match[3]);
    ldm = match[2] === 'resnets' ? `input_blocks.${index}.0.${renameFirst(match[4], UNET_RESNET_NAMES)}` : `input_blocks.${index}.1.${match[4]}`;
  } else if ((match = /^down_blocks\.(\d+)\.downsamplers\.0\.conv$/.exec(module))) {
    ldm = `input_blocks.${(Number(match[1]) + 1) * perBlock}.0.op`;
  } else if ((match = /^mid_block\.resnets\.(\d+)\.(.+)$/.exec(module))) {
    ldm = `middle_block.${2 * Number(match[1])}.${renameFirst(match[2], UNET_RESNET_NAMES)}`;
  } else if ((match = /^mid_block\.attentions\.0\.(.+)$/.exec(module))) {
    ldm = `middle_block.1.${match[1]}`;
  } else if ((match = /^up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)$/.exec(module))) {
    const index = Number(match[1]) * perBlock + Number(match[3]);
    ldm = match[2] === 'resnets' ? `output_blocks.${index}.0.${renameFirst(match[4], UNET_RESNET_NAMES)}` : `output_blocks.${index}.1.${match[4]}`;
  } else if ((match = /^up_blocks\.(\d+)\.upsamplers\.0\.conv$/.exec(module))) {
    const block = Number(match[1]);
    const hasAttention = config.up_block_types[block] === 'CrossAttnUpBlock2D';
    ldm = `output_blocks.${block * perBlock + config.layers_per_block}.${hasAttention ? 2 : 1}.conv`;
  }
  return ldm === undefined ? undefined : `model.diffusion_model.${ldm}${parameter}`;
}

const VAE_ATTENTION_NAMES: Record<string, string> = { group_norm: 'norm', to_q: 'q', to_k: 'k', to_v: 'v', 'to_out.0': 'proj_out' };

/** AutoencoderKL name → `first_stage_model.*` key (`encoder.down.N.block.M`, `decoder.up.N`, `mid.attn_1`, …). */
export function vaeLdmKey(name: string, config: AutoencoderKLConfig): string | undefined {
  const levels = config.block_out_channels.length;
  let match: RegExpMatchArray | null;
  let ldm: string | undefined;
  if (/^(post_quant_conv|quant_conv)\./.test(name)) ldm = name;
  else if ((match = /^(encoder|decoder)\.(conv_in|conv_out)\.(.+)$/.exec(name))) ldm = name;
  else if ((match = /^(encoder|decoder)\.conv_norm_out\.(.+)$/.exec(name))) ldm = `${match[1]}.norm_out.${match[2]}`;
  else if ((match = /^encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(name))) ldm = `encoder.down.${match[1]}.block.${match[2]}.${vaeResnet(match[3])}`;
  else if ((match = /^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)$/.exec(name))) ldm = `encoder.down.${match[1]}.downsample.conv.${match[2]}`;
  else if ((match = /^decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$/.exec(name))) ldm = `decoder.up.${levels - 1 - Number(match[1])}.block.${match[2]}.${vaeResnet(match[3])}`;
  else if ((match = /^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)$/.exec(name))) ldm = `decoder.up.${levels - 1 - Number(match[1])}.upsample.conv.${match[2]}`;
  else if ((match = /^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)$/.exec(name))) ldm = `${match[1]}.mid.block_${Number(match[2]) + 1}.${vaeResnet(match[3])}`;
  else if ((match = /^(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.+)$/.exec(name))) {
    ldm = `${match[1]}.mid.attn_1.${VAE_ATTENTION_NAMES[match[2]]}.${match[3]}`;
  }
  return ldm === undefined ? undefined : `first_stage_model.${ldm}`;
}

function vaeResnet(rest: string): string {
  return rest.replace(/^conv_shortcut\./, 'nin_shortcut.');
}

/** Older diffusers folders name the VAE attention query/key/value/proj_attn (diffusers still reads them). */
export function deprecatedVaeAttentionKey(name: string): string | undefined {
  const legacy: Record<string, string> = { to_q: 'query', to_k: 'key', to_v: 'value', 'to_out.0': 'proj_attn' };
  const match = /^(.*\.mid_block\.attentions\.0)\.(to_q|to_k|to_v|to_out\.0)\.(.+)$/.exec(name);
  return match ? `${match[1]}.${legacy[match[2]]}.${match[3]}` : undefined;
}

/** transformers' CLIPTextModel name → `cond_stage_model.transformer.*` (SD 1.x: OpenAI CLIP, names kept). */
export function openAiClipLdmKey(name: string, prefix = 'cond_stage_model.transformer.'): TensorRef {
  return { key: `${prefix}${name}` };
}

const OPEN_CLIP_LAYER_NAMES: Record<string, string> = {
  layer_norm1: 'ln_1',
  layer_norm2: 'ln_2',
  'mlp.fc1': 'mlp.c_fc',
  'mlp.fc2': 'mlp.c_proj',
  'self_attn.out_proj': 'attn.out_proj',
};

/**
 * transformers' CLIPTextModel name → OpenCLIP's key under `prefix` (SD 2.x: `cond_stage_model.model.`): q/k/v
 * are row blocks of the fused in_proj, the embeddings and final norm have their own names.
 */
export function openClipKey(name: string, hiddenSize: number, prefix = 'cond_stage_model.model.'): TensorRef | undefined {
  const fixed: Record<string, string> = {
    'text_model.embeddings.token_embedding.weight': 'token_embedding.weight',
    'text_model.embeddings.position_embedding.weight': 'positional_embedding',
    'text_model.final_layer_norm.weight': 'ln_final.weight',
    'text_model.final_layer_norm.bias': 'ln_final.bias',
  };
  if (fixed[name]) return { key: prefix + fixed[name] };
  if (name === 'text_projection.weight') return { key: `${prefix}text_projection`, transposed: true };
  const match = /^text_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$/.exec(name);
  if (!match) return undefined;
  const [, layer, module, parameter] = match;
  const block = `${prefix}transformer.resblocks.${layer}`;
  const projection = /^self_attn\.(q|k|v)_proj$/.exec(module);
  if (projection) {
    const index = ['q', 'k', 'v'].indexOf(projection[1]);
    return { key: `${block}.attn.in_proj_${parameter}`, rows: { start: index * hiddenSize, end: (index + 1) * hiddenSize } };
  }
  const renamed = OPEN_CLIP_LAYER_NAMES[module];
  return renamed ? { key: `${block}.${renamed}.${parameter}` } : undefined;
}
