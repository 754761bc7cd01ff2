/** Nested `errors` object of a 50035 Invalid Form Body answer, e.g. `{ content: { _errors: [...] } }`. */
export interface FormErrorTree {
  [key: string]: FormErrorTree | { code: string; message: string }[];
}

/** An error answered the way Discord answers it: HTTP status plus a JSON body `{ message, code }`. */
export class DiscordHttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    message: string,
    readonly errors?: FormErrorTree,
  ) {
    super(message);
    this.name = 'DiscordHttpError';
  }

  body(): { message: string; code: number; errors?: FormErrorTree } {
    return this.errors ? { message: this.message, code: this.code, errors: this.errors } : { message: this.message, code: this.code };
  }
}

// JSON error codes as listed in Discord's "Opcodes and Status Codes" reference.
export const DiscordErrors = {
  notFound: () => new DiscordHttpError(404, 0, '404: Not Found'),
  methodNotAllowed: () => new DiscordHttpError(405, 0, '405: Method Not Allowed'),
  unauthorized: () => new DiscordHttpError(401, 0, '401: Unauthorized'),
  internalServerError: () => new DiscordHttpError(500, 0, '500: Internal Server Error'),
  unknownApplication: () => new DiscordHttpError(404, 10002, 'Unknown Application'),
  unknownChannel: () => new DiscordHttpError(404, 10003, 'Unknown Channel'),
  unknownGuild: () => new DiscordHttpError(404, 10004, 'Unknown Guild'),
  unknownMember: () => new DiscordHttpError(404, 10007, 'Unknown Member'),
  unknownMessage: () => new DiscordHttpError(404, 10008, 'Unknown Message'),
  unknownWebhook: () => new DiscordHttpError(404, 10015, 'Unknown Webhook'),
  unknownInteraction: () => new DiscordHttpError(404, 10062, 'Unknown interaction'),
  unknownApplicationCommand: () => new DiscordHttpError(404, 10063, 'Unknown application command'),
  entityTooLarge: () => new DiscordHttpError(413, 40005, 'Request entity too large'),
  alreadyAcknowledged: () => new DiscordHttpError(400, 40060, 'Interaction has already been acknowledged.'),
  missingAccess: () => new DiscordHttpError(403, 50001, 'Missing Access'),
  cannotEditOthersMessage: () => new DiscordHttpError(403, 50005, 'Cannot edit a message authored by another user'),
  emptyMessage: () => new DiscordHttpError(400, 50006, 'Cannot send an empty message'),
  missingPermissions: () => new DiscordHttpError(403, 50013, 'Missing Permissions'),
  invalidWebhookToken: () => new DiscordHttpError(401, 50027, 'Invalid Webhook Token'),
  invalidFormBody: (errors: FormErrorTree) => new DiscordHttpError(400, 50035, 'Invalid Form Body', errors),
  invalidJson: () => new DiscordHttpError(400, 50109, 'The request body contains invalid JSON.'),
} as const;

/** Collects field errors and throws them together as one 50035 Invalid Form Body, like Discord does. */
export class FormErrors {
  readonly #root: FormErrorTree = {};
  #count = 0;

  add(path: readonly (string | number)[], code: string, message: string): void {
    let node = this.#root;
    for (const key of path) {
      const next = node[String(key)];
      if (next === undefined || Array.isArray(next)) {
        const created: FormErrorTree = {};
        node[String(key)] = created;
        node = created;
      } else {
        node = next;
      }
    }
    const list = (node._errors ??= []);
    if (!Array.isArray(list)) throw new Error('form error tree corrupted');
    list.push({ code, message });
    this.#count += 1;
  }

  get count(): number {
    return this.#count;
  }

  throwIfAny(): void {
    if (this.#count > 0) throw DiscordErrors.invalidFormBody(this.#root);
  }
}
