import type { Attachment, Message } from 'discord.js';
import { inspectPicture, InitImageError, MAX_INIT_IMAGE_PIXELS, type PictureSize } from '../image/init-image.ts';
import { parseParameters } from '../image/parameters.ts';
import { readPngParameters } from '../image/png.ts';
import type { ImagineOptions } from '../jobs/options.ts';
import { describeError } from '../log.ts';
import type { GenerationSettings } from '../pipeline/types.ts';
import { imageIndexOf } from './attachments.ts';
import type { BotContext } from './bot-context.ts';
import { optionsFromEmbed, optionsFromSettings } from './result-embed.ts';

// Reading a result message back: the job's settings (from its embed, else its PNGs' parameters) and its pictures.
// Everything buttons do is rebuilt from the message, so it works the same after a restart.

const FETCH_TIMEOUT_MS = 10_000;
/** The largest picture file the bot downloads to start from (Discord's own upload limits go up to 500 MB). */
export const MAX_PICTURE_BYTES = 25 * 1024 * 1024;

/** Why a picture could not be had, in words for whoever asked for it. */
export class PictureUnavailableError extends Error {
  override name = 'PictureUnavailableError';
}

/**
 * Downloads a picture, refusing before the download finishes one that is larger than `MAX_PICTURE_BYTES` (by its
 * Content-Length, else as the bytes arrive), then checks its format and pixel count from its header.
 */
export async function fetchPicture(url: string): Promise<{ data: Buffer } & PictureSize> {
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
  } catch (error) {
    throw new PictureUnavailableError(`I could not download the picture (${(error as Error).name === 'TimeoutError' ? 'it took too long' : 'the connection failed'}).`);
  }
  if (response.status === 404 || response.status === 403) throw new PictureUnavailableError('The picture is gone: it was deleted, or its link expired.');
  if (!response.ok || !response.body) throw new PictureUnavailableError(`I could not download the picture (HTTP ${response.status}).`);
  const declared = Number(response.headers.get('content-length'));
  const tooLarge = () => new PictureUnavailableError(`The picture is larger than ${MAX_PICTURE_BYTES / 1024 / 1024} MB.`);
  if (declared > MAX_PICTURE_BYTES) {
    await response.body.cancel();
    throw tooLarge();
  }
  const chunks: Uint8Array[] = [];
  let received = 0;
  for await (const chunk of response.body) {
    received += chunk.length;
    if (received > MAX_PICTURE_BYTES) throw tooLarge();
    chunks.push(chunk);
  }
  const data = Buffer.concat(chunks);
  try {
    return { data, ...(await inspectPicture(data, MAX_INIT_IMAGE_PIXELS)) };
  } catch (error) {
    if (error instanceof InitImageError) throw new PictureUnavailableError(`${error.message[0].toUpperCase()}${error.message.slice(1)}.`);
    throw error;
  }
}

/** A result message's `index`-th picture, with the settings that made it; throws PictureUnavailableError when it is gone. */
export async function pictureOfMessage(message: Message, index: number, context: BotContext): Promise<{ picture: { data: Buffer; url: string } & PictureSize; options: ImagineOptions }> {
  const attachment: Attachment | undefined = [...message.attachments.values()][index];
  if (!attachment) throw new PictureUnavailableError('That picture is no longer on the message.');
  const fetched = await fetchPicture(attachment.url);
  const parameters = readPngParameters(fetched.data);
  const own = parameters === undefined ? undefined : safely(() => optionsFromSettings([parseParameters(parameters)]));
  const options = own ?? jobImageOptions(message, attachment.name, context);
  if (!options) throw new PictureUnavailableError('I cannot read the settings of that picture any more.');
  return { picture: { ...fetched, url: attachment.url }, options };
}

/** The settings of the job's image a file holds, from the message's embed: its own seed, a count of one. */
function jobImageOptions(message: Message, fileName: string, context: BotContext): ImagineOptions | undefined {
  const job = message.embeds[0] && optionsFromEmbed(message.embeds[0].data);
  const index = imageIndexOf(fileName);
  if (!job?.seed || index === undefined) {
    context.logger.warn({ messageId: message.id, fileName }, 'no settings for a picture of the message');
    return undefined;
  }
  return { ...job, seed: (BigInt(job.seed) + BigInt(index)).toString(), count: 1 };
}

/** The job behind a result message: from its embed, else from the parameters chunk of its PNG attachments. */
export async function optionsFromMessage(message: Message, context: BotContext): Promise<ImagineOptions | undefined> {
  const fromEmbed = message.embeds[0] && optionsFromEmbed(message.embeds[0].data);
  if (fromEmbed) return fromEmbed;
  const pngs = [...message.attachments.values()].filter((attachment) => /\.png$/i.test(attachment.name));
  try {
    const settings: GenerationSettings[] = await Promise.all(
      pngs.map(async (attachment) => {
        const parameters = readPngParameters((await fetchPicture(attachment.url)).data);
        if (!parameters) throw new Error(`${attachment.name} has no parameters chunk`);
        return parseParameters(parameters);
      }),
    );
    return optionsFromSettings(settings);
  } catch (error) {
    context.logger.warn({ messageId: message.id, error: describeError(error) }, 'could not read settings from the attachments');
    return undefined;
  }
}

function safely<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}
