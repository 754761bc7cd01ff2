// Is the bot responsive while it draws? Pushes jobs from several users through the real LocalJobQueue and
// PipelineThread (the model in its worker thread, as the bot runs it), samples the main thread's event-loop lag with
// a 10 ms timer, and times how long a new command takes to be acknowledged (queued, position known) meanwhile.
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import type { GenerationPolicy, ImagineOptions } from '../jobs/options.ts';
import type { JobResult } from '../jobs/runner.ts';
import { createLogger } from '../log.ts';
import type { ExecutionProvider } from '../pipeline/onnx-model.ts';
import { LocalJobQueue } from '../queue/local-queue.ts';
import { ensureTinyModel } from '../tiny-model/index.ts';
import { PipelineThread } from '../worker/pipeline-thread.ts';
import { EventLoopLagSampler } from './event-loop-lag.ts';
import { formatBytes, formatDuration, formatTable } from './format.ts';
import { describeMachine, peakRssBytes, type MachineInfo } from './machine.ts';
import { max, median, quantile, sum } from './stats.ts';

interface Distribution {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

export interface QueueBenchResult {
  machine: MachineInfo;
  model: string;
  jobs: number;
  users: number;
  width: number;
  height: number;
  steps: number;
  loadMs: number;
  /** From the first job's enqueue to the last job's images. */
  busyMs: number;
  imagesPerMinute: number;
  /** Lag of a 10 ms timer on the main thread, in ms: for a second before any job, then while the jobs ran. */
  idleLagMs: Distribution;
  busyLagMs: Distribution;
  /** Per tick while the jobs ran: the main thread's own running time, and its wait for a CPU (Linux only). */
  busyRunningMs: Distribution;
  busyWaitingMs: Distribution;
  /** Shares of the busy time the main thread spent running, and waiting for a CPU. */
  mainThreadRunningShare: number;
  mainThreadWaitingShare: number;
  /** From the moment a command arrives (its timer was due) to its job being queued with a known position. */
  acknowledgeMs: Distribution;
  /** Previews every step (the bot's cadence and budget): each one's delay from its step's progress to its JPEG in the job's status. */
  previewDelayMs: Distribution;
  /** The first preview of each job: from the job's start to its JPEG in the status. */
  firstPreviewMs: Distribution;
  peakRssBytes: number;
}

function distribution(values: number[]): Distribution {
  if (values.length === 0 || values.some(Number.isNaN)) return { count: values.length, p50: NaN, p99: NaN, max: NaN };
  return { count: values.length, p50: median(values), p99: quantile(values, 0.99), max: max(values) };
}

export interface QueueBenchOptions {
  /** The generated tiny model when absent. */
  modelDir?: string;
  jobs: number;
  users: number;
  /** The model's native size when absent. */
  size?: { width: number; height: number };
  steps: number;
  /** How often a new command arrives while the jobs run. */
  probeEveryMs: number;
  /** Reply edits at most this often, and previews no faster (the bot's PROGRESS_EDIT_INTERVAL_MS). */
  progressIntervalMs: number;
  /** A tiny decoder (TAESD) for the previews; linear previews without one. */
  tinyVaeDir?: string;
  executionProvider: ExecutionProvider;
}

export async function runQueueBench(options: QueueBenchOptions, onProgress: (line: string) => void): Promise<QueueBenchResult> {
  const machine = describeMachine(options.executionProvider);
  const modelDir = options.modelDir ?? (await ensureTinyModel());
  const loadStarted = performance.now();
  const pipeline = PipelineThread.start({ modelDir, tinyVaeDir: options.tinyVaeDir, executionProvider: options.executionProvider });
  try {
    const model = await pipeline.ready;
    const loadMs = performance.now() - loadStarted;
    const size = options.size ?? { width: model.nativeWidth, height: model.nativeHeight };
    const policy: GenerationPolicy = {
      defaultSteps: options.steps,
      maxSteps: Math.max(options.steps, 150),
      defaultGuidance: undefined,
      maxGuidance: 20,
      defaultScheduler: undefined,
      defaultSize: size,
      sizes: [size],
      promptSyntax: 'a1111',
      previews: { everySteps: 1, minIntervalMs: options.progressIntervalMs },
    };
    const probes = 1000;
    // A failed job's cause goes to stderr, away from the report on stdout.
    const logger = createLogger('error', pino.destination({ dest: 2, sync: true }));
    const queue = new LocalJobQueue({ generator: pipeline, policy, maxQueue: options.jobs + probes, maxJobsPerUser: options.jobs, logger });
    const request = (index: number): ImagineOptions => ({ prompt: `a lighthouse on a cliff at dusk, study ${index}`, seed: String(index), count: 1 });

    const sampler = new EventLoopLagSampler(10);
    sampler.start();
    await sleep(1000);
    const idleLags = sampler.stop();

    sampler.start();
    const busyStarted = performance.now();
    const results: Array<Promise<JobResult>> = [];
    const previewDelayMs: number[] = [];
    const firstPreviewMs: number[] = [];
    for (let index = 0; index < options.jobs; index++) {
      const handle = await queue.enqueue(`user-${index % options.users}`, request(index));
      // When each step's progress reached the bot, and when the preview made after it did.
      const stepSeenAt = new Map<number, number>();
      let startedAt: number | undefined;
      let lastPreview: unknown;
      handle.onStatus((status) => {
        if (status.state !== 'running') return;
        const now = performance.now();
        startedAt ??= now;
        if (!stepSeenAt.has(status.step)) stepSeenAt.set(status.step, now);
        if (status.preview && status.preview !== lastPreview) {
          if (lastPreview === undefined) firstPreviewMs.push(now - startedAt);
          lastPreview = status.preview;
          previewDelayMs.push(now - (stepSeenAt.get(status.preview.step) ?? now));
        }
      });
      results.push(handle.result.then((result) => (onProgress(`job ${index + 1}/${options.jobs} done`), result)));
    }

    const acknowledgeMs: number[] = [];
    let finished = false;
    const allDone = Promise.all(results).finally(() => (finished = true));
    const probing = (async () => {
      for (let probe = 0; !finished && probe < probes; probe++) {
        const due = performance.now() + options.probeEveryMs;
        await sleep(options.probeEveryMs);
        if (finished) break;
        const handle = await queue.enqueue(`probe-${probe}`, request(options.jobs + probe));
        handle.status();
        acknowledgeMs.push(performance.now() - due);
        handle.cancel('user');
      }
    })();
    await allDone;
    const busyMs = performance.now() - busyStarted;
    const busyLags = sampler.stop();
    await probing;
    await queue.close(0);

    return {
      machine,
      model: model.name,
      jobs: options.jobs,
      users: options.users,
      ...size,
      steps: options.steps,
      loadMs,
      busyMs,
      imagesPerMinute: options.jobs / (busyMs / 60_000),
      idleLagMs: distribution(idleLags.map((tick) => tick.lagMs)),
      busyLagMs: distribution(busyLags.map((tick) => tick.lagMs)),
      busyRunningMs: distribution(busyLags.map((tick) => tick.runningMs)),
      busyWaitingMs: distribution(busyLags.map((tick) => tick.waitingMs)),
      mainThreadRunningShare: sum(busyLags.map((tick) => tick.runningMs)) / busyMs,
      mainThreadWaitingShare: sum(busyLags.map((tick) => tick.waitingMs)) / busyMs,
      acknowledgeMs: distribution(acknowledgeMs),
      previewDelayMs: distribution(previewDelayMs),
      firstPreviewMs: distribution(firstPreviewMs),
      peakRssBytes: peakRssBytes(),
    };
  } finally {
    await pipeline.dispose();
  }
}

function percent(share: number): string {
  return Number.isNaN(share) ? '(unknown)' : `${(share * 100).toFixed(2)} %`;
}

export function formatQueueReport(result: QueueBenchResult): string {
  const ms = (value: number) => (Number.isNaN(value) ? '—' : `${value.toFixed(2)} ms`);
  const line = (label: string, d: Distribution) => [label, String(d.count), ms(d.p50), ms(d.p99), ms(d.max)];
  return [
    `${result.model}: ${result.jobs} jobs from ${result.users} users, ${result.width}x${result.height}, ${result.steps} steps, EP ${result.machine.executionProvider}`,
    `${result.machine.cpuModel}, ${result.machine.cores} cores, load average ${result.machine.loadAverage.toFixed(1)} at start`,
    `model load ${formatDuration(result.loadMs)}; busy ${formatDuration(result.busyMs)}; ${result.imagesPerMinute.toFixed(2)} images/min; peak RSS ${formatBytes(result.peakRssBytes)}`,
    '',
    formatTable(
      ['main thread', 'samples', 'p50', 'p99', 'max'],
      [
        line('event-loop lag, idle', result.idleLagMs),
        line('event-loop lag, generating', result.busyLagMs),
        line('  main thread running, per tick', result.busyRunningMs),
        line('  main thread waiting for a CPU, per tick', result.busyWaitingMs),
        line('acknowledge a new command', result.acknowledgeMs),
        line('preview: its step → its JPEG in the status', result.previewDelayMs),
        line('first preview: job start → its JPEG', result.firstPreviewMs),
      ],
    ),
    '',
    `While generating, the main thread ran ${percent(result.mainThreadRunningShare)} of the time and waited for a CPU ${percent(result.mainThreadWaitingShare)} of it.`,
  ].join('\n');
}
