export { FakeDiscord, type FakeDiscordOptions } from './fake-discord.ts';
export type { RequestRecord } from './api-server.ts';
export type { DelaySpec, FaultRule, FaultSpec } from './faults.ts';
export type { GatewayClose, GatewayStats, IdentifyRecord } from './gateway.ts';
export type {
  ClickButtonOptions,
  FakeInteraction,
  InteractionCallbackRecord,
  InteractionHandle,
  InteractionKind,
  InvocationOptions,
  OptionValue,
  SendAutocompleteOptions,
  SendCommandOptions,
  SubmitModalOptions,
  CommandFile,
} from './interactions.ts';
export type { MessageOrigin, MessageRevision, StoredAttachment, StoredMessage } from './messages.ts';
export { DEFAULT_APP_PERMISSIONS, DEFAULT_MEMBER_PERMISSIONS, type FakeUser } from './world.ts';
