import type { Client } from 'discord.js';
import type { Logger } from 'pino';
import type { BotConfig } from '../config.ts';
import type { JobQueue } from '../queue/types.ts';
import type { JobAdmission } from '../settings/admission.ts';
import type { BotOwners } from '../settings/owners.ts';
import type { OperatorLimits } from '../settings/server-policy.ts';
import type { SettingsStore } from '../settings/store.ts';
import type { JobDelivery } from './job-delivery.ts';

/** What command and button handlers get: the queue, never the pipeline. */
export interface BotContext {
  client: Client;
  config: BotConfig;
  queue: JobQueue;
  /** Every server's /settings, blocks and daily counts. */
  settings: SettingsStore;
  /** The environment's limits, the ceiling of every server's settings. */
  operator: OperatorLimits;
  owners: BotOwners;
  /** Checks each job against its server's rules and quotas before it is queued. */
  admission: JobAdmission;
  logger: Logger;
  deliveries: DeliveryRegistry;
  isShuttingDown(): boolean;
}

/** Deliveries still sending, by job id: the cancel button finds its job here, and shutdown waits on them. */
export class DeliveryRegistry {
  private readonly active = new Map<string, { delivery: JobDelivery; done: Promise<void> }>();

  track(delivery: JobDelivery): void {
    const done = delivery.run().finally(() => this.active.delete(delivery.job.id));
    this.active.set(delivery.job.id, { delivery, done });
  }

  get(jobId: string): JobDelivery | undefined {
    return this.active.get(jobId)?.delivery;
  }

  async settled(): Promise<void> {
    await Promise.allSettled([...this.active.values()].map((entry) => entry.done));
  }
}
