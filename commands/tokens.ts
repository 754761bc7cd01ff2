import { MessageFlags, SlashCommandBuilder, type AutocompleteInteraction, type ChatInputCommandInteraction } from 'discord.js';
import type { BotContext } from '../src/discord/bot-context.ts';
import { answerPrivately } from '../src/discord/job-messages.ts';
import { modelChoices } from '../src/discord/model-choices.ts';
import { tokenReply } from '../src/discord/token-reply.ts';
import { MAX_PROMPT_LENGTH } from '../src/jobs/options.ts';
import { describeError } from '../src/log.ts';
import { offeredModel } from '../src/models/catalog.ts';
import { embeddingsForContext, scanEmbeddings } from '../src/models/embeddings.ts';
import { defaultModel } from '../src/settings/admission.ts';
import type { ModelInfo } from '../src/pipeline/types.ts';
import { extractInlineParameters } from '../src/prompt/inline-parameters.ts';
import { viewTokens } from '../src/prompt/token-view.ts';

const MAX_AUTOCOMPLETE_CHOICES = 25;
const MAX_MODEL_NAME_LENGTH = 64;

export const data = new SlashCommandBuilder()
  .setName('tokens')
  .setDescription('Show a prompt as the model reads it: its CLIP tokens, chunks, weights and the 75-token limit')
  .addStringOption((option) => option.setName('prompt').setDescription('The prompt, as you would give it to /imagine').setRequired(true).setMaxLength(MAX_PROMPT_LENGTH))
  .addStringOption((option) =>
    option.setName('model').setDescription('Installed model (the default when empty)').setAutocomplete(true).setMaxLength(MAX_MODEL_NAME_LENGTH),
  );

/** Only the tokenizer runs (no model), and only the user sees the answer. */
export async function execute(interaction: ChatInputCommandInteraction, context: BotContext): Promise<void> {
  const typed = interaction.options.getString('prompt') ?? '';
  let prompt: string;
  try {
    // What /imagine would draw: `--ar 16:9` and the like at the end are not part of the prompt.
    prompt = extractInlineParameters(typed).prompt;
  } catch (error) {
    return answerPrivately(interaction, `⚠️ ${(error as Error).message}`);
  }
  const offered = context.queue.offeredModels();
  if (!offered) return answerPrivately(interaction, '⏳ The models are not known yet (they are still loading, or no worker is running). Try again in a moment.');
  // The server's default model and prompt syntax (/settings), as /imagine would use them; the operator's when it has none.
  const server = interaction.guildId === null ? undefined : (await context.settings.read(interaction.guildId).catch(() => undefined))?.settings;
  let model: ModelInfo;
  try {
    model = offeredModel(offered, interaction.options.getString('model') ?? (server && defaultModel(server, offered)));
  } catch (error) {
    return answerPrivately(interaction, `⚠️ ${(error as Error).message}`);
  }
  // Loading a tokenizer the first time may outlast Discord's 3 seconds.
  await interaction.deferReply({ flags: MessageFlags.Ephemeral });
  let tokenizer;
  try {
    tokenizer = await context.queue.tokenizer(model);
  } catch (error) {
    context.logger.warn({ model: model.name, error: describeError(error) }, 'the token view could not load a tokenizer');
    await interaction.editReply({ content: `⚠️ The tokenizer of ${model.name} cannot be read right now. Try again in a moment.`, allowedMentions: { parse: [] } });
    return;
  }
  const { embeddings } = await scanEmbeddings(context.config.embeddingsDir);
  const view = viewTokens(prompt, server?.promptSyntax ?? context.config.generation.promptSyntax, tokenizer, model.maxPromptChunks, embeddingsForContext(embeddings, model.textContextWidth));
  const reply = tokenReply(view, model.name, prompt !== typed);
  await interaction.editReply({ content: reply.content, files: reply.files, allowedMentions: { parse: [] } });
}

export async function autocomplete(interaction: AutocompleteInteraction, context: BotContext): Promise<void> {
  const typed = interaction.options.getFocused().replace(/\s+/g, '').toLowerCase();
  const choices = modelChoices(context.queue.offeredModels()).filter((choice) => choice.value.toLowerCase().includes(typed));
  await interaction.respond(choices.slice(0, MAX_AUTOCOMPLETE_CHOICES));
}
