/** The bot's owners: OWNER_IDS and the Discord application's owner (or its team's members), who may override a server's rules. */
export class BotOwners {
  private readonly ids: Set<string>;
  private learning: Promise<void> = Promise.resolve();

  constructor(ownerIds: readonly string[]) {
    this.ids = new Set(ownerIds);
  }

  /** Adds the application's owner(s) once `lookup` finds them; isOwner waits for it meanwhile. */
  learn(lookup: Promise<readonly string[]>): void {
    this.learning = lookup.then((ids) => {
      for (const id of ids) this.ids.add(id);
    });
  }

  async isOwner(userId: string): Promise<boolean> {
    await this.learning;
    return this.ids.has(userId);
  }
}
