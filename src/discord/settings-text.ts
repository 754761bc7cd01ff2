import type { GuildSettings } from '../settings/guild-settings.ts';
import { SETTING_FIELDS, type SettingContext, type SettingField } from '../settings/setting-fields.ts';
import type { SettingsChange } from '../settings/store.ts';
import { escapeMarkdown } from './markdown.ts';

/** A long list (banned words, mentions) is cut to this many characters in the overview. */
const VALUE_PREVIEW_LENGTH = 150;

/** What /settings shows: every setting, the server's value or the bot's default, and the latest changes. */
export function settingsText(settings: GuildSettings, changes: readonly SettingsChange[], context: Omit<SettingContext, 'settings'>): string {
  const lines = (SETTING_FIELDS as readonly SettingField[]).map((field) => {
    const value = settings[field.key];
    const shown = value === undefined ? `*${escapeMarkdown(field.unset(context))}* (bot default)` : preview(field.format(value as never));
    return `**${field.label}**: ${shown}`;
  });
  const history = changes.map((change) => `• <t:${Math.floor(change.at / 1000)}:R> <@${change.userId}>: ${escapeMarkdown(change.description)}`);
  return [
    '⚙️ **This server’s settings** — change one with `/settings setting: value:`; a setting without a value goes back to the bot’s default.',
    ...lines,
    ...(history.length > 0 ? ['', '**Latest changes**', ...history] : []),
  ].join('\n');
}

function preview(text: string): string {
  const characters = [...text];
  return characters.length > VALUE_PREVIEW_LENGTH ? `${characters.slice(0, VALUE_PREVIEW_LENGTH - 1).join('')}…` : text;
}
