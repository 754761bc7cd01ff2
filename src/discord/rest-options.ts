import { DefaultRestOptions, type RESTOptions } from 'discord.js';
import type { BotConfig } from '../config.ts';

/**
 * An interaction follow-up whose answer was lost (a timeout or a reset connection): Discord may have posted it.
 * discord.js would send it again (three more times by default), which can post it again; it is passed on at once
 * instead, for the delivery to look before it posts anything else. Channel posts carry a nonce Discord enforces,
 * and edits are idempotent, so those keep discord.js's automatic repeats.
 */
class LostAnswerError extends Error {
  override name = 'LostAnswerError';
}

const FOLLOW_UP = /\/webhooks\/\d+\/[^/?]+(?:\?|$)/;

function answerLost(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return error.name === 'AbortError' || (error as { code?: unknown }).code === 'ECONNRESET' || error.message.includes('ECONNRESET');
}

/** The REST settings of the bot's client: the API base, the per-request timeout, and no blind repeat of a follow-up. */
export function restOptions(discord: BotConfig['discord']): Partial<RESTOptions> {
  return {
    ...(discord.apiUrl ? { api: discord.apiUrl } : {}),
    timeout: discord.restTimeoutMs,
    async makeRequest(url, init) {
      try {
        return await DefaultRestOptions.makeRequest(url, init);
      } catch (error) {
        if (init.method === 'POST' && FOLLOW_UP.test(url) && answerLost(error)) {
          throw new LostAnswerError('the follow-up was sent but its answer was lost', { cause: error });
        }
        throw error;
      }
    },
  };
}
