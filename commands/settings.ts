import { InteractionContextType, PermissionFlagsBits, SlashCommandBuilder, type AutocompleteInteraction, type ChatInputCommandInteraction } from 'discord.js';
import type { BotContext } from '../src/discord/bot-context.ts';
import { answerPrivately } from '../src/discord/job-messages.ts';
import { settingsText } from '../src/discord/settings-text.ts';
import type { GuildSettings } from '../src/settings/guild-settings.ts';
import { SETTING_FIELDS, settingField, SettingValueError, type SettingField } from '../src/settings/setting-fields.ts';
import { changeSettings } from '../src/settings/store.ts';

/** Enough for a long list of banned words or mentions. */
const MAX_VALUE_LENGTH = 1000;
const MAX_AUTOCOMPLETE_CHOICES = 25;

export const data = new SlashCommandBuilder()
  .setName('settings')
  .setDescription('Show or change this server’s image settings, limits and rules (Manage Server)')
  // Discord shows the command to members with Manage Server only; server admins can widen that under Integrations.
  .setDefaultMemberPermissions(PermissionFlagsBits.ManageGuild)
  .setContexts(InteractionContextType.Guild)
  .addStringOption((option) =>
    option
      .setName('setting')
      .setDescription('The setting to change (leave value empty to go back to the bot’s default)')
      .addChoices(...SETTING_FIELDS.map((field) => ({ name: field.label, value: field.option }))),
  )
  .addStringOption((option) => option.setName('value').setDescription('Its new value').setMaxLength(MAX_VALUE_LENGTH).setAutocomplete(true))
  .addBooleanOption((option) => option.setName('reset').setDescription('Put every setting back to the bot’s defaults'));

export async function execute(interaction: ChatInputCommandInteraction, context: BotContext): Promise<void> {
  const guildId = interaction.guildId;
  if (guildId === null) return answerPrivately(interaction, '⚠️ /settings works in a server, for that server.');
  // Discord hides the command from others, but a server can change who sees it: the permission is checked here too.
  const mayChange = interaction.memberPermissions?.has(PermissionFlagsBits.ManageGuild) === true || (await context.owners.isOwner(interaction.user.id));
  if (!mayChange) return answerPrivately(interaction, '🔒 /settings is for members with the **Manage Server** permission.');

  const option = interaction.options.getString('setting');
  const value = interaction.options.getString('value');
  const reset = interaction.options.getBoolean('reset') === true;
  const field = option === null ? undefined : settingField(option);
  if (option !== null && !field) return answerPrivately(interaction, `⚠️ There is no setting called "${option.slice(0, 40)}".`);
  if (reset && field) return answerPrivately(interaction, '⚠️ Choose either a setting or reset, not both.');
  if (!field && value !== null) return answerPrivately(interaction, '⚠️ Choose the setting this value is for.');

  const offered = context.queue.offeredModels();
  let confirmation = '';
  if (reset || field) {
    let change;
    try {
      change = await changeSettings(context.settings, guildId, { userId: interaction.user.id, at: Date.now() }, (current) => {
        if (reset) return { settings: {}, description: 'every setting reset to the bot’s defaults' };
        const parsed = value === null ? undefined : field!.parse(value, { operator: context.operator, offered, settings: current });
        return { settings: edited(current, field!, parsed), description: describeChange(field!, parsed) };
      });
    } catch (error) {
      if (error instanceof SettingValueError) return answerPrivately(interaction, `⚠️ ${error.message}`);
      throw error;
    }
    context.logger.info({ guildId, userId: interaction.user.id, change: change.description }, 'server settings changed');
    confirmation = `✅ ${change.description[0].toUpperCase()}${change.description.slice(1)}.\n\n`;
  }
  const stored = await context.settings.read(guildId);
  const changes = await context.settings.changes(guildId, 5);
  await answerPrivately(interaction, confirmation + settingsText(stored.settings, changes, { operator: context.operator, offered }));
}

/** The values of the chosen setting that has a fixed set of them (models, schedulers, sizes, prompt syntaxes). */
export async function autocomplete(interaction: AutocompleteInteraction, context: BotContext): Promise<void> {
  const field = settingField(interaction.options.getString('setting') ?? '');
  const typed = interaction.options.getFocused().trim().toLowerCase();
  const values = field?.suggestions?.({ operator: context.operator, offered: context.queue.offeredModels() }) ?? [];
  const matching = values.filter((value) => value.toLowerCase().includes(typed)).slice(0, MAX_AUTOCOMPLETE_CHOICES);
  await interaction.respond(matching.map((value) => ({ name: value, value })));
}

function edited(settings: GuildSettings, field: SettingField, value: NonNullable<GuildSettings[keyof GuildSettings]> | undefined): GuildSettings {
  const next: Record<string, unknown> = { ...settings };
  if (value === undefined) delete next[field.key];
  else next[field.key] = value;
  return next as GuildSettings;
}

/** For the log and the list of changes: what was set, except banned words, which are only counted. */
function describeChange(field: SettingField, value: NonNullable<GuildSettings[keyof GuildSettings]> | undefined): string {
  const name = field.label.toLowerCase();
  if (value === undefined) return `${name} back to the bot’s default`;
  if (Array.isArray(value) && field.key === 'bannedWords') return `banned words replaced (${value.length} entries)`;
  return `${name} set to ${field.format(value as never)}`;
}
