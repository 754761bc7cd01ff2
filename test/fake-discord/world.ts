import {
  ChannelType,
  GuildDefaultMessageNotifications,
  GuildExplicitContentFilter,
  type GuildMemberFlags,
  type RoleFlags,
  GuildMFALevel,
  GuildNSFWLevel,
  GuildPremiumTier,
  GuildSystemChannelFlags,
  GuildVerificationLevel,
  Locale,
  PermissionFlagsBits,
  type APIDMChannel,
  type APITextChannel,
  type APIGuild,
  type APIGuildMember,
  type APIRole,
  type APIUser,
  type GatewayGuildCreateDispatchData,
} from 'discord.js';
import type { SnowflakeGenerator } from './ids.ts';

/** A Discord user known to the fake. Create with `fake.user(name)`; every user is a member of the fake guild. */
export interface FakeUser {
  readonly id: string;
  readonly username: string;
  readonly globalName: string | null;
  readonly bot: boolean;
}

export interface FakeChannel {
  readonly id: string;
  readonly type: ChannelType.GuildText | ChannelType.DM;
  readonly name: string | null;
  readonly guildId: string | null;
  /** For DM channels: the user on the other side. */
  readonly recipientId: string | null;
  /** Marked age-restricted (NSFW). */
  readonly nsfw?: boolean;
}

/** What a plain member may do when no permissions are given: chat, attach, embed, use commands. */
export const DEFAULT_MEMBER_PERMISSIONS =
  PermissionFlagsBits.ViewChannel |
  PermissionFlagsBits.SendMessages |
  PermissionFlagsBits.SendMessagesInThreads |
  PermissionFlagsBits.EmbedLinks |
  PermissionFlagsBits.AttachFiles |
  PermissionFlagsBits.ReadMessageHistory |
  PermissionFlagsBits.AddReactions |
  PermissionFlagsBits.UseExternalEmojis |
  PermissionFlagsBits.UseApplicationCommands |
  PermissionFlagsBits.ChangeNickname;

/** What the bot's managed role grants when no app permissions are given. */
export const DEFAULT_APP_PERMISSIONS =
  PermissionFlagsBits.ViewChannel |
  PermissionFlagsBits.SendMessages |
  PermissionFlagsBits.SendMessagesInThreads |
  PermissionFlagsBits.EmbedLinks |
  PermissionFlagsBits.AttachFiles |
  PermissionFlagsBits.ReadMessageHistory |
  PermissionFlagsBits.AddReactions |
  PermissionFlagsBits.UseExternalEmojis;

export interface WorldOptions {
  readonly botUsername: string;
  readonly guildName: string;
  readonly channelName: string;
  /** Roles the guild has besides @everyone and the bot's, by name. */
  readonly roleNames: readonly string[];
  /** Also a second text channel, marked age-restricted (NSFW). */
  readonly ageRestrictedChannel?: boolean;
}

/** The fixed cast of the fake: one application with its bot user, one guild with one text channel, and users. */
export class World {
  readonly applicationId: string;
  readonly botUser: FakeUser;
  readonly owner: FakeUser;
  readonly guildId: string;
  readonly guildName: string;
  readonly botRoleId: string;
  /** The extra roles' ids, by name. */
  readonly roleIds: ReadonlyMap<string, string>;
  readonly textChannel: FakeChannel;
  readonly ageRestrictedChannel: FakeChannel | undefined;
  readonly #ids: SnowflakeGenerator;
  readonly #usersById = new Map<string, FakeUser>();
  readonly #usersByName = new Map<string, FakeUser>();
  readonly #channels = new Map<string, FakeChannel>();
  readonly #dmChannelByUser = new Map<string, FakeChannel>();
  readonly #joinedAt = new Map<string, string>();
  readonly #appPermissions = new Map<string, bigint>();

