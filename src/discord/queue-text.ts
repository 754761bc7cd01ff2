import type { QueuedJob } from '../queue/types.ts';
import type { QuotaSummary } from '../settings/admission.ts';
import { escapeMarkdown } from './markdown.ts';

// What /queue and /info show. Only the asker sees them (ephemeral), and a member sees other members' prompts only
// as a moderator of the server they came from.

const PROMPT_PREVIEW_LENGTH = 60;
/** Jobs listed in one answer; more are counted. */
const LISTED_JOBS = 15;

export interface QueueView {
  userId: string;
  guildId: string | undefined;
  /** A moderator sees this server's jobs (the bot's owners every job) and may cancel them. */
  moderator: 'no' | 'server' | 'everywhere';
}

export function queueText(jobs: readonly QueuedJob[], view: QueueView): string {
  const running = jobs.filter((job) => job.status.state === 'running').length;
  const lines = [`📋 **Queue**: ${count(jobs.length, 'job')} — ${running} running, ${jobs.length - running} waiting.`];
  const mine = jobs.filter((job) => job.userId === view.userId);
  lines.push('', '**Your jobs**', ...(mine.length > 0 ? listed(mine, false) : ['None. Start one with /imagine.']));
  if (view.moderator !== 'no') {
    const others = jobs.filter((job) => job.userId !== view.userId && (view.moderator === 'everywhere' || job.guildId === view.guildId));
    const whose = view.moderator === 'everywhere' ? '**Everyone’s jobs** (you are the bot’s owner)' : '**This server’s other jobs** (you moderate it)';
    lines.push('', whose, ...(others.length > 0 ? listed(others, true) : ['None.']));
  }
  const cancellable = mine.length > 0 || view.moderator !== 'no';
  if (cancellable && jobs.length > 0) lines.push('', 'Cancel one with `/queue cancel:<id>`.');
  return lines.join('\n');
}

export interface InfoFacts {
  version: string;
  uptimeMs: number;
  model: string;
  models: readonly string[];
  providers: readonly string[];
  jobs: readonly QueuedJob[] | undefined;
  userId: string;
  quotas: QuotaSummary;
}

export function infoText(facts: InfoFacts): string {
  const { quotas } = facts;
  const yours = facts.jobs?.filter((job) => job.userId === facts.userId).length ?? 0;
  const reset = `resets <t:${Math.floor(quotas.resetAt / 1000)}:R>`;
  const quota = (used: number, limit: number | undefined) => (limit === undefined ? `${used} (no daily limit)` : `${used} of ${limit}, ${Math.max(limit - used, 0)} left — ${reset}`);
  return [
    `ℹ️ **imagine-bot ${escapeMarkdown(facts.version)}** — up ${duration(facts.uptimeMs)}`,
    `**Model**: ${escapeMarkdown(facts.model)}${facts.models.length > 1 ? ` (also: ${facts.models.filter((name) => name !== facts.model).map(escapeMarkdown).join(', ')})` : ''}`,
    `**Runs on**: ${facts.providers.length > 0 ? facts.providers.join(', ') : 'not known yet (no worker has reported)'}`,
    `**Queue**: ${facts.jobs ? `${count(facts.jobs.length, 'job')}, ${yours} of them yours` : 'unreachable right now'}`,
    quotas.owner
      ? '**Your images today**: no quota (you are the bot’s owner)'
      : `**Your images today**: ${quota(quotas.user?.used ?? 0, quotas.user?.limit)}`,
    ...(quotas.server ? [`**This server’s images today**: ${quota(quotas.server.used, quotas.server.limit)}`] : []),
  ].join('\n');
}

function listed(jobs: readonly QueuedJob[], withOwner: boolean): string[] {
  const lines = jobs.slice(0, LISTED_JOBS).map((job) => {
    const owner = withOwner ? ` <@${job.userId}>` : '';
    return `• \`${job.id}\`${owner} — ${state(job)} — ${preview(job.prompt)}`;
  });
  if (jobs.length > LISTED_JOBS) lines.push(`… and ${jobs.length - LISTED_JOBS} more.`);
  return lines;
}

function state(job: QueuedJob): string {
  const status = job.status;
  if (status.state === 'waiting') return status.position === 1 ? '⏳ next' : `⏳ #${status.position} in line`;
  const image = status.images > 1 ? `image ${status.image}/${status.images}, ` : '';
  return status.totalSteps > 0 ? `▶️ running (${image}step ${status.step}/${status.totalSteps})` : '▶️ running';
}

function preview(prompt: string): string {
  const characters = [...prompt.replace(/\s+/g, ' ').trim()];
  const cut = characters.length > PROMPT_PREVIEW_LENGTH ? `${characters.slice(0, PROMPT_PREVIEW_LENGTH - 1).join('')}…` : characters.join('');
  return `“${escapeMarkdown(cut)}”`;
}

function count(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

function duration(ms: number): string {
  const minutes = Math.floor(ms / 60_000);
  const days = Math.floor(minutes / 1440);
  const hours = Math.floor((minutes % 1440) / 60);
  const parts = [days > 0 ? `${days} d` : '', hours > 0 ? `${hours} h` : '', `${minutes % 60} min`].filter(Boolean);
  return parts.join(' ');
}
