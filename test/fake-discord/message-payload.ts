import { ButtonStyle, ComponentType, MessageFlags, type APIEmbed, type APIMessageTopLevelComponent } from 'discord.js';
import { FormErrors } from './errors.ts';

/** A reference in a payload's `attachments` array: an existing attachment id, or the index n of an uploaded `files[n]`. */
export interface AttachmentReference {
  readonly id: string;
  readonly filename?: string;
  readonly description?: string;
}

/** The message fields of a create/edit body. `undefined` = not sent (keep on edit), `null` = clear. */
export interface MessagePayload {
  readonly content?: string | null;
  readonly embeds?: APIEmbed[] | null;
  readonly components?: APIMessageTopLevelComponent[] | null;
  readonly flags?: number | null;
  readonly attachments?: AttachmentReference[] | null;
}

type Path = readonly (string | number)[];

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function readArray<T>(value: unknown, path: Path, errors: FormErrors, read: (item: unknown, path: Path) => T | undefined): T[] | null | undefined {
  if (value === undefined || value === null) return value;
  if (!Array.isArray(value)) {
    errors.add(path, 'BASE_TYPE_ARRAY', 'Must be an array.');
    return undefined;
  }
  return value.flatMap((item, index) => {
    const parsed = read(item, [...path, index]);
    return parsed === undefined ? [] : [parsed];
  });
}

function readObject<T>(item: unknown, path: Path, errors: FormErrors): T | undefined {
  if (isRecord(item)) return item as T;
  errors.add(path, 'MODEL_TYPE_CONVERT', 'Only dictionaries may be used in a ModelType');
  return undefined;
}

/** Reads the message fields out of a JSON body, recording type errors Discord-style. */
export function readMessagePayload(body: unknown, errors: FormErrors, path: Path = []): MessagePayload {
  if (!isRecord(body)) {
    errors.add(path, 'MODEL_TYPE_CONVERT', 'Only dictionaries may be used in a ModelType');
    return {};
  }
  let content: string | null | undefined;
  if (typeof body.content === 'string' || body.content === null || body.content === undefined) content = body.content;
  else errors.add([...path, 'content'], 'BASE_TYPE_STRING', 'Must be a string.');

  let flags: number | null | undefined;
  if (body.flags === undefined || body.flags === null || Number.isInteger(body.flags)) flags = body.flags as number | null | undefined;
  else errors.add([...path, 'flags'], 'NUMBER_TYPE_COERCE', 'Value is not int.');

  const attachments = readArray(body.attachments, [...path, 'attachments'], errors, (item, itemPath): AttachmentReference | undefined => {
    if (!isRecord(item) || (typeof item.id !== 'string' && typeof item.id !== 'number')) {
      errors.add(itemPath, 'ATTACHMENT_ID_REQUIRED', 'Attachments need an id (an existing attachment id or a files[n] index).');
      return undefined;
    }
    return {
      id: String(item.id),
      ...(typeof item.filename === 'string' ? { filename: item.filename } : {}),
      ...(typeof item.description === 'string' ? { description: item.description } : {}),
    };
  });

  return {
    content,
    flags,
    attachments,
    embeds: readArray(body.embeds, [...path, 'embeds'], errors, (item, p) => readObject<APIEmbed>(item, p, errors)),
    components: readArray(body.components, [...path, 'components'], errors, (item, p) => readObject<APIMessageTopLevelComponent>(item, p, errors)),
  };
}

/** Discord counts text lengths in code points: an emoji is one character. */
export function characterCount(text: string): number {
  return [...text].length;
}

/** A required field must have more than whitespace (Discord refuses a blank embed field value). */
function checkLength(errors: FormErrors, path: Path, value: unknown, max: number, required = false): number {
  if (value === undefined || value === null) {
    if (required) errors.add(path, 'BASE_TYPE_REQUIRED', 'This field is required');
    return 0;
  }
  if (typeof value !== 'string') {
    errors.add(path, 'BASE_TYPE_STRING', 'Must be a string.');
    return 0;
  }
  const length = characterCount(value);
  if (length > max) errors.add(path, 'BASE_TYPE_MAX_LENGTH', `Must be ${max} or fewer in length.`);
  if (required && value.trim() === '') errors.add(path, 'BASE_TYPE_REQUIRED', 'This field is required');
  return length;
}

