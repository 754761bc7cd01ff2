import { PermissionFlagsBits, SlashCommandBuilder, type ChatInputCommandInteraction } from 'discord.js';
import type { BotContext } from '../src/discord/bot-context.ts';
import { answerPrivately, refusalText } from '../src/discord/job-messages.ts';
import { queueText, type QueueView } from '../src/discord/queue-text.ts';
import type { QueuedJob } from '../src/queue/types.ts';

/** Job ids are short (local) or "job-" and an interaction id (Redis). */
const MAX_JOB_ID_LENGTH = 40;

export const data = new SlashCommandBuilder()
  .setName('queue')
  .setDescription('Your jobs in the queue and their places (moderators: the server’s jobs)')
  .addStringOption((option) => option.setName('cancel').setDescription('The id of a job to cancel (yours; any of the server’s for moderators)').setMaxLength(MAX_JOB_ID_LENGTH));

export async function execute(interaction: ChatInputCommandInteraction, context: BotContext): Promise<void> {
  let jobs: QueuedJob[];
  try {
    jobs = await context.queue.list();
  } catch {
    return answerPrivately(interaction, refusalText('unavailable', 0));
  }
  const view: QueueView = { userId: interaction.user.id, guildId: interaction.guildId ?? undefined, moderator: await moderation(interaction, context) };
  const cancel = interaction.options.getString('cancel')?.trim();
  if (!cancel) return answerPrivately(interaction, queueText(jobs, view));

  const job = jobs.find((candidate) => candidate.id === cancel);
  if (!job) return answerPrivately(interaction, `⚠️ No job \`${cancel.replace(/`/g, '')}\` is waiting or running. \`/queue\` lists the ids.`);
  const allowed = job.userId === view.userId || view.moderator === 'everywhere' || (view.moderator === 'server' && job.guildId === view.guildId);
  if (!allowed) return answerPrivately(interaction, '🔒 Only the job’s requester or a moderator of its server can cancel it.');
  let cancelled: boolean;
  try {
    cancelled = await context.queue.cancel(job.id, 'user');
  } catch {
    return answerPrivately(interaction, refusalText('unavailable', 0));
  }
  if (!cancelled) return answerPrivately(interaction, `⚠️ Job \`${job.id}\` has finished already.`);
  context.logger.info({ jobId: job.id, requesterId: job.userId, cancelledBy: view.userId }, 'job cancelled from /queue');
  await answerPrivately(interaction, `🛑 Cancelled job \`${job.id}\`${job.userId === view.userId ? '' : ` of <@${job.userId}>`}.`);
}

/** Members with Manage Messages moderate their server's jobs; the bot's owners every job. */
async function moderation(interaction: ChatInputCommandInteraction, context: BotContext): Promise<QueueView['moderator']> {
  if (await context.owners.isOwner(interaction.user.id)) return 'everywhere';
  return interaction.inGuild() && interaction.memberPermissions?.has(PermissionFlagsBits.ManageMessages) ? 'server' : 'no';
}
