import { REST, Routes } from 'discord.js';
import type { BotConfig } from '../config.ts';
import { loadCommands } from './commands.ts';
import { restOptions } from './rest-options.ts';

/** Registers every command in commands/: in the configured guild (instant) or globally. Returns their names. */
export async function deployCommands(config: BotConfig, commandsDir?: string): Promise<string[]> {
  const commands = await loadCommands(commandsDir);
  const rest = new REST(restOptions(config.discord)).setToken(config.discord.token);
  const body = [...commands.values()].map((command) => command.data.toJSON());
  const route = config.discord.guildId
    ? Routes.applicationGuildCommands(config.discord.applicationId, config.discord.guildId)
    : Routes.applicationCommands(config.discord.applicationId);
  await rest.put(route, { body });
  return body.map((command) => command.name);
}