function validateEmbeds(embeds: readonly APIEmbed[], path: Path, errors: FormErrors): void {
  if (embeds.length > 10) errors.add(path, 'BASE_TYPE_MAX_LENGTH', 'Must be 10 or fewer in length.');
  let total = 0;
  embeds.forEach((embed, index) => {
    const at = (...keys: (string | number)[]) => [...path, index, ...keys];
    total += checkLength(errors, at('title'), embed.title, 256);
    total += checkLength(errors, at('description'), embed.description, 4096);
    total += checkLength(errors, at('footer', 'text'), embed.footer?.text, 2048);
    total += checkLength(errors, at('author', 'name'), embed.author?.name, 256);
    if (embed.color !== undefined && (!Number.isInteger(embed.color) || embed.color < 0 || embed.color > 0xffffff)) {
      errors.add(at('color'), 'NUMBER_TYPE_MAX', 'int value should be less than or equal to 16777215.');
    }
    const fields = embed.fields ?? [];
    if (fields.length > 25) errors.add(at('fields'), 'BASE_TYPE_MAX_LENGTH', 'Must be 25 or fewer in length.');
    fields.forEach((field, fieldIndex) => {
      total += checkLength(errors, at('fields', fieldIndex, 'name'), field.name, 256, true);
      total += checkLength(errors, at('fields', fieldIndex, 'value'), field.value, 1024, true);
    });
  });
  if (total > 6000) errors.add(path, 'MESSAGE_EMBEDS_TOO_LARGE', 'Embed size exceeds maximum size of 6000');
}

/** Every component object in a tree, depth first (rows, containers, sections, their accessories). */
export function* walkComponents(components: readonly unknown[]): Generator<Record<string, unknown>> {
  for (const component of components) {
    if (!isRecord(component)) continue;
    yield component;
    if (Array.isArray(component.components)) yield* walkComponents(component.components);
    if (isRecord(component.component)) yield* walkComponents([component.component]);
    if (isRecord(component.accessory)) yield* walkComponents([component.accessory]);
  }
}

function validateComponents(components: readonly APIMessageTopLevelComponent[], flags: number, path: Path, errors: FormErrors): void {
  const seen = new Set<string>();
  for (const component of walkComponents(components)) {
    if (typeof component.custom_id !== 'string') continue;
    if (component.custom_id.length === 0 || component.custom_id.length > 100) {
      errors.add(path, 'BASE_TYPE_BAD_LENGTH', `custom_id "${component.custom_id}" must be between 1 and 100 in length.`);
    }
    if (seen.has(component.custom_id)) errors.add(path, 'COMPONENT_CUSTOM_ID_DUPLICATED', `Component custom id "${component.custom_id}" cannot be duplicated`);
    seen.add(component.custom_id);
  }
  if ((flags & MessageFlags.IsComponentsV2) !== 0) return;
  if (components.length > 5) errors.add(path, 'BASE_TYPE_MAX_LENGTH', 'Must be 5 or fewer in length.');
  components.forEach((row, rowIndex) => {
    if (row.type !== ComponentType.ActionRow) {
      errors.add([...path, rowIndex, 'type'], 'UNION_TYPE_CHOICES', 'Top-level components must be action rows unless the IS_COMPONENTS_V2 flag is set.');
      return;
    }
    const children: unknown[] = Array.isArray(row.components) ? row.components : [];
    if (children.length < 1 || children.length > 5) {
      errors.add([...path, rowIndex, 'components'], 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 5 in length.');
    }
    children.forEach((child, childIndex) => {
      const at = [...path, rowIndex, 'components', childIndex];
      if (!isRecord(child)) return;
      if (child.type === ComponentType.Button) {
        checkLength(errors, [...at, 'label'], child.label, 80);
        const isLink = child.style === ButtonStyle.Link;
        if (isLink && typeof child.url !== 'string') errors.add([...at, 'url'], 'BASE_TYPE_REQUIRED', 'This field is required');
        if (!isLink && child.style !== ButtonStyle.Premium && typeof child.custom_id !== 'string') {
          errors.add([...at, 'custom_id'], 'BASE_TYPE_REQUIRED', 'This field is required');
        }
      } else if (children.length > 1) {
        errors.add(at, 'COMPONENT_LAYOUT_WIDTH_EXCEEDED', 'The specified component exceeds the maximum width');
      }
    });
  });
}

/** Discord's limits on message bodies: 2000 characters, 10 embeds of 6000 characters, 5 rows of 5 components. */
export function validateMessagePayload(payload: MessagePayload, errors: FormErrors, path: Path = []): void {
  checkLength(errors, [...path, 'content'], payload.content, 2000);
  if (payload.embeds) validateEmbeds(payload.embeds, [...path, 'embeds'], errors);
  if (payload.components) validateComponents(payload.components, payload.flags ?? 0, [...path, 'components'], errors);
  if (payload.attachments && payload.attachments.length > 10) {
    errors.add([...path, 'attachments'], 'BASE_TYPE_MAX_LENGTH', 'Must be 10 or fewer in length.');
  }
}
