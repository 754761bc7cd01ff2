import type { DeliveryRecord } from '../queue/types.ts';
import type { QuotaReservation } from '../settings/admission.ts';
import { DEFAULT_SAFETY, SAFETY_POLICIES, type SafetyPolicy } from '../settings/guild-settings.ts';

// What the admission decided for a job, kept in its delivery record beside where to reply: a bot process that takes
// the job over (after a crash, or another bot with Redis) applies the same safety policy and gives back the same quota.

export function admissionRecord(safety: SafetyPolicy, reservation: QuotaReservation | undefined): DeliveryRecord {
  return { safety, ...(reservation && { quotaGuildId: reservation.guildId, quotaDay: reservation.day, quotaImages: reservation.images }) };
}

/** The job's safety policy; a record from before it was kept gets the default. */
export function storedSafetyPolicy(record: DeliveryRecord): SafetyPolicy {
  return SAFETY_POLICIES.find((policy) => policy === record.safety) ?? DEFAULT_SAFETY;
}

/** The images the job counted against `userId`'s quotas; undefined when it counted none (or the record does not say). */
export function storedReservation(record: DeliveryRecord, userId: string): QuotaReservation | undefined {
  const { quotaGuildId, quotaDay, quotaImages } = record;
  if (typeof quotaGuildId !== 'string' || typeof quotaDay !== 'string' || typeof quotaImages !== 'number') return undefined;
  return { guildId: quotaGuildId, userId, day: quotaDay, images: quotaImages };
}
