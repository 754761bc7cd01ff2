import { MessageFlags, PermissionFlagsBits, type ButtonInteraction, type ModalSubmitInteraction } from 'discord.js';
import type { BotContext } from './bot-context.ts';
import { decodeButton } from './custom-id.ts';
import { answerPrivately, offersCancel } from './job-messages.ts';
import { liveTarget } from './reply-target.ts';
import { isUnknownMessage } from './rest-errors.ts';
import { openRemix, reroll, submitRemix, upscale, vary } from './result-actions.ts';

/** Routes a button press by its custom_id; presses on buttons this bot did not make get an ephemeral note. */
export async function handleButton(interaction: ButtonInteraction, context: BotContext): Promise<void> {
  const action = decodeButton(interaction.customId);
  if (!action) return ephemeral(interaction, 'This button is not one of mine any more.');
  switch (action.kind) {
    case 'reroll':
      return reroll(interaction, context);
    case 'vary':
      return vary(interaction, action.image, action.amount, context);
    case 'upscale':
      return upscale(interaction, action.image, action.factor, action.creative, context);
    case 'remix':
      return openRemix(interaction);
    case 'remix-submit':
      return ephemeral(interaction, 'This button is not one of mine any more.');
    case 'delete':
      return remove(interaction, action.requesterId);
    case 'cancel':
      return cancel(interaction, action.jobId, context);
  }
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

/** Routes a modal submission: the Remix modal is the only one the bot opens. */
export async function handleModalSubmit(interaction: ModalSubmitInteraction, context: BotContext): Promise<void> {
  if (decodeButton(interaction.customId)?.kind !== 'remix-submit') return answerPrivately(interaction, 'This form is not one of mine any more.');
  await submitRemix(interaction, context);
}

function ephemeral(interaction: ButtonInteraction, content: string): Promise<void> {
  return answerPrivately(interaction, content);
}
