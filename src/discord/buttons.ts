import { MessageFlags, PermissionFlagsBits, type ButtonInteraction, type Message } from 'discord.js';
import { parseParameters } from '../image/parameters.ts';
import { readPngParameters } from '../image/png.ts';
import type { ImagineOptions } from '../jobs/options.ts';
import { describeError } from '../log.ts';
import type { BotContext } from './bot-context.ts';
import { decodeButton } from './custom-id.ts';
import { answerPrivately, offersCancel } from './job-messages.ts';
import { liveTarget } from './reply-target.ts';
import { isUnknownMessage } from './rest-errors.ts';
import { optionsFromEmbed, optionsFromSettings } from './result-embed.ts';
import { startJob } from './start-job.ts';

const ATTACHMENT_FETCH_TIMEOUT_MS = 10_000;

/** Routes a button press by its custom_id; presses on buttons this bot did not make get an ephemeral note. */
export async function handleButton(interaction: ButtonInteraction, context: BotContext): Promise<void> {
  const action = decodeButton(interaction.customId);
  if (!action) return ephemeral(interaction, 'This button is not one of mine any more.');
  switch (action.kind) {
    case 'reroll':
      return reroll(interaction, context);
    case 'delete':
      return remove(interaction, action.requesterId);
    case 'cancel':
      return cancel(interaction, action.jobId, context);
  }
}

/** Same settings, new seed, a new message for whoever pressed it, through the same queue. */
async function reroll(interaction: ButtonInteraction, context: BotContext): Promise<void> {
  const options = await optionsFromMessage(interaction.message, context);
  if (!options) return ephemeral(interaction, 'I cannot read the settings of this image any more, so I cannot reroll it.');
  await startJob(interaction, { ...options, seed: undefined }, context, { countChosen: true });
}

async function remove(interaction: ButtonInteraction, requesterId: string): Promise<void> {
  const allowed =
    interaction.user.id === requesterId || interaction.memberPermissions?.has(PermissionFlagsBits.ManageMessages) === true;
  if (!allowed) return ephemeral(interaction, `Only <@${requesterId}> or members with **Manage Messages** can delete this.`);
  try {
    await interaction.deferUpdate();
    await interaction.deleteReply();
  } catch (error) {
    // A second press (a double click, or two people at once): the message is gone, as asked.
    if (!isUnknownMessage(error)) throw error;
  }
}

async function cancel(interaction: ButtonInteraction, jobId: string, context: BotContext): Promise<void> {
  const job = context.queue.find(jobId);
  const delivery = context.deliveries.get(jobId);
  const requesterId = job?.userId ?? interaction.message.interactionMetadata?.user.id;
  if (interaction.user.id !== requesterId) return ephemeral(interaction, requesterId ? `Only <@${requesterId}> can cancel this job.` : 'Only the requester can cancel this job.');
  if (!job) {
    if (delivery) return ephemeral(interaction, 'This job has already finished.');
    return retireCancel(interaction, jobId);
  }
  await interaction.deferUpdate();
  delivery?.retarget(liveTarget(interaction));
  job.cancel('user');
}

/**
 * Nothing in this process knows the job (its result went elsewhere, or another bot process had it): stops offering
 * Cancel. The press may be older than the message's outcome, so the message is read afresh and left alone when it
 * no longer offers this Cancel.
 */
async function retireCancel(interaction: ButtonInteraction, jobId: string): Promise<void> {
  await interaction.deferUpdate();
  const current = await interaction.fetchReply();
  if (!offersCancel(current, jobId)) {
    await interaction.followUp({ content: 'This job has already finished.', flags: MessageFlags.Ephemeral });
    return;
  }
  await interaction.editReply({ content: `${current.content}\n⚠️ This job is no longer in the queue.`, components: [] });
}

/** The job behind a result message: from its embed, else from the parameters chunk of its PNG attachments. */
async function optionsFromMessage(message: Message, context: BotContext): Promise<ImagineOptions | undefined> {
  const fromEmbed = message.embeds[0] && optionsFromEmbed(message.embeds[0].data);
  if (fromEmbed) return fromEmbed;
  const pngs = [...message.attachments.values()].filter((attachment) => /\.png$/i.test(attachment.name));
  try {
    const settings = await Promise.all(
      pngs.map(async (attachment) => {
        const response = await fetch(attachment.url, { signal: AbortSignal.timeout(ATTACHMENT_FETCH_TIMEOUT_MS) });
        if (!response.ok) throw new Error(`HTTP ${response.status} fetching ${attachment.name}`);
        const parameters = readPngParameters(new Uint8Array(await response.arrayBuffer()));
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

function ephemeral(interaction: ButtonInteraction, content: string): Promise<void> {
  return answerPrivately(interaction, content);
}
