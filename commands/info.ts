import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SlashCommandBuilder, type ChatInputCommandInteraction } from 'discord.js';
import type { BotContext } from '../src/discord/bot-context.ts';
import { answerPrivately } from '../src/discord/job-messages.ts';
import { infoText } from '../src/discord/queue-text.ts';
import { PROJECT_ROOT } from '../src/runtime.ts';

const VERSION = (JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

export const data = new SlashCommandBuilder().setName('info').setDescription('The bot’s model, queue, your images left today, version and uptime');

export async function execute(interaction: ChatInputCommandInteraction, context: BotContext): Promise<void> {
  const guildId = interaction.guildId ?? undefined;
  const offered = context.queue.offeredModels();
  const status = context.queue.modelStatus();
  const model = status.state === 'ready' ? status.model.name : `${offered?.defaultName ?? 'the default model'} (${status.state === 'loading' ? 'loading' : 'failed to load'})`;
  const jobs = await context.queue.list().catch(() => undefined);
  await answerPrivately(
    interaction,
    infoText({
      version: VERSION,
      uptimeMs: process.uptime() * 1000,
      model,
      models: offered?.models.map((entry) => entry.name) ?? [],
      providers: context.queue.executionProviders(),
      jobs,
      userId: interaction.user.id,
      quotas: await context.admission.quotas(guildId, interaction.user.id),
    }),
  );
}
