import { randomBytes } from 'node:crypto';

const DISCORD_EPOCH_MS = 1_420_070_400_000n;

/**
 * Issues Discord-style snowflakes: 19 digits with the creation time in the top bits, strictly increasing.
 * @discordjs/rest only recognises 17–19 digit ids as major route parameters, so the shape matters.
 */
export class SnowflakeGenerator {
  #last = 0n;

  next(): string {
    const candidate = (BigInt(Date.now()) - DISCORD_EPOCH_MS) << 22n;
    this.#last = candidate > this.#last ? candidate : this.#last + 1n;
    return this.#last.toString();
  }
}

function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

/** Same layout as a real bot token: base64(user id) . timestamp part . HMAC part. */
export function makeBotToken(botUserId: string): string {
  return `${base64url(botUserId)}.${base64url(randomBytes(4))}.${base64url(randomBytes(27))}`;
}

/** Interaction tokens are long opaque url-safe strings; Discord's decode to "interaction:<id>:<secret>". */
export function makeInteractionToken(interactionId: string): string {
  return base64url(`interaction:${interactionId}:${randomBytes(48).toString('base64url')}`);
}
