import { config as loadDotenv } from 'dotenv';
import { REST, Routes } from 'discord.js';
import { ConfigError, loadConfig } from '../config.ts';
import { loadCommands } from '../discord/commands.ts';
import { describeError } from '../discord/rest-errors.ts';

// npm run deploy-commands: registers commands/ in DISCORD_GUILD_ID when set (visible at once) or globally.

loadDotenv({ quiet: true });
try {
  const config = loadConfig();
  const commands = await loadCommands();
  const rest = new REST(config.discord.apiUrl ? { api: config.discord.apiUrl } : {}).setToken(config.discord.token);
  const body = [...commands.values()].map((command) => command.data.toJSON());
  const route = config.discord.guildId
    ? Routes.applicationGuildCommands(config.discord.applicationId, config.discord.guildId)
    : Routes.applicationCommands(config.discord.applicationId);
  await rest.put(route, { body });
  const where = config.discord.guildId ? `guild ${config.discord.guildId}` : 'all guilds (global commands can take up to an hour to appear)';
  console.log(`Registered ${body.map((command) => `/${command.name}`).join(', ')} in ${where}.`);
} catch (error) {
  console.error(error instanceof ConfigError ? error.message : `Could not register the commands: ${JSON.stringify(describeError(error))}`);
  process.exitCode = 1;
}
