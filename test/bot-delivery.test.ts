import { MessageFlags, PermissionFlagsBits } from 'discord.js';
import { describe, expect, it } from 'vitest';
import { bobWaitingBehindBlocker, customIds, embedField, limitForOneOfTwo, startHarness, useSharedTinyPipeline, webhookRoute, type Harness } from './bot-harness.ts';
import { DEFAULT_APP_PERMISSIONS, type StoredMessage } from './fake-discord/index.ts';

const pipeline = useSharedTinyPipeline();
let harness: Harness | undefined;

/** A REST timeout the tests can outlast with a slow answer, long enough that ordinary answers never hit it. */
const REST_TIMEOUT_MS = 2000;
const SLOW_ANSWER_MS = REST_TIMEOUT_MS + 1000;
/** discord.js tries a request this often in all before it gives up (1 + its 3 retries). */
const REST_TRIES = 4;
/** Progress edits so rare that, once a job shows its first status, the next edit of its reply is the result. */
const QUIET = { PROGRESS_EDIT_INTERVAL_MS: '60000', DISCORD_REST_TIMEOUT_MS: String(REST_TIMEOUT_MS) };
const CHANNEL_POST = '/channels/:channel/messages';

/** Waits until the delivery of bob's job has ended, and returns how it logged its end. */
async function bobsDeliveryEnd(h: Harness): Promise<string> {
  const bobId = h.fake.user('bob').id;
  const end = await h.fake.waitFor(
    () => h.logs.find((line) => line.userId === bobId && /^job (not )?delivered/.test(String(line.msg))),
    30_000,
    'bob’s delivery to end',
  );
  return String(end.msg);
}

function channelPostsFor(h: Harness, username: string): StoredMessage[] {
  const userId = h.fake.user(username).id;
  return h.fake.channelMessages().filter((message) => message.origin.kind === 'channel' && message.content.startsWith(`<@${userId}>`));
}

describe('a slow Discord posts each message once', () => {
  it('a channel post whose answers come too late is tried again under the same enforced nonce: one message', async () => {
    harness = await startHarness(pipeline, { ...QUIET, INTERACTION_TOKEN_TTL_MS: '3000', TOKEN_EXPIRY_MARGIN_MS: '1500' }, { interactionTokenLifetimeMs: 3000 });
    const { fake } = harness;
    const { blocker, bob } = await bobWaitingBehindBlocker(harness);
    await harness.replyMatching(bob, /I will post the result in this channel/);
    const slow = fake.delayNext({ method: 'POST', route: CHANNEL_POST, delayMs: SLOW_ANSWER_MS, times: REST_TRIES });
    await harness.cancel(blocker);

    expect(await bobsDeliveryEnd(harness)).toBe('job delivered');
    expect(slow.hits).toBe(REST_TRIES);
    const posts = channelPostsFor(harness, 'bob');
    expect(posts).toHaveLength(1);
    expect(posts[0].attachments.map((attachment) => attachment.filename)).toEqual(['imagine-3-1.png']);
    expect(embedField(posts[0], 'Seed')).toBe('3');
    const nonces = fake.requests.filter((request) => request.method === 'POST' && request.route === CHANNEL_POST).map((request) => (request.json as { nonce?: string }).nonce);
    expect(new Set(nonces).size).toBe(1);
  });

  it('an edit of the reply whose answers come too late is looked at before anything else is posted', async () => {
    harness = await startHarness(pipeline, QUIET);
    const { fake } = harness;
    const { blocker, bob } = await bobWaitingBehindBlocker(harness);
    const slow = fake.delayNext({ method: 'PATCH', route: webhookRoute(bob), delayMs: SLOW_ANSWER_MS, times: REST_TRIES });
    await harness.cancel(blocker);

    expect(await bobsDeliveryEnd(harness)).toBe('job delivered');
    expect(slow.hits).toBe(REST_TRIES);
    const reply = await harness.finalReply(bob);
    expect(reply.attachments).toHaveLength(1);
    expect(channelPostsFor(harness, 'bob')).toEqual([]);
    expect(fake.followups(bob)).toEqual([]);
  });

  it('an acknowledgement whose answer comes too late still counts: the job goes on', async () => {
    harness = await startHarness(pipeline, QUIET);
    const { fake } = harness;
    fake.delayNext({ method: 'POST', route: '/interactions/:interaction/:token/callback', delayMs: SLOW_ANSWER_MS });
    const handle = harness.imagine('alice', { prompt: 'acknowledged slowly', seed: 6 });
    const reply = await harness.finalReply(handle);
    expect(reply.attachments.map((attachment) => attachment.filename)).toEqual(['imagine-6-1.png']);
    // The log lists requests as they are answered: the slow first one last.
    const callbacks = () => fake.requests.filter((request) => request.route === '/interactions/:interaction/:token/callback');
    await fake.waitFor(() => callbacks().length === 2, 5_000, 'the slow answer');
    expect(callbacks().map((request) => [request.status, request.errorCode])).toEqual([
      [400, 40060],
      [204, undefined],
    ]);
  });

  it('a follow-up whose answer comes too late is not sent again', async () => {
    harness = await startHarness(pipeline, QUIET);
    const { fake } = harness;
    // Two images over an upload limit that holds one: the second goes out as a follow-up.
    const limit = await limitForOneOfTwo(harness, 'carol', { prompt: 'bob’s picture', seed: 3 });
    const { blocker, bob } = await bobWaitingBehindBlocker(harness, { count: 2 }, { attachmentSizeLimit: limit });
    fake.delayNext({ method: 'POST', route: '/webhooks/:application/:token', delayMs: SLOW_ANSWER_MS });
    await harness.cancel(blocker);

    expect(await bobsDeliveryEnd(harness)).toBe('job delivered');
    expect(fake.followups(bob).map((message) => message.content)).toEqual(['Images 2/2']);
    expect(channelPostsFor(harness, 'bob')).toEqual([]);
  });
});

