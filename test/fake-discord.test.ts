import { once } from 'node:events';
import {
  ActionRowBuilder,
  ButtonBuilder,
  ButtonStyle,
  Client,
  DiscordAPIError,
  Events,
  GatewayIntentBits,
  HTTPError,
  InteractionResponseType,
  LabelBuilder,
  MessageFlags,
  ModalBuilder,
  PermissionFlagsBits,
  REST,
  RESTEvents,
  Routes,
  SlashCommandBuilder,
  TextInputBuilder,
  TextInputStyle,
  type Interaction,
  type RateLimitData,
} from 'discord.js';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_APP_PERMISSIONS, FakeDiscord, type FakeDiscordOptions } from './fake-discord/index.ts';

const imagine = new SlashCommandBuilder()
  .setName('imagine')
  .setDescription('Draw a picture')
  .addStringOption((o) => o.setName('prompt').setDescription('What to draw').setRequired(true).setMaxLength(500))
  .addIntegerOption((o) => o.setName('steps').setDescription('Denoising steps').setMinValue(1).setMaxValue(50))
  .addNumberOption((o) => o.setName('guidance').setDescription('Guidance scale'))
  .addBooleanOption((o) => o.setName('private').setDescription('Only show it to me'))
  .addStringOption((o) => o.setName('model').setDescription('Model').setAutocomplete(true))
  .toJSON();

interface Bot {
  readonly fake: FakeDiscord;
  readonly client: Client;
}

const running: Bot[] = [];

async function startBot(options?: FakeDiscordOptions): Promise<Bot> {
  const fake = await FakeDiscord.start(options);
  const client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api: fake.apiUrl } });
  running.push({ fake, client });
  const ready = once(client, Events.ClientReady);
  await client.login(fake.botToken);
  await ready;
  await client.application!.commands.set([imagine]);
  return { fake, client };
}

/** Runs `handler` on the next interaction the client receives and settles with its outcome. */
function handleNext<T>(client: Client, handler: (interaction: Interaction) => Promise<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    client.once(Events.InteractionCreate, (interaction) => void handler(interaction).then(resolve, reject));
  });
}

async function tinyPng(): Promise<Buffer> {
  return sharp({ create: { width: 4, height: 3, channels: 3, background: { r: 200, g: 30, b: 90 } } }).png().toBuffer();
}

afterEach(async () => {
  for (const { fake, client } of running.splice(0)) {
    await client.destroy();
    await fake.close();
    expect(fake.internalErrors).toEqual([]);
  }
});

