import { config as loadDotenv } from 'dotenv';
import { ConfigError, loadConfig } from '../config.ts';
import { deployCommands } from '../discord/deploy.ts';
import { describeError } from '../discord/rest-errors.ts';

// npm run deploy-commands: registers commands/ in DISCORD_GUILD_ID when set (visible at once) or globally.

loadDotenv({ quiet: true });
try {
  const config = loadConfig();
  const names = await deployCommands(config);
  const where = config.discord.guildId ? `guild ${config.discord.guildId}` : 'all guilds (global commands can take up to an hour to appear)';
  console.log(`Registered ${names.map((name) => `/${name}`).join(', ')} in ${where}.`);
} catch (error) {
  console.error(error instanceof ConfigError ? error.message : `Could not register the commands: ${JSON.stringify(describeError(error))}`);
  process.exitCode = 1;
}
