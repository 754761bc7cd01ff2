import { config as loadDotenv } from 'dotenv';
import { ConfigError, loadConfig } from '../config.ts';
import { deployCommands } from '../discord/deploy.ts';
import { describeError } from '../log.ts';
import { acceptNoArguments, ENVIRONMENT_NOTE } from './command-line.ts';

acceptNoArguments({
  name: 'deploy-commands',
  command: 'npm run deploy-commands',
  usage: '',
  description:
    "Registers the slash commands in commands/ with Discord: in DISCORD_GUILD_ID when set (visible at once), else for\n" +
    'every server (global commands can take up to an hour to appear). Run it again after installing a second model.',
  flags: {},
  notes: [ENVIRONMENT_NOTE],
});

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