describe('fake Discord with a real discord.js client', () => {
  it('logs the client in over REST + gateway and hands it the guild', async () => {
    const { fake, client } = await startBot();

    expect(client.user?.id).toBe(fake.botUser.id);
    expect(client.user?.bot).toBe(true);
    const guild = client.guilds.cache.get(fake.guildId);
    expect(guild?.available).toBe(true);
    expect(guild?.channels.cache.get(fake.channelId)?.isTextBased()).toBe(true);
    expect(fake.gateway.identifies).toHaveLength(1);
    expect(fake.gateway.identifies[0].intents).toBe(GatewayIntentBits.Guilds);
    expect(fake.gateway.identifies[0].shard).toEqual([0, 1]);
    expect(fake.requests.map((r) => `${r.method} ${r.route} ${r.status}`)).toEqual([
      'GET /gateway/bot 200',
      'PUT /applications/:application/commands 200',
    ]);

    const fetched = await client.guilds.fetch({ guild: fake.guildId, force: true });
    const alice = fake.user('alice');
    const member = await fetched.members.fetch({ user: alice.id, force: true });
    expect(member.user.username).toBe('alice');
    expect(fake.requests.slice(-2).map((r) => `${r.method} ${r.route} ${r.status}`)).toEqual([
      'GET /guilds/:guild 200',
      'GET /guilds/:guild/members/:user 200',
    ]);
  });

  it('stores deployed commands and rejects invalid definitions like Discord', async () => {
    const { fake, client } = await startBot();

    expect(fake.globalCommands().map((c) => c.name)).toEqual(['imagine']);
    expect(fake.globalCommands()[0].options?.map((o) => [o.name, o.type])).toEqual([
      ['prompt', 3],
      ['steps', 4],
      ['guidance', 10],
      ['private', 5],
      ['model', 3],
    ]);
    const firstId = fake.globalCommands()[0].id;
    await client.application!.commands.set([imagine]);
    expect(fake.globalCommands()[0].id).toBe(firstId);

    await client.guilds.cache.get(fake.guildId)!.commands.set([{ name: 'ping', description: 'Pong?' }]);
    expect(fake.guildCommands().map((c) => c.name)).toEqual(['ping']);

    const invalid = client.application!.commands.set([{ name: 'Imagine', description: 'x'.repeat(101) }]);
    const error = await invalid.then(() => undefined, (e: unknown) => e);
    expect(error).toBeInstanceOf(DiscordAPIError);
    expect((error as DiscordAPIError).code).toBe(50035);
    expect((error as DiscordAPIError).message).toContain('APPLICATION_COMMAND_INVALID_NAME');
    expect((error as DiscordAPIError).message).toContain('BASE_TYPE_BAD_LENGTH');
    expect(fake.globalCommands().map((c) => c.name)).toEqual(['imagine']);
  });

  it('delivers a slash command and stores the deferred reply edited with a file, bytes included', async () => {
    const { fake, client } = await startBot();
    const png = await tinyPng();
    const alice = fake.user('alice');

    const handled = handleNext(client, async (interaction) => {
      if (!interaction.isChatInputCommand()) throw new Error(`unexpected ${interaction.type}`);
      await interaction.deferReply();
      await interaction.editReply({ content: 'here it is', files: [{ attachment: png, name: 'x.png' }] });
      return {
        prompt: interaction.options.getString('prompt'),
        steps: interaction.options.getInteger('steps'),
        guidance: interaction.options.getNumber('guidance'),
        userId: interaction.user.id,
        channelId: interaction.channelId,
        canAttach: interaction.appPermissions.has('AttachFiles'),
        isAdmin: interaction.memberPermissions?.has('Administrator'),
        sizeLimit: interaction.attachmentSizeLimit,
      };
    });
    const handle = fake.sendCommand({ name: 'imagine', options: { prompt: 'a red fox', steps: 20, guidance: 7.5 }, user: alice });

    expect(await handled).toEqual({
      prompt: 'a red fox',
      steps: 20,
      guidance: 7.5,
      userId: alice.id,
      channelId: fake.channelId,
      canAttach: true,
      isAdmin: false,
      sizeLimit: 10 * 1024 * 1024,
    });
    const reply = fake.originalResponse(handle);
    expect(reply?.content).toBe('here it is');
    expect(reply?.flags).toBe(0);
    expect(reply?.attachments).toHaveLength(1);
    const [attachment] = reply!.attachments;
    expect(attachment.filename).toBe('x.png');
    expect(attachment.contentType).toBe('image/png');
    expect(attachment.data.equals(png)).toBe(true);
    expect(Buffer.from(await (await fetch(attachment.url)).arrayBuffer()).equals(png)).toBe(true);
    expect(reply?.revisions.map((r) => [r.content, r.flags, r.attachments.length])).toEqual([
      ['', MessageFlags.Loading, 0],
      ['here it is', 0, 1],
    ]);
    const record = fake.interaction(handle);
    expect(record.callback?.type).toBe(InteractionResponseType.DeferredChannelMessageWithSource);
    expect(record.callbackLatencyMs).toBeLessThan(3000);
    expect(fake.requests.slice(-2).map((r) => `${r.method} ${r.route} ${r.status}`)).toEqual([
      'POST /interactions/:interaction/:token/callback 204',
      'PATCH /webhooks/:application/:token/messages/@original 200',
    ]);
  });

  it('refuses to dispatch commands that Discord would not let a user send', async () => {
    const { fake } = await startBot();

    expect(() => fake.sendCommand({ name: 'paint' })).toThrow(/\/paint is not deployed/);
    expect(() => fake.sendCommand({ name: 'imagine', options: {} })).toThrow(/requires option prompt/);
    expect(() => fake.sendCommand({ name: 'imagine', options: { prompt: 'x', steps: 2.5 } })).toThrow(/expects an integer/);
    expect(() => fake.sendCommand({ name: 'imagine', options: { prompt: 'x', steps: 51 } })).toThrow(/above max_value 50/);
    expect(() => fake.sendCommand({ name: 'imagine', options: { prompt: 'x', seed: 1 } })).toThrow(/no option "seed"/);
    expect(() => fake.sendCommand({ name: 'imagine', options: { prompt: 'x'.repeat(501) } })).toThrow(/longer than max_length 500/);
  });

  it('counts lengths in code points, and sends what a modified client sends when asked to skip the checks', async () => {
    const { fake, client } = await startBot();
    const received = handleNext(client, async (interaction) => {
      if (!interaction.isChatInputCommand()) throw new Error('expected a command');
      await interaction.reply({ content: '🦊'.repeat(2000) });
      return interaction.options.getString('prompt');
    });
    fake.sendCommand({ name: 'imagine', options: { prompt: '🦊'.repeat(500) } });
    expect(await received).toBe('🦊'.repeat(500));

    const unchecked = handleNext(client, async (interaction) => {
      if (!interaction.isChatInputCommand()) throw new Error('expected a command');
      return [interaction.options.getString('prompt'), interaction.options.getInteger('steps'), interaction.options.get('seed')?.value];
    });
    fake.sendCommand({ name: 'imagine', options: { prompt: 'x'.repeat(3000), steps: 999, seed: 7 }, unchecked: true });
    expect(await unchecked).toEqual(['x'.repeat(3000), 999, 7]);
    expect(fake.channelMessages()[0].content).toBe('🦊'.repeat(2000));
  });

  it('refuses an embed field whose value is blank, as Discord does', async () => {
    const { fake, client } = await startBot();
    const channel = await client.channels.fetch(fake.channelId);
    if (!channel?.isSendable()) throw new Error('expected a sendable channel');
    const refused = await channel.send({ embeds: [{ description: 'd', fields: [{ name: 'Negative prompt', value: ' \t ' }] }] }).catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(DiscordAPIError);
    expect((refused as DiscordAPIError).rawError).toMatchObject({ code: 50035, errors: { embeds: { 0: { fields: { 0: { value: { _errors: [{ code: 'BASE_TYPE_REQUIRED' }] } } } } } } });
    expect(fake.channelMessages()).toEqual([]);
  });

  it('sends ephemeral replies and followups and keeps them out of the channel API', async () => {
    const { fake, client } = await startBot();

    const handled = handleNext(client, async (interaction) => {
      if (!interaction.isChatInputCommand()) throw new Error('expected a command');
      await interaction.deferReply({ flags: MessageFlags.Ephemeral });
      // The first followup after a defer replaces the "thinking" message and keeps its ephemerality.
      await interaction.followUp({ content: 'first' });
      const second = await interaction.followUp({ content: 'second', flags: MessageFlags.Ephemeral });
      const third = await interaction.followUp({ content: 'third' });
      await interaction.deleteReply(third);
      return second.id;
    });
    const handle = fake.sendCommand({ name: 'imagine', options: { prompt: 'x', private: true } });
    const secondId = await handled;

    const original = fake.originalResponse(handle)!;
    expect(original.content).toBe('first');
    expect(original.flags).toBe(MessageFlags.Ephemeral);
    expect(fake.followups(handle).map((m) => [m.id, m.content, m.flags, m.deletedAt === null])).toEqual([
      [secondId, 'second', MessageFlags.Ephemeral, true],
      [expect.any(String), 'third', 0, false],
    ]);
    const channel = await client.channels.fetch(fake.channelId);
    if (!channel?.isTextBased()) throw new Error('expected a text channel');
    const error = await channel.messages.fetch({ message: original.id, force: true }).then(() => undefined, (e: unknown) => e);
    expect((error as DiscordAPIError).code).toBe(10008);
  });

  it('delivers a button click with the custom id and stores the updated message', async () => {
    const { fake, client } = await startBot();

    const replied = handleNext(client, async (interaction) => {
      if (!interaction.isChatInputCommand()) throw new Error('expected a command');
      const row = new ActionRowBuilder<ButtonBuilder>().addComponents(
        new ButtonBuilder().setCustomId('reroll:42').setLabel('Reroll').setStyle(ButtonStyle.Primary),
      );
      const response = await interaction.reply({ content: 'done', components: [row], withResponse: true });
      return response.resource?.message?.id;
    });
    const command = fake.sendCommand({ name: 'imagine', options: { prompt: 'x' } });
    const repliedId = await replied;
    const message = fake.originalResponse(command)!;
    expect(repliedId).toBe(message.id);

    const clicked = handleNext(client, async (interaction) => {
      if (!interaction.isButton()) throw new Error('expected a button');
      await interaction.update({ content: 'rerolling', components: [] });
      return { customId: interaction.customId, messageId: interaction.message.id, userId: interaction.user.id };
    });
    const bob = fake.user('bob');
    const click = fake.clickButton({ messageId: message.id, customId: 'reroll:42', user: bob });

    expect(await clicked).toEqual({ customId: 'reroll:42', messageId: message.id, userId: bob.id });
    expect(fake.interaction(click).callback?.type).toBe(InteractionResponseType.UpdateMessage);
    expect(fake.message(message.id)?.content).toBe('rerolling');
    expect(fake.message(message.id)?.components).toEqual([]);
    expect(fake.message(message.id)?.revisions).toHaveLength(2);
    expect(() => fake.clickButton({ messageId: message.id, customId: 'reroll:42' })).toThrow(/has no component "reroll:42"/);

    // A client still showing the first revision can press the button that is gone since.
    const stale = handleNext(client, async (interaction) => {
      if (!interaction.isButton()) throw new Error('expected a button');
      await interaction.deferUpdate();
      return { shown: interaction.message.content, now: (await interaction.fetchReply()).content };
    });
    fake.clickButton({ messageId: message.id, customId: 'reroll:42', user: bob, revision: 0 });
    expect(await stale).toEqual({ shown: 'done', now: 'rerolling' });
  });

  it('answers autocomplete and records the choices', async () => {
    const { fake, client } = await startBot();

    const handled = handleNext(client, async (interaction) => {
      if (!interaction.isAutocomplete()) throw new Error('expected autocomplete');
      const typed = interaction.options.getFocused(true);
      await interaction.respond([{ name: `${typed.value}-v1.5`, value: 'sd15' }]);
      return typed;
    });
    const handle = fake.sendAutocomplete({ name: 'imagine', options: { prompt: 'x', model: 'sd' }, focused: 'model' });

    expect(await handled).toMatchObject({ name: 'model', value: 'sd' });
    const callback = fake.interaction(handle).callback;
    expect(callback?.type).toBe(InteractionResponseType.ApplicationCommandAutocompleteResult);
    expect(callback?.data).toEqual({ choices: [{ name: 'sd-v1.5', value: 'sd15' }] });
  });

  it('shows a modal and delivers its submission', async () => {
    const { fake, client } = await startBot();

    const shown = handleNext(client, async (interaction) => {
      if (!interaction.isChatInputCommand()) throw new Error('expected a command');
      const input = new TextInputBuilder().setCustomId('prompt').setStyle(TextInputStyle.Paragraph).setMaxLength(200);
      await interaction.showModal(
        new ModalBuilder().setCustomId('edit-prompt').setTitle('Edit prompt').addLabelComponents(new LabelBuilder().setLabel('Prompt').setTextInputComponent(input)),
      );
    });
    const command = fake.sendCommand({ name: 'imagine', options: { prompt: 'x' } });
    await shown;
    expect(fake.interaction(command).callback?.type).toBe(InteractionResponseType.Modal);

    const submitted = handleNext(client, async (interaction) => {
      if (!interaction.isModalSubmit()) throw new Error('expected a modal submit');
      await interaction.reply({ content: 'ok' });
      return [interaction.customId, interaction.fields.getTextInputValue('prompt')];
    });
    const submit = fake.submitModal({ from: command, values: { prompt: 'a blue whale' } });

    expect(await submitted).toEqual(['edit-prompt', 'a blue whale']);
    expect(fake.originalResponse(submit)?.content).toBe('ok');
  });

  it('makes discord.js wait out a 429 and retry, per Retry-After', async () => {
    const { fake, client } = await startBot();
    const rateLimits: RateLimitData[] = [];
    client.rest.on(RESTEvents.RateLimited, (info) => rateLimits.push(info));

    const handled = handleNext(client, async (interaction) => {
      if (!interaction.isChatInputCommand()) throw new Error('expected a command');
      await interaction.deferReply();
      const rule = fake.failNext({ method: 'PATCH', route: '/webhooks/:application/:token/messages/@original', status: 429, retryAfter: 0.25 });
      await interaction.editReply('after the rate limit');
      return rule;
    });
    const handle = fake.sendCommand({ name: 'imagine', options: { prompt: 'x' } });
    const rule = await handled;

    expect(rule.hits).toBe(1);
    expect(rule.remaining).toBe(0);
    const edits = fake.requests.filter((r) => r.route === '/webhooks/:application/:token/messages/@original');
    expect(edits.map((r) => [r.status, r.injectedFault])).toEqual([
      [429, true],
      [200, false],
    ]);
    expect(edits[1].at.getTime() - edits[0].at.getTime()).toBeGreaterThanOrEqual(250);
    expect(rateLimits).toHaveLength(1);
    expect(rateLimits[0].global).toBe(false);
    expect(fake.originalResponse(handle)?.content).toBe('after the rate limit');
  });

  it('lets discord.js retry a 500 up to 3 times, then surface an HTTPError', async () => {
    const { fake, client } = await startBot();

    const handled = handleNext(client, async (interaction) => {
      if (!interaction.isChatInputCommand()) throw new Error('expected a command');
      await interaction.deferReply();
      fake.failNext({ route: /\/messages\/@original$/, status: 500 });
      await interaction.editReply('survived one 500');
      fake.failNext({ route: /\/messages\/@original$/, status: 500, times: 4 });
      return interaction.editReply('never stored').then(() => undefined, (e: unknown) => e);
    });
    const handle = fake.sendCommand({ name: 'imagine', options: { prompt: 'x' } });
    const error = await handled;

    expect(error).toBeInstanceOf(HTTPError);
    expect((error as HTTPError).status).toBe(500);
    const statuses = fake.requests.filter((r) => r.route?.endsWith('@original')).map((r) => r.status);
    expect(statuses).toEqual([500, 200, 500, 500, 500, 500]);
    expect(fake.originalResponse(handle)?.content).toBe('survived one 500');
  });

  it('answers 403 Missing Permissions / Missing Access as DiscordAPIErrors', async () => {
    const { fake, client } = await startBot();
    const channel = await client.channels.fetch(fake.channelId);
    if (!channel?.isSendable()) throw new Error('expected a sendable channel');

    fake.failNext({ method: 'POST', route: '/channels/:channel/messages', status: 403 });
    fake.failNext({ method: 'POST', route: '/channels/:channel/messages', status: 403, code: 50001 });
    const first = await channel.send('hi').then(() => undefined, (e: unknown) => e);
    const second = await channel.send('hi').then(() => undefined, (e: unknown) => e);
    const sent = await channel.send('hi');
    const kept = await channel.send('kept');
    await sent.edit('hello');
    await kept.delete();

    expect([(first as DiscordAPIError).status, (first as DiscordAPIError).code]).toEqual([403, 50013]);
    expect([(second as DiscordAPIError).status, (second as DiscordAPIError).code]).toEqual([403, 50001]);
    expect(fake.channelMessages().map((m) => [m.id, m.revisions.map((r) => r.content), m.author.id])).toEqual([
      [sent.id, ['hi', 'hello'], fake.botUser.id],
    ]);
    expect(fake.message(kept.id)?.deletedAt).toBeInstanceOf(Date);
  });

  it('keeps one message per nonce when the bot enforces it, as Discord does', async () => {
    const { fake, client } = await startBot();
    const channel = await client.channels.fetch(fake.channelId);
    if (!channel?.isSendable()) throw new Error('expected a sendable channel');
    const first = await channel.send({ content: 'once', nonce: 'job-1/0', enforceNonce: true });
    const again = await channel.send({ content: 'once more', nonce: 'job-1/0', enforceNonce: true });
    const unenforced = await channel.send({ content: 'twice', nonce: 'job-1/0' });
    expect(again.id).toBe(first.id);
    expect(again.content).toBe('once');
    expect(unenforced.id).not.toBe(first.id);
    expect(fake.channelMessages().map((message) => message.content)).toEqual(['once', 'twice']);
    const tooLong = await channel.send({ content: 'x', nonce: 'n'.repeat(26), enforceNonce: true }).catch((error: unknown) => error);
    expect((tooLong as DiscordAPIError).code).toBe(50035);
  });

  it('answers late when asked to, after the request took effect', async () => {
    const { fake, client } = await startBot();
    const channel = await client.channels.fetch(fake.channelId);
    if (!channel?.isSendable()) throw new Error('expected a sendable channel');
    const slow = fake.delayNext({ method: 'POST', route: '/channels/:channel/messages', delayMs: 300 });
    const sending = channel.send('slow');
    await fake.waitFor(() => fake.channelMessages().length === 1, 1_000, 'the message, before its answer');
    expect(fake.requests.filter((request) => request.route === '/channels/:channel/messages')).toEqual([]);
    await sending;
    expect(slow.hits).toBe(1);
    expect(fake.requests.at(-1)?.durationMs).toBeGreaterThanOrEqual(300);

    // A client that gives up sooner tries again, and each try takes effect.
    const impatient = new REST({ api: fake.apiUrl, timeout: 100, retries: 1 }).setToken(fake.botToken);
    fake.delayNext({ method: 'POST', route: '/channels/:channel/messages', delayMs: 400, times: 2 });
    const gaveUp = await impatient.post(Routes.channelMessages(fake.channelId), { body: { content: 'lost answers' } }).catch((error: unknown) => error);
    expect((gaveUp as Error).name).toBe('AbortError');
    expect(fake.channelMessages().filter((message) => message.content === 'lost answers')).toHaveLength(2);
  });

  it('lists a channel’s messages after one, newest first', async () => {
    const { fake, client } = await startBot();
    const channel = await client.channels.fetch(fake.channelId);
    if (!channel?.isSendable() || !channel.isTextBased()) throw new Error('expected a sendable channel');
    const sent = [];
    for (const content of ['a', 'b', 'c']) sent.push(await channel.send(content));
    const after = await channel.messages.fetch({ after: sent[0].id, limit: 10 });
    expect([...after.values()].map((message) => message.content)).toEqual(['c', 'b']);
  });

  it('enforces the bot’s permissions in a channel and sends them with interactions there', async () => {
    const { fake, client } = await startBot();
    const channel = await client.channels.fetch(fake.channelId);
    if (!channel?.isSendable()) throw new Error('expected a sendable channel');
    const png = await tinyPng();
    const failure = (promise: Promise<unknown>) => promise.then(() => undefined, (error: DiscordAPIError) => [error.status, error.code]);

    fake.setAppPermissions(DEFAULT_APP_PERMISSIONS & ~PermissionFlagsBits.AttachFiles);
    expect(await failure(channel.send({ content: 'file', files: [{ attachment: png, name: 'x.png' }] }))).toEqual([403, 50013]);
    await channel.send('text is fine');
    fake.setAppPermissions(DEFAULT_APP_PERMISSIONS & ~PermissionFlagsBits.SendMessages);
    expect(await failure(channel.send('no'))).toEqual([403, 50013]);
    fake.setAppPermissions(DEFAULT_APP_PERMISSIONS & ~PermissionFlagsBits.ViewChannel);
    expect(await failure(channel.send('no'))).toEqual([403, 50001]);
    expect(fake.channelMessages().map((message) => message.content)).toEqual(['text is fine']);

    const seen = handleNext(client, async (interaction) => {
      if (!interaction.isChatInputCommand()) throw new Error('expected a command');
      await interaction.reply({ content: 'ok', flags: MessageFlags.Ephemeral });
      return interaction.appPermissions.has(PermissionFlagsBits.ViewChannel);
    });
    fake.sendCommand({ name: 'imagine', options: { prompt: 'x' } });
    expect(await seen).toBe(false);
  });

  it('takes files in the callback itself and refuses files over attachment_size_limit with 413', async () => {
    const { fake, client } = await startBot();
    const png = await tinyPng();

    const handled = handleNext(client, async (interaction) => {
      if (!interaction.isChatInputCommand()) throw new Error('expected a command');
      await interaction.reply({ content: 'small', files: [{ attachment: png, name: 'small.png', description: 'tiny' }] });
      return interaction.followUp({ files: [{ attachment: Buffer.alloc(2_000), name: 'big.bin' }] }).then(() => undefined, (e: unknown) => e);
    });
    const handle = fake.sendCommand({ name: 'imagine', options: { prompt: 'x' }, attachmentSizeLimit: 1_000 });
    const error = await handled;

    expect([(error as DiscordAPIError).status, (error as DiscordAPIError).code]).toEqual([413, 40005]);
    const [attachment] = fake.originalResponse(handle)!.attachments;
    expect([attachment.filename, attachment.description, attachment.data.equals(png)]).toEqual(['small.png', 'tiny', true]);
    expect(fake.followups(handle)).toEqual([]);
  });

  it('rejects webhook calls with an expired token (401, 50027) and before acknowledgement (404, 10015)', async () => {
    const { fake, client } = await startBot();

    const handled = handleNext(client, async (interaction) => {
      if (!interaction.isChatInputCommand()) throw new Error('expected a command');
      const early = await interaction.webhook.send('too early').then(() => undefined, (e: unknown) => e);
      await interaction.deferReply();
      fake.expireInteractionToken(interaction.token);
      const late = await interaction.editReply('too late').then(() => undefined, (e: unknown) => e);
      return { early, late };
    });
    const handle = fake.sendCommand({ name: 'imagine', options: { prompt: 'x' } });
    const { early, late } = await handled;

    expect([(early as DiscordAPIError).status, (early as DiscordAPIError).code]).toEqual([404, 10015]);
    expect([(late as DiscordAPIError).status, (late as DiscordAPIError).code]).toEqual([401, 50027]);
    expect(fake.originalResponse(handle)?.flags).toBe(MessageFlags.Loading);
  });

  it('answers 10062 Unknown interaction to a callback after the deadline', async () => {
    const { fake, client } = await startBot({ callbackDeadlineMs: 100 });

    const handled = handleNext(client, async (interaction) => {
      if (!interaction.isChatInputCommand()) throw new Error('expected a command');
      await new Promise((resolve) => setTimeout(resolve, 150));
      return interaction.deferReply().then(() => undefined, (e: unknown) => e);
    });
    const handle = fake.sendCommand({ name: 'imagine', options: { prompt: 'x' } });
    const error = await handled;

    expect([(error as DiscordAPIError).status, (error as DiscordAPIError).code]).toEqual([404, 10062]);
    expect(fake.interaction(handle).callback).toBeUndefined();
    expect(fake.interaction(handle).callbackLatencyMs).toBeGreaterThanOrEqual(150);
  });

  it('resumes after op 7 and replays an interaction sent while the socket was down', async () => {
    const { fake, client } = await startBot();

    fake.requestGatewayReconnect();
    await fake.waitFor(() => fake.gateway.resumes === 1, 5_000, 'resume after op 7');
    fake.dropGatewayConnections(4000);
    const handled = handleNext(client, async (interaction) => interaction.isChatInputCommand() && interaction.options.getString('prompt'));
    fake.sendCommand({ name: 'imagine', options: { prompt: 'sent while disconnected' } });

    expect(await handled).toBe('sent while disconnected');
    expect(fake.gateway.resumes).toBe(2);
    expect(fake.gateway.identifies).toHaveLength(1);
    expect(fake.gateway.closes.map((c) => [c.code, c.by])).toEqual([
      [4200, 'client'],
      [4000, 'server'],
    ]);
  });

  it('answers unknown routes and bad tokens the Discord way and records them', async () => {
    const { fake } = await startBot();
    const rest = new REST({ api: fake.apiUrl, retries: 0 }).setToken(fake.botToken);

    const unknown = await rest.get('/no/such/route').then(() => undefined, (e: unknown) => e);
    const badToken = await new REST({ api: fake.apiUrl }).setToken('not-the-token').get('/users/@me').then(() => undefined, (e: unknown) => e);
    const me = (await rest.get('/users/@me')) as { id: string; bot: boolean };

    expect([(unknown as DiscordAPIError).status, (unknown as DiscordAPIError).code]).toEqual([404, 0]);
    expect(fake.unhandledRequests().map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual(['GET /no/such/route 404']);
    expect([(badToken as DiscordAPIError).status, (badToken as DiscordAPIError).code]).toEqual([401, 0]);
    expect(me).toMatchObject({ id: fake.botUser.id, bot: true });
  });

  it('leaves no sockets or timers behind after client.destroy and fake.close', async () => {
    const count = (kind: (resource: string) => boolean) => process.getActiveResourcesInfo().filter(kind).length;
    const isSocket = (resource: string) => resource.startsWith('TCP');
    const isTimer = (resource: string) => resource === 'Timeout';
    const socketsBefore = count(isSocket);
    // Timers of earlier tests may still be winding down, so the baseline is an upper bound.
    const timersBefore = count(isTimer);
    const { fake, client } = await startBot({ heartbeatIntervalMs: 50 });
    await fake.waitFor(() => fake.gateway.heartbeats >= 2, 2_000, 'two heartbeats');
    expect(count(isSocket)).toBeGreaterThan(socketsBefore);

    running.splice(0);
    await client.destroy();
    await fake.close();

    expect(count(isSocket)).toBe(socketsBefore);
    expect(count(isTimer)).toBeLessThanOrEqual(timersBefore);
    expect(fake.gateway.closes.map((c) => [c.code, c.by])).toEqual([[1000, 'client']]);
    expect(fake.gateway.openConnections).toBe(0);
  });
});
