import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { startHarness, useSharedTinyPipeline, type Harness } from './bot-harness.ts';
import type { InteractionHandle, MessageRevision } from './fake-discord/index.ts';

const pipeline = useSharedTinyPipeline();
let harness: Harness | undefined;

const INTERVAL_MS = 150;
/**
 * On the tiny model a preview's JPEG costs more than a step, so the default budget (3 % of the job's time) would
 * skip most of them; a budget this large keeps every preview the interval allows, on any machine.
 */
const PREVIEWS = { PROGRESS_EDIT_INTERVAL_MS: String(INTERVAL_MS), PREVIEW_BUDGET_PERCENT: '1000' };

/** The revisions of a reply that show a preview. */
function previewRevisions(revisions: readonly MessageRevision[]): MessageRevision[] {
  return revisions.filter((revision) => revision.attachments.some((attachment) => attachment.filename === 'preview.jpg'));
}

function previewsSoFar(handle: InteractionHandle): MessageRevision[] {
  return previewRevisions(harness?.fake.originalResponse(handle)?.revisions ?? []);
}

describe('live previews in the reply', () => {
  it('arrive as throttled edits with a small JPEG marked as a preview; the final message has only the image', async () => {
    harness = await startHarness(pipeline, PREVIEWS);
    const handle = harness.imagine('alice', { prompt: 'a lighthouse at dusk', seed: 7, size: '256x256', steps: 60, scheduler: 'Euler' });
    const reply = await harness.finalReply(handle, 60_000);

    const previews = previewRevisions(reply.revisions);
    expect(previews.length).toBeGreaterThanOrEqual(2);
    const steps: number[] = [];
    for (const revision of previews) {
      expect(revision.attachments).toHaveLength(1);
      expect(await sharp(revision.attachments[0].data).metadata()).toMatchObject({ format: 'jpeg', width: 384, height: 384 });
      expect(revision.embeds).toHaveLength(1);
      expect(revision.embeds[0].image?.url).toBe('attachment://preview.jpg');
      const step = /^Preview after step (\d+)\/60 /.exec(revision.embeds[0].footer?.text ?? '');
      expect(step).not.toBeNull();
      steps.push(Number(step![1]));
      expect(revision.content).toMatch(/step \d+\/60/);
      expect(JSON.stringify(revision.components)).toContain('imagine:cancel:');
    }
    // Each preview shows a later step than the one before (the same preview may ride along with a later step's edit).
    for (let index = 1; index < steps.length; index++) expect(steps[index]).toBeGreaterThanOrEqual(steps[index - 1]);
    expect(new Set(steps).size).toBeGreaterThanOrEqual(2);
    expect(steps.every((step) => step < 60)).toBe(true);

    // Every edit before the final one, previews included, keeps the interval.
    const edits = reply.revisions.slice(1, -1);
    for (let index = 1; index < edits.length; index++) {
      expect(edits[index].at.getTime() - edits[index - 1].at.getTime()).toBeGreaterThanOrEqual(INTERVAL_MS - 10);
    }

    expect(reply.attachments.map((attachment) => attachment.filename)).toEqual(['imagine-7-1.png']);
    expect(reply.embeds).toHaveLength(1);
    expect(reply.embeds[0].image).toBeUndefined();
    expect(reply.embeds[0].description).toBe('a lighthouse at dusk');
  });

  it('stop at cancel: the reply says so, shows no preview and is not edited again', async () => {
    harness = await startHarness(pipeline, PREVIEWS);
    const { fake } = harness;
    const handle = harness.imagine('alice', { prompt: 'cancelled while drawn', size: '512x512', steps: 150 });
    await fake.waitFor(() => previewsSoFar(handle).length > 0, 30_000, 'a first preview');
    await harness.cancel(handle);
    const reply = await harness.finalReply(handle);
    expect(reply.content).toContain('Cancelled');
    expect(reply.attachments).toEqual([]);
    expect(reply.embeds).toEqual([]);

    const revisions = reply.revisions.length;
    await new Promise((resolve) => setTimeout(resolve, 4 * INTERVAL_MS));
    expect(fake.originalResponse(handle)?.revisions).toHaveLength(revisions);
  });

  it('are left out when PREVIEW_EVERY_STEPS is 0', async () => {
    harness = await startHarness(pipeline, { ...PREVIEWS, PREVIEW_EVERY_STEPS: '0' });
    const handle = harness.imagine('alice', { prompt: 'no previews', size: '256x256', steps: 30 });
    const reply = await harness.finalReply(handle, 60_000);
    expect(reply.revisions.some((revision) => /step \d+\/30/.test(revision.content))).toBe(true);
    expect(previewRevisions(reply.revisions)).toEqual([]);
    expect(reply.revisions.slice(0, -1).every((revision) => revision.embeds.length === 0)).toBe(true);
  });
});
