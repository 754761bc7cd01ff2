import type { DeliveryRecord } from '../queue/types.ts';
import { DEFAULT_SAFETY, SAFETY_POLICIES, type SafetyPolicy } from '../settings/guild-settings.ts';

// What the admission decided for a job, kept in its delivery record beside where to reply: a bot process that takes
// the job over (after a crash, or another bot with Redis) applies the same safety policy.

export function admissionRecord(safety: SafetyPolicy): DeliveryRecord {
  return { safety };
}

/** The job's safety policy; a record from before it was kept gets the default. */
export function storedSafetyPolicy(record: DeliveryRecord): SafetyPolicy {
  return SAFETY_POLICIES.find((policy) => policy === record.safety) ?? DEFAULT_SAFETY;
}
