import type { JobResult } from '../jobs/runner.ts';
import type { SafetyPolicy } from '../settings/guild-settings.ts';

/** Discord blurs an attachment whose file name starts with this until it is clicked. */
const SPOILER_PREFIX = 'SPOILER_';

/** What a job's messages show of its images once the server's safety policy has been applied. */
export type SafeResult =
  | {
      /** The images to post (refused ones left out). */
      result: JobResult;
      /** Indexes (into `result.images`) of the images to post behind a spoiler. */
      spoilered: ReadonlySet<number>;
      /** What the reply says about flagged images; undefined when none were flagged or the policy is off. */
      note: string | undefined;
    }
  | { refusal: string };

export function applySafetyPolicy(result: JobResult, policy: SafetyPolicy): SafeResult {
  const flagged = result.images.flatMap((image, index) => (image.nsfw ? [index] : []));
  if (flagged.length === 0 || policy === 'off') return { result, spoilered: new Set(), note: undefined };
  const which = result.images.length === 1 ? 'this image' : `${flagged.length === 1 ? 'image' : 'images'} ${listed(flagged.map((index) => index + 1))}`;
  if (policy === 'spoiler') {
    return { result, spoilered: new Set(flagged), note: `⚠️ The safety checker flagged ${which}, so ${flagged.length === 1 ? 'it is' : 'they are'} behind a spoiler.` };
  }
  const kept = result.images.filter((image) => !image.nsfw);
  if (kept.length === 0) {
    const what = result.images.length === 1 ? 'the image' : `all ${result.images.length} images`;
    return { refusal: `🚫 The safety checker flagged ${what}, and this server does not post flagged images. Try another prompt or seed.` };
  }
  return { result: { ...result, images: kept }, spoilered: new Set(), note: `🚫 The safety checker flagged ${which}; this server does not post flagged images.` };
}

export function spoilerName(name: string): string {
  return `${SPOILER_PREFIX}${name}`;
}

function listed(numbers: number[]): string {
  return numbers.length === 1 ? String(numbers[0]) : `${numbers.slice(0, -1).join(', ')} and ${numbers.at(-1)}`;
}
