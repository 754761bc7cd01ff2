import { PermissionFlagsBits } from 'discord.js';
import { describe, expect, it } from 'vitest';
import { bobWaitingBehindBlocker, customIds, embedField, startHarness, useSharedTinyPipeline, webhookRoute, type Harness } from './bot-harness.ts';
import { DEFAULT_APP_PERMISSIONS } from './fake-discord/index.ts';

const pipeline = useSharedTinyPipeline();
let harness: Harness | undefined;

/** Progress edits so rare that, once a job shows its first status, the next edit of its reply is the result. */
const QUIET_PROGRESS = { PROGRESS_EDIT_INTERVAL_MS: '60000' };

describe('Discord REST failures', () => {
  it('a 500 on the result edit is retried and the image arrives', async () => {
    harness = await startHarness(pipeline, QUIET_PROGRESS);
    const { blocker, bob } = await bobWaitingBehindBlocker(harness);
    const fault = harness.fake.failNext({ method: 'PATCH', route: webhookRoute(bob), status: 500 });
    await harness.cancel(blocker);
    const reply = await harness.finalReply(bob);
    expect(fault.hits).toBe(1);
    expect(reply.attachments).toHaveLength(1);
    expect(embedField(reply, 'Seed')).toBe('3');
  });

  it('429s on the result edit are waited out', async () => {
    harness = await startHarness(pipeline, QUIET_PROGRESS);
    const { blocker, bob } = await bobWaitingBehindBlocker(harness);
    const fault = harness.fake.failNext({ method: 'PATCH', route: webhookRoute(bob), status: 429, retryAfter: 0.3, times: 2 });
    await harness.cancel(blocker);
    const reply = await harness.finalReply(bob);
    expect(fault.hits).toBe(2);
    expect(reply.attachments).toHaveLength(1);
  });

  it('when the interaction webhook keeps failing, the result goes to the channel with a mention', async () => {
    harness = await startHarness(pipeline, QUIET_PROGRESS);
    const { fake } = harness;
    const { blocker, bob } = await bobWaitingBehindBlocker(harness);
    fake.failNext({ route: webhookRoute(bob), status: 500, times: 100 });
    await harness.cancel(blocker);
    const bobId = fake.user('bob').id;
    const posted = await fake.waitFor(
      () => fake.channelMessages().find((message) => message.origin.kind === 'channel' && message.content.startsWith(`<@${bobId}>`)),
      20_000,
      'channel message',
    );
    expect(posted.attachments.map((attachment) => attachment.filename)).toEqual(['imagine-3-1.png']);
    expect(embedField(posted, 'Seed')).toBe('3');
    expect(customIds(posted).slice(0, 4)).toEqual(['imagine:reroll', 'imagine:remix', `imagine:delete:${bobId}`, 'imagine:vary:subtle:0']);

    // The reply the webhook could not update still offers Cancel; pressing it retires the button.
    await fake.waitFor(() => harness!.logs.some((line) => line.msg === 'job delivered'), 5_000, 'delivery done');
    await harness.cancel(bob);
    const retired = await harness.replyMatching(bob, /This job is no longer in the queue\.$/);
    expect(retired.components).toEqual([]);
  });

  it('a 403 on the upload leaves the embed and says which permission is missing', async () => {
    harness = await startHarness(pipeline, QUIET_PROGRESS);
    const { blocker, bob } = await bobWaitingBehindBlocker(harness);
    harness.fake.failNext({ method: 'PATCH', route: webhookRoute(bob), status: 403 });
    await harness.cancel(blocker);
    const reply = await harness.finalReply(bob);
    expect(reply.attachments).toEqual([]);
    expect(reply.content).toContain('I could not post the image here: I am missing the **Attach Files** or **Embed Links** permission');
    expect(embedField(reply, 'Seed')).toBe('3');
  });

  it('refuses at once, ephemerally, where the bot cannot attach files', async () => {
    harness = await startHarness(pipeline);
    const handle = harness.imagine('alice', { prompt: 'x' }, { appPermissions: DEFAULT_APP_PERMISSIONS & ~PermissionFlagsBits.AttachFiles });
    expect(await harness.refusal(handle)).toBe(
      '🔒 I cannot post images in this channel: I am missing **Attach Files**. Ask a moderator to grant it.',
    );
  });
});

describe('interaction token expiry', () => {
  it('a job still waiting when the token is about to expire is posted in the channel, mentioning the user', async () => {
    harness = await startHarness(
      pipeline,
      { INTERACTION_TOKEN_TTL_MS: '3000', TOKEN_EXPIRY_MARGIN_MS: '1500' },
      { interactionTokenLifetimeMs: 3000 },
    );
    const { fake } = harness;
    const { blocker, bob } = await bobWaitingBehindBlocker(harness);
    const notice = await harness.replyMatching(bob, /I will post the result in this channel and mention you/, 5_000);
    expect(customIds(notice)).toEqual([expect.stringMatching(/^imagine:cancel:/)]);
    await harness.cancel(blocker);
    const bobId = fake.user('bob').id;
    const posted = await fake.waitFor(
      () => fake.channelMessages().find((message) => message.origin.kind === 'channel' && message.content.startsWith(`<@${bobId}>`)),
      10_000,
      'channel message',
    );
    expect(posted.attachments).toHaveLength(1);
    expect(embedField(posted, 'Seed')).toBe('3');
    const afterNotice = fake.requests.filter((request) => webhookRoute(bob).test(request.path) && request.at > notice.revisions.at(-1)!.at);
    expect(afterNotice).toEqual([]);
  });

  it('a token that dies early (401) falls back to the channel; when that fails too, it is logged and the queue goes on', async () => {
    harness = await startHarness(pipeline, QUIET_PROGRESS);
    const { fake } = harness;
    const { blocker, bob } = await bobWaitingBehindBlocker(harness);
    fake.expireInteractionToken(bob);
    fake.failNext({ method: 'POST', route: /^\/channels\/\d+\/messages$/, status: 403, times: 3 });
    const carol = harness.imagine('carol', { prompt: 'after bob' });
    await harness.cancel(blocker);
    expect((await harness.finalReply(carol)).attachments).toHaveLength(1);
    await fake.waitFor(() => harness!.logs.find((line) => line.msg === 'could not tell the user about their job in any way'), 10_000, 'log line');
    const unauthorized = fake.requests.filter((request) => webhookRoute(bob).test(request.path) && request.status === 401);
    expect(unauthorized.length).toBeGreaterThan(0);
  });
});
