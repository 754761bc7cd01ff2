import { ApplicationCommandOptionType, ApplicationCommandType, type APIApplicationCommand, type APIApplicationCommandOption } from 'discord.js';
import { DiscordErrors, FormErrors } from './errors.ts';
import type { SnowflakeGenerator } from './ids.ts';

type Path = readonly (string | number)[];
type Json = Record<string, unknown>;

// Discord's documented name rule for commands and options (CHAT_INPUT names must also be lowercase).
const NAME_PATTERN = /^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$/u;
const MAX_COMMANDS: Partial<Record<ApplicationCommandType, number>> = {
  [ApplicationCommandType.ChatInput]: 100,
  [ApplicationCommandType.User]: 15,
  [ApplicationCommandType.Message]: 15,
};

function isRecord(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function checkName(errors: FormErrors, path: Path, name: unknown, lowercase: boolean): void {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name) || (lowercase && name !== name.toLowerCase())) {
    errors.add(path, 'APPLICATION_COMMAND_INVALID_NAME', `Command name is invalid: ${JSON.stringify(name)}`);
  }
}

function checkDescription(errors: FormErrors, path: Path, description: unknown): void {
  if (typeof description !== 'string' || description.length < 1 || description.length > 100) {
    errors.add(path, 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 100 in length.');
  }
}

function checkChoices(errors: FormErrors, path: Path, option: Json): void {
  const choices = option.choices;
  if (choices === undefined) return;
  if (!Array.isArray(choices) || choices.length > 25) {
    errors.add(path, 'BASE_TYPE_MAX_LENGTH', 'Must be 25 or fewer in length.');
    return;
  }
  if (option.autocomplete === true && choices.length > 0) {
    errors.add(path, 'APPLICATION_COMMAND_OPTION_CHOICES_AUTOCOMPLETE', 'Autocomplete cannot be enabled on options that have choices.');
  }
  choices.forEach((choice: unknown, index) => {
    const at = [...path, index];
    if (!isRecord(choice)) return errors.add(at, 'MODEL_TYPE_CONVERT', 'Only dictionaries may be used in a ModelType');
    if (typeof choice.name !== 'string' || choice.name.length < 1 || choice.name.length > 100) {
      errors.add([...at, 'name'], 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 100 in length.');
    }
    const value = choice.value;
    const fits =
      option.type === ApplicationCommandOptionType.String
        ? typeof value === 'string' && value.length <= 100
        : option.type === ApplicationCommandOptionType.Integer
          ? Number.isInteger(value)
          : typeof value === 'number';
    if (!fits) errors.add([...at, 'value'], 'APPLICATION_COMMAND_OPTION_CHOICE_VALUE_INVALID', `Choice value ${JSON.stringify(value)} does not fit the option type.`);
  });
}

function checkOptions(errors: FormErrors, path: Path, options: unknown): void {
  if (options === undefined || options === null) return;
  if (!Array.isArray(options) || options.length > 25) {
    errors.add(path, 'BASE_TYPE_MAX_LENGTH', 'Must be 25 or fewer in length.');
    return;
  }
  const names = new Set<string>();
  let sawOptional = false;
  options.forEach((option: unknown, index) => {
    const at = [...path, index];
    if (!isRecord(option)) return errors.add(at, 'MODEL_TYPE_CONVERT', 'Only dictionaries may be used in a ModelType');
    const type = option.type;
    if (typeof type !== 'number' || !(type in ApplicationCommandOptionType)) {
      errors.add([...at, 'type'], 'BASE_TYPE_CHOICES', `Value must be one of ApplicationCommandOptionType, got ${JSON.stringify(type)}.`);
      return;
    }
    checkName(errors, [...at, 'name'], option.name, true);
    checkDescription(errors, [...at, 'description'], option.description);
    if (typeof option.name === 'string') {
      if (names.has(option.name)) errors.add([...at, 'name'], 'APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS', 'Option names must be unique');
      names.add(option.name);
    }
    if (option.required === true && sawOptional) {
      errors.add(at, 'APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID', 'Required options must be placed before non-required options');
    }
    if (option.required !== true) sawOptional = true;
    if (type === ApplicationCommandOptionType.Subcommand || type === ApplicationCommandOptionType.SubcommandGroup) {
      checkOptions(errors, [...at, 'options'], option.options);
      return;
    }
    checkChoices(errors, [...at, 'choices'], option);
    if (option.min_length !== undefined && (!Number.isInteger(option.min_length) || (option.min_length as number) < 0 || (option.min_length as number) > 6000)) {
      errors.add([...at, 'min_length'], 'NUMBER_TYPE_MAX', 'int value should be between 0 and 6000.');
    }
    if (option.max_length !== undefined && (!Number.isInteger(option.max_length) || (option.max_length as number) < 1 || (option.max_length as number) > 6000)) {
      errors.add([...at, 'max_length'], 'NUMBER_TYPE_MAX', 'int value should be between 1 and 6000.');
    }
  });
}

/** Checks one command definition against Discord's rules, recording problems under `path`. */
function checkCommand(errors: FormErrors, path: Path, body: unknown): body is Json {
  if (!isRecord(body)) {
    errors.add(path, 'MODEL_TYPE_CONVERT', 'Only dictionaries may be used in a ModelType');
    return false;
  }
  const type = body.type ?? ApplicationCommandType.ChatInput;
  if (type !== ApplicationCommandType.ChatInput && type !== ApplicationCommandType.User && type !== ApplicationCommandType.Message) {
    errors.add([...path, 'type'], 'BASE_TYPE_CHOICES', `Unsupported application command type ${JSON.stringify(type)}.`);
    return false;
  }
  const chatInput = type === ApplicationCommandType.ChatInput;
  checkName(errors, [...path, 'name'], body.name, chatInput);
  if (chatInput) checkDescription(errors, [...path, 'description'], body.description);
  else if (body.description !== undefined && body.description !== '') {
    errors.add([...path, 'description'], 'APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION', 'Context menu commands cannot have a description');
  }
  if (chatInput) checkOptions(errors, [...path, 'options'], body.options);
  const permissions = body.default_member_permissions;
  if (permissions !== undefined && permissions !== null && (typeof permissions !== 'string' || !/^\d+$/.test(permissions))) {
    errors.add([...path, 'default_member_permissions'], 'PERMISSIONS_INVALID', 'Must be a permissions bitfield string.');
  }
  return true;
}

/** Global and per-guild application commands, as deployed through the REST API. */
export class CommandRegistry {
  readonly #global: APIApplicationCommand[] = [];
  readonly #byGuild = new Map<string, APIApplicationCommand[]>();
  readonly #ids: SnowflakeGenerator;
  readonly #applicationId: string;

  constructor(ids: SnowflakeGenerator, applicationId: string) {
    this.#ids = ids;
    this.#applicationId = applicationId;
  }

  /** Deployed commands: global ones for `null`, else those of that guild. */
  list(guildId: string | null): APIApplicationCommand[] {
    return guildId === null ? [...this.#global] : [...(this.#byGuild.get(guildId) ?? [])];
  }

  get(guildId: string | null, commandId: string): APIApplicationCommand {
    const found = this.#listRef(guildId).find((c) => c.id === commandId);
    if (!found) throw DiscordErrors.unknownApplicationCommand();
    return found;
  }

  /** The chat-input command a user in `guildId` would see under this name: guild commands shadow global ones. */
  findChatInput(name: string, guildId: string | null): APIApplicationCommand | undefined {
    const isMatch = (c: APIApplicationCommand) => c.name === name && c.type === ApplicationCommandType.ChatInput;
    return (guildId === null ? undefined : this.#byGuild.get(guildId)?.find(isMatch)) ?? this.#global.find(isMatch);
  }

  /** PUT: replaces the whole list; commands keep their id when name and type stay the same. */
  overwrite(guildId: string | null, body: unknown): APIApplicationCommand[] {
    const errors = new FormErrors();
    if (!Array.isArray(body)) {
      errors.add([], 'BASE_TYPE_ARRAY', 'Must be an array.');
      errors.throwIfAny();
      return [];
    }
    const definitions = body.filter((definition, index) => checkCommand(errors, [index], definition)) as Json[];
    const seen = new Set<string>();
    const countByType = new Map<unknown, number>();
    definitions.forEach((definition, index) => {
      const type = (definition.type as ApplicationCommandType | undefined) ?? ApplicationCommandType.ChatInput;
      const key = `${type}:${String(definition.name)}`;
      if (seen.has(key)) errors.add([index, 'name'], 'APPLICATION_COMMANDS_DUPLICATE_NAME', 'Application command names must be unique');
      seen.add(key);
      countByType.set(type, (countByType.get(type) ?? 0) + 1);
    });
    for (const [type, count] of countByType) {
      const max = MAX_COMMANDS[type as ApplicationCommandType] ?? 0;
      if (count > max) errors.add([], 'BASE_TYPE_MAX_LENGTH', `At most ${max} commands of type ${String(type)}.`);
    }
    errors.throwIfAny();
    const previous = this.#listRef(guildId);
    const next = definitions.map((definition) => this.#store(definition, guildId, previous));
    previous.splice(0, previous.length, ...next);
    return [...next];
  }

  /** POST: creates a command, or updates the one with the same name and type. */
  upsert(guildId: string | null, body: unknown): { command: APIApplicationCommand; created: boolean } {
    const errors = new FormErrors();
    const valid = checkCommand(errors, [], body);
    errors.throwIfAny();
    if (!valid) throw DiscordErrors.invalidFormBody({});
    const list = this.#listRef(guildId);
    const command = this.#store(body as Json, guildId, list);
    const index = list.findIndex((c) => c.id === command.id);
    if (index >= 0) list[index] = command;
    else list.push(command);
    return { command, created: index < 0 };
  }

  #listRef(guildId: string | null): APIApplicationCommand[] {
    if (guildId === null) return this.#global;
    let list = this.#byGuild.get(guildId);
    if (!list) {
      list = [];
      this.#byGuild.set(guildId, list);
    }
    return list;
  }

  #store(definition: Json, guildId: string | null, existing: readonly APIApplicationCommand[]): APIApplicationCommand {
    const type = (definition.type as ApplicationCommandType | undefined) ?? ApplicationCommandType.ChatInput;
    const name = definition.name as string;
    const kept = existing.find((c) => c.name === name && c.type === type);
    return {
      id: kept?.id ?? this.#ids.next(),
      application_id: this.#applicationId,
      version: this.#ids.next(),
      type,
      name,
      name_localizations: (definition.name_localizations as APIApplicationCommand['name_localizations']) ?? null,
      description: (definition.description as string | undefined) ?? '',
      description_localizations: (definition.description_localizations as APIApplicationCommand['description_localizations']) ?? null,
      options: (definition.options as APIApplicationCommandOption[] | undefined) ?? [],
      default_member_permissions: (definition.default_member_permissions as string | null | undefined) ?? null,
      nsfw: definition.nsfw === true,
      ...(definition.integration_types ? { integration_types: definition.integration_types as APIApplicationCommand['integration_types'] } : {}),
      ...(definition.contexts !== undefined ? { contexts: definition.contexts as APIApplicationCommand['contexts'] } : {}),
      ...(guildId === null ? {} : { guild_id: guildId }),
    };
  }
}