describe('results Discord refuses in part', () => {
  it('a blank negative prompt gets no embed field, so the result posts whole', async () => {
    harness = await startHarness(pipeline);
    const reply = await harness.finalReply(harness.imagine('alice', { prompt: 'no negative', negative_prompt: '   ' }));
    expect(reply.attachments).toHaveLength(1);
    expect(reply.embeds).toHaveLength(1);
    expect(embedField(reply, 'Negative prompt')).toBeUndefined();
  });

  it('a refused embed is dropped before the image, and Reroll still works from the PNG', async () => {
    harness = await startHarness(pipeline, QUIET);
    const { fake } = harness;
    const { blocker, bob } = await bobWaitingBehindBlocker(harness);
    fake.failNext({ method: 'PATCH', route: webhookRoute(bob), status: 400 });
    await harness.cancel(blocker);
    const reply = await harness.finalReply(bob);
    expect(reply.attachments.map((attachment) => attachment.filename)).toEqual(['imagine-3-1.png']);
    expect(reply.embeds).toEqual([]);
    expect(reply.content).toMatch(/Discord did not accept the message \(HTTP 400\)\. Here is the image without its settings card\./);
    expect(customIds(reply)).toContain('imagine:reroll');

    const rerolled = await harness.finalReply(fake.clickButton({ messageId: reply.id, customId: 'imagine:reroll', user: fake.user('bob') }));
    expect(rerolled.embeds[0].description).toBe('bob’s picture');
  });

  it('when only text gets through it offers no button it does not show', async () => {
    harness = await startHarness(pipeline, QUIET);
    const { fake } = harness;
    const { blocker, bob } = await bobWaitingBehindBlocker(harness);
    fake.failNext({ method: 'PATCH', route: webhookRoute(bob), status: 400, times: 3 });
    await harness.cancel(blocker);
    const reply = await harness.finalReply(bob);
    expect(reply.attachments).toEqual([]);
    expect(reply.components).toEqual([]);
    expect(reply.content).toMatch(/Please run \/imagine again\.$/);
    expect(reply.content).not.toContain('Reroll');
  });
});

