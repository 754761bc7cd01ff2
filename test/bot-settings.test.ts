import { PermissionFlagsBits } from 'discord.js';
import { describe, expect, it } from 'vitest';
import { DEFAULT_MEMBER_PERMISSIONS } from './fake-discord/world.ts';
import type { InteractionHandle, OptionValue } from './fake-discord/index.ts';
import { embedField, startHarness, useSharedTinyPipeline, type Harness } from './bot-harness.ts';

const pipeline = useSharedTinyPipeline();
const MODERATOR = DEFAULT_MEMBER_PERMISSIONS | PermissionFlagsBits.ManageGuild;

function settings(harness: Harness, username: string, options: Record<string, OptionValue> = {}, memberPermissions = MODERATOR): InteractionHandle {
  return harness.fake.sendCommand({ name: 'settings', options, user: harness.fake.user(username), memberPermissions });
}

describe('/settings', () => {
  it('shows and changes a server’s settings for members with Manage Server, logs who changed what, and keeps them across a restart', async () => {
    const harness = await startHarness(pipeline);
    const mod = harness.fake.user('mod');

    expect(await harness.refusal(settings(harness, 'alice', {}, DEFAULT_MEMBER_PERMISSIONS))).toBe(
      '🔒 /settings is for members with the **Manage Server** permission.',
    );
    expect(await harness.refusal(settings(harness, 'alice', { setting: 'max_steps', value: '1' }, DEFAULT_MEMBER_PERMISSIONS))).toMatch(/^🔒/);

    const shown = await harness.refusal(settings(harness, 'mod'));
    expect(shown).toContain('**Max steps**: *150* (bot default)');
    expect(shown).toContain('**Default size**: *64x64* (bot default)');
    expect(shown).not.toContain('Latest changes');

    const changed = await harness.refusal(settings(harness, 'mod', { setting: 'max_steps', value: ' 10 ' }));
    expect(changed).toMatch(/^✅ Max steps set to 10\.\n/);
    expect(changed).toContain('**Max steps**: 10\n');
    expect(changed).toMatch(new RegExp(`• <t:\\d+:R> <@${mod.id}>: max steps set to 10$`));
    expect(harness.logs).toContainEqual(expect.objectContaining({ msg: 'server settings changed', userId: mod.id, change: 'max steps set to 10', guildId: harness.fake.guildId }));

    expect(await harness.refusal(harness.imagine('alice', { prompt: 'a fox', steps: 11 }))).toMatch(/^⚠️ steps must be between 1 and 10 for /);

    await harness.refusal(settings(harness, 'mod', { setting: 'default_steps', value: '3' }));
    await harness.refusal(settings(harness, 'mod', { setting: 'default_count', value: '2' }));
    await harness.restart();
    const reply = await harness.finalReply(harness.imagine('alice', { prompt: 'a fox', seed: 5 }));
    expect(embedField(reply, 'Steps')).toBe('3');
    expect(reply.attachments).toHaveLength(2);
    // A count the user chooses wins over the server's default.
    expect((await harness.finalReply(harness.imagine('alice', { prompt: 'a fox', seed: 5, count: 1 }))).attachments).toHaveLength(1);

    const cleared = await harness.refusal(settings(harness, 'mod', { setting: 'default_count' }));
    expect(cleared).toMatch(/^✅ Default count back to the bot’s default\./);
    expect(cleared).toContain('**Default count**: *1* (bot default)');

    const reset = await harness.refusal(settings(harness, 'mod', { reset: true }));
    expect(reset).toMatch(/^✅ Every setting reset to the bot’s defaults\./);
    expect(reset).toContain('**Max steps**: *150* (bot default)');
    expect(reset).toContain('**Default steps**: *2* (bot default)');
  });

  it('refuses values above the operator’s limits, naming them, and values that are not what the setting takes', async () => {
    const harness = await startHarness(pipeline, { MAX_STEPS: '40', MAX_QUEUE: '5', DAILY_IMAGES_PER_USER: '20' });
    const set = async (setting: string, value: string) => harness.refusal(settings(harness, 'mod', { setting, value }));
    expect(await set('max_steps', '41')).toBe("⚠️ Max steps can be at most 40, the bot operator's limit.");
    expect(await set('queue_share', '6')).toBe("⚠️ Queue share can be at most 5, the bot operator's limit.");
    expect(await set('user_daily_images', '21')).toBe("⚠️ Images per member per day can be at most 20, the bot operator's limit.");
    expect(await set('default_size', '1024x1024')).toBe('⚠️ The bot does not offer 1024x1024; choose one of 64x64, 128x64, 512x512.');
    expect(await set('default_steps', 'many')).toBe('⚠️ Default steps must be a whole number.');
    expect(await set('default_scheduler', 'warp')).toMatch(/^⚠️ Unknown scheduler "warp"; choose one of /);
    expect(await set('default_model', 'sdxl')).toMatch(/^⚠️ No model is called "sdxl"; the installed ones are /);
    expect(await set('allowed_channels', 'general')).toBe('⚠️ "general" is not a channel (mention it, or give its id).');
    expect(await set('prompt_syntax', 'fancy')).toBe('⚠️ Prompt syntax is a1111 or plain.');
    // Lowering max steps lowers the default steps a server can set.
    expect(await set('max_steps', '8')).toMatch(/^✅/);
    expect(await set('default_steps', '9')).toBe("⚠️ Default steps can be at most 8, the bot operator's limit.");
    // Nothing refused was stored.
    const shown = await harness.refusal(settings(harness, 'mod'));
    expect(shown).toContain('**Queue share**: *the whole queue (5 jobs)* (bot default)');
    expect(shown).toContain('**Default steps**: *2* (bot default)');
  });

  it('suggests the values of settings that have a fixed set of them', async () => {
    const harness = await startHarness(pipeline);
    const suggested = async (setting: string, typed: string) => {
      const handle = harness.fake.sendAutocomplete({ name: 'settings', focused: 'value', options: { setting, value: typed }, user: harness.fake.user('mod'), memberPermissions: MODERATOR });
      return (await harness.fake.waitFor(() => harness.fake.interaction(handle).callback, 5_000, 'autocomplete')).data;
    };
    expect(await suggested('default_size', '128')).toEqual({ choices: [{ name: '128x64', value: '128x64' }] });
    expect(await suggested('prompt_syntax', '')).toEqual({ choices: [{ name: 'a1111', value: 'a1111' }, { name: 'plain', value: 'plain' }] });
    expect(await suggested('max_steps', '1')).toEqual({ choices: [] });
  });

  it('turns the AUTOMATIC1111 prompt syntax off and on for one server', async () => {
    const harness = await startHarness(pipeline);
    const weighted = { prompt: 'a (fox:1.2.3)', seed: 1 };
    expect(await harness.refusal(harness.imagine('alice', weighted))).toMatch(/^⚠️ The prompt has a malformed weight/);
    await harness.refusal(settings(harness, 'mod', { setting: 'prompt_syntax', value: 'plain' }));
    const reply = await harness.finalReply(harness.imagine('alice', weighted));
    expect(reply.embeds[0].description).toBe('a (fox:1.2.3)');
    await harness.refusal(settings(harness, 'mod', { setting: 'prompt_syntax' }));
    expect(await harness.refusal(harness.imagine('alice', weighted))).toMatch(/^⚠️ The prompt has a malformed weight/);
  });

  it('the application’s owner may change any server’s settings without Manage Server', async () => {
    const harness = await startHarness(pipeline);
    // The fake's application belongs to the user guild-owner; the bot reads that once it is logged in.
    expect(await harness.refusal(settings(harness, 'guild-owner', { setting: 'max_steps', value: '7' }, DEFAULT_MEMBER_PERMISSIONS))).toMatch(/^✅ Max steps set to 7\./);
  });
});
