import { appendFileSync, closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GenerationPolicy, ImagineOptions } from '../jobs/options.ts';
import type { GenerateRequest } from '../pipeline/types.ts';
import type { DeliveryRecord } from './types.ts';

/** An accepted job as the journal keeps it: enough to run it again and to reach its user. */
export interface JournalEntry {
  id: string;
  userId: string;
  options: ImagineOptions;
  /**
   * Its settled requests (null when the model was not known at enqueue), so a job taken up again draws the same image;
   * without their pictures (withoutPictures), which the options hold.
   */
  requests?: GenerateRequest[] | null;
  /** The defaults and limits it is settled with when its requests are null (its server's); the queue's when absent. */
  policy?: GenerationPolicy;
  guildId?: string;
  /** Where its messages go (it holds the interaction token: the journal is private to the bot). */
  delivery: DeliveryRecord | null;
}

type Line = { accepted: JournalEntry } | { finished: string };

const FILE_NAME = 'local-queue.jsonl';
/** The file is rewritten with only the unfinished jobs once this many lines were appended since the last rewrite. */
const COMPACT_AFTER_LINES = 256;

/**
 * The local queue's record of accepted jobs, one JSON line per event (accepted, finished), so that a bot that
 * crashed or was killed finds its unfinished jobs when it starts again. Appends are synchronous and flushed to disk:
 * a job is on record before its user is told it was queued.
 */
export class JobJournal {
  private readonly file: string;
  private readonly unfinished = new Map<string, JournalEntry>();
  private appended = 0;

  /** Opens (creating the folder) the journal in `dataDir`; throws when it cannot be read or written there. */
  constructor(dataDir: string) {
    mkdirSync(dataDir, { recursive: true });
    this.file = join(dataDir, FILE_NAME);
    for (const line of readLines(this.file)) {
      if ('accepted' in line) this.unfinished.set(line.accepted.id, line.accepted);
      else this.unfinished.delete(line.finished);
    }
    this.compact();
  }

  /** The jobs accepted and not finished when the journal was opened (and since), oldest first. */
  pending(): JournalEntry[] {
    return [...this.unfinished.values()];
  }

  accepted(entry: JournalEntry): void {
    this.unfinished.set(entry.id, entry);
    this.append({ accepted: entry });
  }

  /** The job's last message is out (or there is none to send): it is not taken up again. */
  finished(id: string): void {
    if (!this.unfinished.delete(id)) return;
    this.append({ finished: id });
  }

  private append(line: Line): void {
    appendDurably(this.file, `${JSON.stringify(line)}\n`);
    if (++this.appended >= COMPACT_AFTER_LINES) this.compact();
  }

  /** Rewrites the file with the unfinished jobs only, atomically (a crash leaves the old file or the new one). */
  private compact(): void {
    const temporary = `${this.file}.tmp`;
    writeFileSync(temporary, this.pending().map((entry) => `${JSON.stringify({ accepted: entry })}\n`).join(''), { mode: 0o600 });
    renameSync(temporary, this.file);
    this.appended = 0;
  }
}

function appendDurably(file: string, text: string): void {
  const fd = openSync(file, 'a', 0o600);
  try {
    appendFileSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The journal's lines; a last line cut short by a crash mid-write is left out. */
function readLines(file: string): Line[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  return text.split('\n').flatMap((line) => {
    if (line.trim() === '') return [];
    try {
      const parsed = JSON.parse(line) as Line;
      return 'accepted' in parsed || 'finished' in parsed ? [parsed] : [];
    } catch {
      return [];
    }
  });
}
