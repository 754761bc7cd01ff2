/** What a button (or modal) on one of the bot's messages does; encoded into its custom_id so it survives restarts. */
export type ButtonAction =
  | { kind: 'reroll' }
  | { kind: 'delete'; requesterId: string }
  | { kind: 'cancel'; jobId: string }
  /** img2img of the message's `image`-th picture with a new seed, a little or a lot. */
  | { kind: 'vary'; amount: VaryAmount; image: number }
  /** The message's `image`-th picture `factor` times larger; Creative redraws it at that size. */
  | { kind: 'upscale'; factor: number; creative: boolean; image: number }
  /** Opens the Remix modal; its submission comes back as `remix-submit`. */
  | { kind: 'remix' }
  | { kind: 'remix-submit' };

export type VaryAmount = 'subtle' | 'strong';

const PREFIX = 'imagine';
/** Discord's limit on a component's custom_id. */
export const MAX_CUSTOM_ID_LENGTH = 100;

export function encodeButton(action: ButtonAction): string {
  const parts: (string | number)[] = [PREFIX, action.kind];
  if (action.kind === 'delete') parts.push(action.requesterId);
  if (action.kind === 'cancel') parts.push(action.jobId);
  if (action.kind === 'vary') parts.push(action.amount, action.image);
  if (action.kind === 'upscale') parts.push(`${action.factor}${action.creative ? 'c' : ''}`, action.image);
  const customId = parts.join(':');
  if (customId.length >= MAX_CUSTOM_ID_LENGTH) throw new Error(`custom_id "${customId.slice(0, 40)}…" is ${customId.length} characters`);
  return customId;
}

/** The action a custom_id names, or undefined for ids this bot did not make. */
export function decodeButton(customId: string): ButtonAction | undefined {
  const [prefix, kind, argument, index, ...rest] = customId.split(':');
  if (prefix !== PREFIX || rest.length > 0) return undefined;
  const image = index !== undefined && /^\d$/.test(index) ? Number(index) : undefined;
  if (index !== undefined && image === undefined) return undefined;
  if ((kind === 'reroll' || kind === 'remix' || kind === 'remix-submit') && argument === undefined) return { kind };
  if (kind === 'delete' && argument !== undefined && image === undefined && /^\d{1,20}$/.test(argument)) return { kind, requesterId: argument };
  if (kind === 'cancel' && argument !== undefined && image === undefined && /^[\w-]{1,64}$/.test(argument)) return { kind, jobId: argument };
  if (kind === 'vary' && (argument === 'subtle' || argument === 'strong') && image !== undefined) return { kind, amount: argument, image };
  const upscale = kind === 'upscale' && argument !== undefined ? /^([24])(c?)$/.exec(argument) : null;
  if (upscale && image !== undefined) return { kind: 'upscale', factor: Number(upscale[1]), creative: upscale[2] === 'c', image };
  return undefined;
}
