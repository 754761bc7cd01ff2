interface Entry<T> {
  item: T;
  tag: number;
  sequence: number;
}

/**
 * Start-time fair queueing over users: a job's tag is one more than the newest tag its user already has
 * waiting or running, and never below the tag of the job that started last. Sorting by (tag, arrival)
 * puts every user's first job ahead of anyone's second, and a user who keeps the queue busy cannot push
 * a newcomer back by more than one round. Tags are fixed at arrival, so a backend can hand them to a
 * priority queue as they are.
 */
export class FairOrder<T extends { userId: string }> {
  private virtualTime = 0;
  private sequence = 0;
  private waiting: Entry<T>[] = [];
  private running: Entry<T>[] = [];

  /** Adds a waiting item and returns its tag (lower runs first; equal tags run in arrival order). */
  add(item: T): number {
    const userTags = [...this.waiting, ...this.running].filter((entry) => entry.item.userId === item.userId).map((entry) => entry.tag);
    const tag = Math.max(this.virtualTime, ...userTags.map((userTag) => userTag + 1));
    const entry = { item, tag, sequence: this.sequence++ };
    const index = this.waiting.findIndex((other) => other.tag > tag);
    this.waiting.splice(index === -1 ? this.waiting.length : index, 0, entry);
    return tag;
  }

  /** Marks a waiting item as running. */
  start(item: T): void {
    const index = this.waiting.findIndex((entry) => entry.item === item);
    if (index === -1) throw new Error('FairOrder.start: the item is not waiting');
    const [entry] = this.waiting.splice(index, 1);
    this.virtualTime = Math.max(this.virtualTime, entry.tag);
    this.running.push(entry);
  }

  /** Forgets an item, waiting or running. */
  remove(item: T): void {
    this.waiting = this.waiting.filter((entry) => entry.item !== item);
    this.running = this.running.filter((entry) => entry.item !== item);
  }

  /** Waiting items, next to run first. */
  waitingItems(): T[] {
    return this.waiting.map((entry) => entry.item);
  }

  runningItems(): T[] {
    return this.running.map((entry) => entry.item);
  }

  countFor(userId: string): number {
    return [...this.waiting, ...this.running].filter((entry) => entry.item.userId === userId).length;
  }

  get size(): number {
    return this.waiting.length + this.running.length;
  }
}