  constructor(ids: SnowflakeGenerator, options: WorldOptions) {
    this.#ids = ids;
    this.applicationId = ids.next();
    // A bot user's id equals its application's id.
    this.botUser = this.#addUser({ id: this.applicationId, username: options.botUsername, globalName: null, bot: true });
    this.owner = this.user('guild-owner');
    this.guildId = ids.next();
    this.guildName = options.guildName;
    this.botRoleId = ids.next();
    this.roleIds = new Map(options.roleNames.map((name) => [name, ids.next()]));
    this.textChannel = this.#addChannel({
      id: ids.next(),
      type: ChannelType.GuildText,
      name: options.channelName,
      guildId: this.guildId,
      recipientId: null,
    });
    this.ageRestrictedChannel = options.ageRestrictedChannel
      ? this.#addChannel({ id: ids.next(), type: ChannelType.GuildText, name: 'nsfw-art', guildId: this.guildId, recipientId: null, nsfw: true })
      : undefined;
  }

  /** The user with this username, created (and joined to the guild) on first use. */
  user(username: string): FakeUser {
    if (!/^[a-z0-9_.-]{2,32}$/.test(username)) {
      throw new Error(`fake.user: username "${username}" is not a valid Discord username (2–32 of a-z 0-9 _ . -)`);
    }
    return this.#usersByName.get(username) ?? this.#addUser({ id: this.#ids.next(), username, globalName: username, bot: false });
  }

  userById(id: string): FakeUser | undefined {
    return this.#usersById.get(id);
  }

  channel(id: string): FakeChannel | undefined {
    return this.#channels.get(id);
  }

  /** The bot's permissions in a channel: DEFAULT_APP_PERMISSIONS unless changed with setAppPermissions. */
  appPermissionsIn(channelId: string): bigint {
    return this.#appPermissions.get(channelId) ?? DEFAULT_APP_PERMISSIONS;
  }

  setAppPermissions(channelId: string, permissions: bigint): void {
    this.#appPermissions.set(channelId, permissions);
  }

  dmChannelWith(user: FakeUser): FakeChannel {
    const existing = this.#dmChannelByUser.get(user.id);
    if (existing) return existing;
    const channel = this.#addChannel({ id: this.#ids.next(), type: ChannelType.DM, name: null, guildId: null, recipientId: user.id });
    this.#dmChannelByUser.set(user.id, channel);
    return channel;
  }

  #addUser(user: FakeUser): FakeUser {
    this.#usersById.set(user.id, user);
    this.#usersByName.set(user.username, user);
    this.#joinedAt.set(user.id, new Date().toISOString());
    return user;
  }

  #addChannel(channel: FakeChannel): FakeChannel {
    this.#channels.set(channel.id, channel);
    return channel;
  }

  apiUser(user: FakeUser): APIUser {
    return {
      id: user.id,
      username: user.username,
      discriminator: '0',
      global_name: user.globalName,
      avatar: null,
      bot: user.bot,
      system: false,
    };
  }

  apiMember(user: FakeUser, roles: readonly string[] = []): APIGuildMember {
    return {
      user: this.apiUser(user),
      nick: null,
      avatar: null,
      banner: null,
      roles: user.id === this.botUser.id ? [this.botRoleId] : [...roles],
      joined_at: this.#joinedAt.get(user.id) ?? new Date().toISOString(),
      premium_since: null,
      deaf: false,
      mute: false,
      flags: 0 as GuildMemberFlags,
      pending: false,
      communication_disabled_until: null,
    };
  }

  apiChannel(channel: FakeChannel): APIDMChannel | APITextChannel {
    if (channel.type === ChannelType.DM) {
      const recipient = channel.recipientId === null ? undefined : this.userById(channel.recipientId);
      return {
        id: channel.id,
        type: ChannelType.DM,
        name: null,
        last_message_id: null,
        recipients: recipient ? [this.apiUser(recipient)] : [],
      };
    }
    return this.#apiTextChannel(channel);
  }

  #apiTextChannel(channel: FakeChannel): APITextChannel {
    return {
      id: channel.id,
      type: ChannelType.GuildText,
      guild_id: this.guildId,
      name: channel.name ?? 'channel',
      position: 0,
      permission_overwrites: [],
      nsfw: channel.nsfw ?? false,
      parent_id: null,
      topic: null,
      last_message_id: null,
      rate_limit_per_user: 0,
    };
  }

  apiRoles(): APIRole[] {
    const role = (id: string, name: string, position: number, permissions: bigint, managed: boolean): APIRole => ({
      id,
      name,
      color: 0,
      colors: { primary_color: 0, secondary_color: null, tertiary_color: null },
      hoist: false,
      icon: null,
      unicode_emoji: null,
      position,
      permissions: permissions.toString(),
      managed,
      mentionable: false,
      flags: 0 as RoleFlags,
      ...(managed ? { tags: { bot_id: this.botUser.id } } : {}),
    });
    // The @everyone role shares the guild's id.
    return [
      role(this.guildId, '@everyone', 0, DEFAULT_MEMBER_PERMISSIONS, false),
      role(this.botRoleId, this.botUser.username, 1, DEFAULT_APP_PERMISSIONS, true),
      ...[...this.roleIds].map(([name, id], index) => role(id, name, 2 + index, 0n, false)),
    ];
  }

  apiGuild(): APIGuild {
    return {
      id: this.guildId,
      name: this.guildName,
      icon: null,
      splash: null,
      discovery_splash: null,
      owner_id: this.owner.id,
      afk_channel_id: null,
      afk_timeout: 300,
      verification_level: GuildVerificationLevel.None,
      default_message_notifications: GuildDefaultMessageNotifications.OnlyMentions,
      explicit_content_filter: GuildExplicitContentFilter.Disabled,
      roles: this.apiRoles(),
      emojis: [],
      stickers: [],
      features: [],
      mfa_level: GuildMFALevel.None,
      application_id: null,
      system_channel_id: null,
      system_channel_flags: GuildSystemChannelFlags.SuppressJoinNotifications,
      rules_channel_id: null,
      vanity_url_code: null,
      description: null,
      banner: null,
      premium_tier: GuildPremiumTier.None,
      preferred_locale: Locale.EnglishUS,
      public_updates_channel_id: null,
      nsfw_level: GuildNSFWLevel.Default,
      premium_progress_bar_enabled: false,
      hub_type: null,
      safety_alerts_channel_id: null,
      incidents_data: null,
    };
  }

  /** The GUILD_CREATE dispatch a bot gets for its guild right after READY. */
  gatewayGuildCreate(): GatewayGuildCreateDispatchData {
    const guildMembers = [...this.#usersById.values()].map((user) => this.apiMember(user));
    return {
      ...this.apiGuild(),
      joined_at: this.#joinedAt.get(this.botUser.id) ?? new Date().toISOString(),
      large: false,
      unavailable: false,
      member_count: guildMembers.length,
      voice_states: [],
      members: guildMembers,
      channels: [...this.#channels.values()].filter((c) => c.guildId === this.guildId).map((c) => this.#apiTextChannel(c)),
      threads: [],
      presences: [],
      stage_instances: [],
      guild_scheduled_events: [],
      soundboard_sounds: [],
    };
  }
}
