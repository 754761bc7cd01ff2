import { DiscordAPIError, HTTPError } from 'discord.js';

/** Why a REST call to Discord failed, in the terms the bot acts on. */
export type FailureKind =
  /** The interaction token no longer works (expired or unknown): use the channel instead. */
  | 'token'
  /** The bot lacks a permission or access in that channel. */
  | 'permissions'
  /** The upload was over the limit. */
  | 'too_large'
  /** Discord or the network failed (5xx after retries, rate limit, timeout): another route may work. */
  | 'unavailable'
  /** Anything else Discord refused. */
  | 'refused';

const TOKEN_CODES = new Set([10015, 10062, 50027]);
const PERMISSION_CODES = new Set([50001, 50013]);

export function classifyFailure(error: unknown): FailureKind {
  if (error instanceof DiscordAPIError) {
    const code = Number(error.code);
    if (TOKEN_CODES.has(code) || error.status === 401) return 'token';
    if (PERMISSION_CODES.has(code) || error.status === 403) return 'permissions';
    if (code === 40005 || error.status === 413) return 'too_large';
    if (error.status === 429 || error.status >= 500) return 'unavailable';
    return 'refused';
  }
  if (error instanceof HTTPError && error.status === 413) return 'too_large';
  // HTTPError (5xx after retries), RateLimitError, timeouts and network errors: Discord may be back soon.
  return 'unavailable';
}

const UNKNOWN_MESSAGE = 10008;
const ALREADY_ACKNOWLEDGED = 40060;

/** Discord's answer about a message that no longer exists (deleted meanwhile). */
export function isUnknownMessage(error: unknown): boolean {
  return error instanceof DiscordAPIError && Number(error.code) === UNKNOWN_MESSAGE;
}

/** Discord's answer to a second acknowledgement of an interaction. */
export function isAlreadyAcknowledged(error: unknown): boolean {
  return error instanceof DiscordAPIError && Number(error.code) === ALREADY_ACKNOWLEDGED;
}

/** Words for the user about why a message could not be posted. */
export function failureText(error: unknown): string {
  switch (classifyFailure(error)) {
    case 'permissions':
      return 'I could not post the image here: I am missing the **Attach Files** or **Embed Links** permission in this channel.';
    case 'too_large':
      return 'The image was over this channel’s upload limit.';
    case 'token':
      return 'The interaction expired before the image was ready.';
    default: {
      const status = error instanceof DiscordAPIError || error instanceof HTTPError ? ` (HTTP ${error.status})` : '';
      return `Discord did not accept the message${status}.`;
    }
  }
}
