import type { Logger } from 'pino';
import { describeError } from '../log.ts';
import { RequestError } from '../pipeline/types.ts';

// The one error policy of both queue backends: what a job's user is told when it ends without images.

export type CancelReason = 'user' | 'shutdown';

export class JobCancelledError extends Error {
  override name = 'JobCancelledError';
  constructor(readonly reason: CancelReason) {
    super(reason === 'user' ? 'cancelled by the requester' : 'cancelled: the bot is shutting down');
  }
}

/** A job that could not produce its images; the message is meant for the user. */
export class JobFailedError extends Error {
  override name = 'JobFailedError';
}

/** What a user is told about a failure that is not theirs to fix: the job id, which finds the log line for an admin. */
function modelFailedMessage(jobId: string): string {
  return `The model failed — ask an admin (job ${jobId}).`;
}

/**
 * What the user of job `jobId` is told about `error`. Their own cancel, a request the model or the operator's limits
 * refuse (RequestError: options, a prompt too long), and failures already phrased for users pass as they are; anything else (a model that cannot load or run,
 * a crashed pipeline thread, a bug) may name server paths or internals, so it is logged with the job id and the user
 * is told only that id.
 */
export function failureForUser(error: unknown, jobId: string, log: Logger, cancelReason?: CancelReason): JobCancelledError | JobFailedError {
  if (cancelReason) return new JobCancelledError(cancelReason);
  if (error instanceof JobCancelledError || error instanceof JobFailedError) return error;
  if (error instanceof RequestError) return new JobFailedError(error.message);
  log.error({ jobId, error: describeError(error) }, 'job failed on an internal error');
  return new JobFailedError(modelFailedMessage(jobId), { cause: error });
}