describe('where the bot may not post', () => {
  it('refuses /imagine at once where the bot cannot send messages, which a long job needs', async () => {
    harness = await startHarness(pipeline);
    harness.fake.setAppPermissions(DEFAULT_APP_PERMISSIONS & ~PermissionFlagsBits.SendMessages);
    const refusal = await harness.refusal(harness.imagine('alice', { prompt: 'x' }));
    expect(refusal).toBe('🔒 I cannot post images in this channel: I am missing **Send Messages**. Ask a moderator to grant it.');
  });

  it('a result that cannot be posted anywhere is logged as not delivered, never as delivered', async () => {
    harness = await startHarness(pipeline, QUIET);
    const { fake } = harness;
    const { blocker, bob } = await bobWaitingBehindBlocker(harness);
    fake.expireInteractionToken(bob);
    fake.setAppPermissions(DEFAULT_APP_PERMISSIONS & ~PermissionFlagsBits.SendMessages);
    await harness.cancel(blocker);
    expect(await bobsDeliveryEnd(harness)).toBe('job not delivered: its messages could not be posted');
    expect(harness.logs.some((line) => line.msg === 'job delivered' && line.userId === fake.user('bob').id)).toBe(false);
    const refused = fake.requests.filter((request) => request.route === CHANNEL_POST && request.method === 'POST');
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.every((request) => request.status === 403)).toBe(true);
  });
});

describe('Cancel', () => {
  it('only the requester may retire a Cancel the bot no longer knows', async () => {
    harness = await startHarness(pipeline, QUIET);
    const { fake } = harness;
    const { blocker, bob } = await bobWaitingBehindBlocker(harness);
    fake.failNext({ route: webhookRoute(bob), status: 500, times: 100 });
    await harness.cancel(blocker);
    expect(await bobsDeliveryEnd(harness)).toBe('job delivered');
    const stale = fake.originalResponse(bob)!;
    const cancelId = customIds(stale).find((id) => id.startsWith('imagine:cancel:'))!;

    const carol = fake.clickButton({ messageId: stale.id, customId: cancelId, user: fake.user('carol') });
    const answer = await fake.waitFor(() => fake.interaction(carol).callback, 5_000, 'answer to carol');
    expect(answer.data).toMatchObject({ content: `Only <@${fake.user('bob').id}> can cancel this job.`, flags: MessageFlags.Ephemeral });
    expect(fake.message(stale.id)?.revisions).toHaveLength(stale.revisions.length);
  });

  it('a Cancel pressed on the reply before the result arrived leaves the result as it is', async () => {
    harness = await startHarness(pipeline);
    const { fake } = harness;
    const handle = harness.imagine('alice', { prompt: 'racing a cancel' });
    const result = await harness.finalReply(handle);
    await fake.waitFor(() => harness!.logs.some((line) => line.msg === 'job delivered'), 5_000, 'delivered');
    const withCancel = result.revisions.findIndex((revision) => JSON.stringify(revision.components).includes('imagine:cancel:'));
    const cancelId = customIds({ ...result, ...result.revisions[withCancel] }).find((id) => id.startsWith('imagine:cancel:'))!;

    const late = fake.clickButton({ messageId: result.id, customId: cancelId, user: fake.user('alice'), revision: withCancel });
    const notice = await fake.waitFor(() => fake.followups(late)[0], 5_000, 'answer to the late cancel');
    expect(notice.content).toBe('This job has already finished.');
    expect(notice.flags & MessageFlags.Ephemeral).toBe(MessageFlags.Ephemeral);
    const after = fake.message(result.id)!;
    expect(after.revisions.at(-1)).toEqual(result.revisions.at(-1));
    expect(customIds(after).slice(0, 3)).toEqual(['imagine:reroll', 'imagine:remix', `imagine:delete:${fake.user('alice').id}`]);
  });
});
