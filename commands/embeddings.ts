import { MessageFlags, SlashCommandBuilder, type ChatInputCommandInteraction } from 'discord.js';
import { scanEmbeddings } from '../src/models/embeddings.ts';
import { embeddingListText } from '../src/discord/embedding-list.ts';
import type { BotContext } from '../src/discord/bot-context.ts';

export const data = new SlashCommandBuilder()
  .setName('embeddings')
  .setDescription('List the textual-inversion embeddings a prompt can use by name');

export async function execute(interaction: ChatInputCommandInteraction, context: BotContext): Promise<void> {
  const scan = await scanEmbeddings(context.config.embeddingsDir);
  const content = embeddingListText(scan, context.config.generation.promptSyntax);
  await interaction.reply({ content, flags: MessageFlags.Ephemeral, allowedMentions: { parse: [] } });
}
