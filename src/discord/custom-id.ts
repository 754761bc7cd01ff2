/** What a button on one of the bot's messages does; encoded into its custom_id so it survives restarts. */
export type ButtonAction = { kind: 'reroll' } | { kind: 'delete'; requesterId: string } | { kind: 'cancel'; jobId: string };

const PREFIX = 'imagine';
/** Discord's limit on a component's custom_id. */
export const MAX_CUSTOM_ID_LENGTH = 100;

export function encodeButton(action: ButtonAction): string {
  const parts = [PREFIX, action.kind];
  if (action.kind === 'delete') parts.push(action.requesterId);
  if (action.kind === 'cancel') parts.push(action.jobId);
  const customId = parts.join(':');
  if (customId.length >= MAX_CUSTOM_ID_LENGTH) throw new Error(`custom_id "${customId.slice(0, 40)}…" is ${customId.length} characters`);
  return customId;
}

/** The action a custom_id names, or undefined for ids this bot did not make. */
export function decodeButton(customId: string): ButtonAction | undefined {
  const [prefix, kind, argument, ...rest] = customId.split(':');
  if (prefix !== PREFIX || rest.length > 0) return undefined;
  if (kind === 'reroll' && argument === undefined) return { kind };
  if (kind === 'delete' && argument !== undefined && /^\d{1,20}$/.test(argument)) return { kind, requesterId: argument };
  if (kind === 'cancel' && argument !== undefined && /^[\w-]{1,64}$/.test(argument)) return { kind, jobId: argument };
  return undefined;
}
