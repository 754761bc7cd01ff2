import { InteractionResponseType, MessageFlags } from 'discord.js';
import { describe, expect, it } from 'vitest';
import { parseParameters } from '../src/image/parameters.ts';
import { readPngParameters } from '../src/image/png.ts';
import { customIds, embedField, startHarness, useSharedTinyPipeline, type Harness } from './bot-harness.ts';
import type { OptionValue, StoredMessage } from './fake-discord/index.ts';

const pipeline = useSharedTinyPipeline();
let harness: Harness | undefined;

/** Whether Discord's Markdown would turn some of the text into a masked link: an unescaped "[...](". */
function rendersMaskedLink(text: string): boolean {
  let openAt = -1;
  for (let index = 0; index < text.length; index++) {
    const character = text[index];
    if (character === '\\') index++;
    else if (character === '[') openAt = index;
    else if (character === ']' && openAt >= 0 && text[index + 1] === '(') return true;
  }
  return false;
}

/** Every piece of text a message ever showed: content, embed descriptions and field values, in every revision. */
function shownTexts(message: StoredMessage): string[] {
  return message.revisions.flatMap((revision) => [
    revision.content,
    ...revision.embeds.flatMap((embed) => [embed.description ?? '', ...(embed.fields ?? []).map((field) => field.value)]),
  ]);
}

/** What a client that skips the Discord client's checks gets back: the ephemeral refusal's text. */
async function uncheckedRefusal(h: Harness, options: Record<string, OptionValue>): Promise<string> {
  const handle = h.fake.sendCommand({ name: 'imagine', options, user: h.fake.user('mallory'), unchecked: true });
  return h.refusal(handle);
}

describe('hostile and unusual input', () => {
  it('counts characters as Discord does: 600 emoji are 600 characters, and the image is made', async () => {
    // Plain prompts are cut at CLIP's 77 tokens as diffusers does; AUTOMATIC1111's syntax would refuse 2400 tokens.
    harness = await startHarness(pipeline, { PROMPT_SYNTAX: 'plain' });
    const prompt = '🦊'.repeat(600);
    const reply = await harness.finalReply(harness.imagine('alice', { prompt, seed: 8 }));
    expect(reply.content.split('\n').slice(1)).toEqual([]);
    expect(reply.attachments).toHaveLength(1);
    expect(parseParameters(readPngParameters(reply.attachments[0].data) ?? '').prompt).toBe(prompt);
    expect(reply.embeds[0].description).toBe(prompt);
  });

  it('refuses a prompt with nothing visible in it', async () => {
    harness = await startHarness(pipeline);
    for (const prompt of ['\u200b\u200c\u200d', '\u2060\ufeff \u3164', '\u0301\u0301']) {
      expect(await harness.refusal(harness.imagine('alice', { prompt }))).toMatch(/The prompt is empty/);
    }
    expect(harness.fake.channelMessages().filter((message) => !(message.flags & MessageFlags.Ephemeral))).toEqual([]);
  });

  it('answers a 3000-character size, scheduler or model with a short refusal that quotes only the start of it', async () => {
    harness = await startHarness(pipeline);
    const long = 'x'.repeat(3000);
    for (const [option, expected] of [
      ['size', /^⚠️ size "x{39}…" is not WIDTHxHEIGHT/],
      ['scheduler', /^⚠️ Unknown scheduler "x{39}…"; choose one of/],
      ['model', /^⚠️ No model is called "x{39}…"/],
    ] as const) {
      const refusal = await uncheckedRefusal(harness, { prompt: 'fine', [option]: long });
      expect(refusal, option).toMatch(expected);
      expect([...refusal].length, option).toBeLessThan(400);
    }
    const inlineRefusal = await uncheckedRefusal(harness, { prompt: `a fox --seed ${long}` });
    expect(inlineRefusal).toMatch(/^⚠️ --seed must be a whole number/);
    expect([...inlineRefusal].length).toBeLessThanOrEqual(2000);
    const deployed = harness.fake.guildCommands().find((command) => command.name === 'imagine')!;
    expect(deployed.options?.find((option) => option.name === 'size')).toMatchObject({ max_length: 16 });
  });

  it('shows a prompt with masked links, mentions and Markdown as typed, and Reroll reads it back unchanged', async () => {
    harness = await startHarness(pipeline);
    const { fake } = harness;
    const prompt = '[free nitro](https://evil.example/claim) **bold** <@123456789012345678> \\(a1111 weight\\) _x_\n# big\n- item';
    const negative = '[click](https://evil.example) `code`';
    const original = await harness.finalReply(harness.imagine('alice', { prompt, negative_prompt: negative, seed: 4 }));
    const reroll = fake.clickButton({ messageId: original.id, customId: 'imagine:reroll', user: fake.user('bob') });
    const rerolled = await harness.finalReply(reroll);

    for (const message of [original, rerolled]) {
      for (const text of shownTexts(message)) expect(rendersMaskedLink(text), text).toBe(false);
      expect(message.content).not.toMatch(/(^|[^\\])<@/);
    }
    expect(shownTexts(original).some((text) => text.includes('free nitro'))).toBe(true);
    const png = parseParameters(readPngParameters(rerolled.attachments[0].data) ?? '');
    expect(png.prompt).toBe(prompt);
    expect(png.negativePrompt).toBe(negative);
    expect(rerolled.embeds[0].description).toBe(original.embeds[0].description);
    expect(embedField(rerolled, 'Negative prompt')).toBe(embedField(original, 'Negative prompt'));
  });

  it('a double click on Delete deletes the message once and answers neither click with an error', async () => {
    harness = await startHarness(pipeline);
    const { fake } = harness;
    const reply = await harness.finalReply(harness.imagine('alice', { prompt: 'delete me twice' }));
    const deleteId = customIds(reply).find((id) => id.startsWith('imagine:delete:'))!;
    const clicks = [1, 2].map(() => fake.clickButton({ messageId: reply.id, customId: deleteId, user: fake.user('alice') }));
    await fake.waitFor(() => fake.message(reply.id)?.deletedAt, 5_000, 'deleted');
    await fake.waitFor(() => clicks.every((click) => fake.interaction(click).callbackLatencyMs !== undefined), 5_000, 'both clicks answered');
    // Give a wrong "Something went wrong" follow-up the time to arrive.
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (const click of clicks) {
      expect(fake.interaction(click).callback?.type ?? InteractionResponseType.DeferredMessageUpdate).toBe(InteractionResponseType.DeferredMessageUpdate);
      expect(fake.followups(click)).toEqual([]);
    }
    expect(harness.logs.filter((line) => line.msg === 'interaction handler failed')).toEqual([]);
  });
});
