import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type {
  AutocompleteInteraction,
  ChatInputCommandInteraction,
  RESTPostAPIChatInputApplicationCommandsJSONBody,
} from 'discord.js';
import { PROJECT_ROOT, RUNNING_FROM_SOURCE } from '../runtime.ts';
import type { BotContext } from './bot-context.ts';

/** What each module in commands/ exports. */
export interface CommandModule {
  /** The slash command's builder (its toJSON() is what deploy-commands registers). */
  data: { name: string; toJSON(): RESTPostAPIChatInputApplicationCommandsJSONBody };
  execute(interaction: ChatInputCommandInteraction, context: BotContext): Promise<void>;
  autocomplete?(interaction: AutocompleteInteraction, context: BotContext): Promise<void>;
}

export const COMMANDS_DIR = join(RUNNING_FROM_SOURCE ? PROJECT_ROOT : join(PROJECT_ROOT, 'dist'), 'commands');

/** Imports every command module in the directory, keyed by command name; throws naming a malformed module. */
export async function loadCommands(directory: string = COMMANDS_DIR): Promise<Map<string, CommandModule>> {
  const files = (await readdir(directory)).filter((file) => /\.(ts|js|mjs)$/.test(file) && !file.endsWith('.d.ts')).sort();
  const commands = new Map<string, CommandModule>();
  for (const file of files) {
    const module = (await import(pathToFileURL(join(directory, file)).href)) as Partial<CommandModule>;
    if (typeof module.data?.toJSON !== 'function' || typeof module.data.name !== 'string' || typeof module.execute !== 'function') {
      throw new Error(`commands/${file} must export a slash command builder as "data" and an "execute" handler`);
    }
    if (commands.has(module.data.name)) throw new Error(`commands/${file}: a second command named "${module.data.name}"`);
    commands.set(module.data.name, module as CommandModule);
  }
  return commands;
}
