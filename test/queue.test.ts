import { appendFileSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { JobCancelledError, JobFailedError } from '../src/jobs/errors.ts';
import { checkOptions, offeredSizes, OptionError, resolveRequests, type GenerationPolicy } from '../src/jobs/options.ts';
import type { GeneratedImage, ImageGenerator } from '../src/jobs/runner.ts';
import { createLogger } from '../src/log.ts';
import type { GenerateRequest, ModelInfo, StepProgress } from '../src/pipeline/types.ts';
import { JobJournal } from '../src/queue/job-journal.ts';
import { LocalJobQueue } from '../src/queue/local-queue.ts';
import { QueueRejection, type JobHandle, type JobStatus } from '../src/queue/types.ts';

const model: ModelInfo = {
  name: 'test-model',
  dir: '/models/test-model',
  nativeWidth: 512,
  nativeHeight: 512,
  sizeMultiple: 64,
  fixedSize: false,
  maxSteps: 150,
  defaultScheduler: 'PNDM',
  defaultSteps: 20,
  defaultGuidance: 7.5,
  predictionType: 'epsilon',
  precision: 'fp32',
  maxPromptChunks: 8,
  isTurbo: false,
  isLcm: false,
  isTiny: false,
  imageToImage: true,
};

const policy: GenerationPolicy = {
  defaultSteps: undefined,
  maxSteps: 50,
  defaultGuidance: undefined,
  maxGuidance: 20,
  defaultScheduler: undefined,
  defaultSize: undefined,
  sizes: [
    { width: 512, height: 768 },
    { width: 500, height: 500 },
  ],
  promptSyntax: 'a1111',
};

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

interface Call {
  request: GenerateRequest;
  signal: AbortSignal | undefined;
  onStep: ((progress: StepProgress) => void) | undefined;
  finish: () => void;
  fail: (error: Error) => void;
}

/** A generator the test drives by hand: each generate call waits until the test finishes or fails it. */
function manualGenerator() {
  const ready = deferred<ModelInfo>();
  const calls: Call[] = [];
  const waiters: (() => void)[] = [];
  const generator: ImageGenerator = {
    ready: ready.promise,
    generate(request, options) {
      const done = deferred<GeneratedImage>();
      options?.signal?.addEventListener('abort', () => done.reject(Object.assign(new Error('aborted'), { name: 'AbortError' })));
      calls.push({
        request,
        signal: options?.signal,
        onStep: options?.onStep,
        finish: () =>
          done.resolve({
            png: new Uint8Array([1, 2, 3]),
            parameters: request.prompt,
            settings: {
              prompt: request.prompt,
              negativePrompt: request.negativePrompt ?? '',
              steps: request.steps ?? 0,
              guidanceScale: request.guidanceScale ?? 0,
              seed: String(request.seed),
              width: request.width ?? 0,
              height: request.height ?? 0,
              scheduler: 'PNDM',
              model: model.name,
            },
            timings: { tokenizeMs: 0, textEncoderMs: 0, denoiseMs: 0, vaeMs: 0, totalMs: 1, onnxMs: 0 },
          }),
        fail: (error) => done.reject(error),
      });
      waiters.splice(0).forEach((wake) => wake());
      return done.promise;
    },
  };
  /** Resolves with call number `index` (0-based) once the queue has made it. */
  async function call(index: number): Promise<Call> {
    while (calls.length <= index) await new Promise<void>((wake) => waiters.push(wake));
    return calls[index];
  }
  return { generator, ready, calls, call };
}

function newQueue(limits: { maxQueue?: number; maxJobsPerUser?: number } = {}, journal?: JobJournal) {
  const manual = manualGenerator();
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      logs.push(JSON.parse(chunk.toString('utf8')));
      done();
    },
  });
  const queue = new LocalJobQueue({
    generator: manual.generator,
    policy,
    maxQueue: limits.maxQueue ?? 20,
    maxJobsPerUser: limits.maxJobsPerUser ?? 5,
    journal,
    logger: createLogger('info', sink),
  });
  return { queue, logs, ...manual };
}

const job = (prompt: string, extra: object = {}) => ({ prompt, count: 1, ...extra });
const flush = () => new Promise((resolve) => setImmediate(resolve));

function positions(...jobs: JobHandle[]): (number | string)[] {
  return jobs.map((handle) => {
    const status = handle.status();
    return status.state === 'waiting' ? status.position : status.state;
  });
}

describe('LocalJobQueue order', () => {
  it('runs every user’s first job before anyone’s second, in arrival order', async () => {
    const { queue, ready, call } = newQueue();
    const a1 = await queue.enqueue('alice', job('a1'));
    const a2 = await queue.enqueue('alice', job('a2'));
    const a3 = await queue.enqueue('alice', job('a3'));
    const b1 = await queue.enqueue('bob', job('b1'));
    const b2 = await queue.enqueue('bob', job('b2'));
    const c1 = await queue.enqueue('carol', job('c1'));
    expect(positions(a1, a2, a3, b1, b2, c1)).toEqual([1, 4, 6, 2, 5, 3]);
    expect(a2.status()).toEqual({ state: 'waiting', position: 4, modelLoading: true });

    ready.resolve(model);
    const order: string[] = [];
    for (let index = 0; index < 6; index++) {
      const current = await call(index);
      order.push(current.request.prompt);
      current.finish();
    }
    expect(order).toEqual(['a1', 'b1', 'c1', 'a2', 'b2', 'a3']);
    await expect(a3.result).resolves.toMatchObject({ images: [{ settings: { prompt: 'a3' } }] });
  });

  it('puts a newcomer’s first job ahead of a busy user’s second, even when the second arrived first', async () => {
    const { queue, ready, call } = newQueue();
    ready.resolve(model);
    await queue.enqueue('alice', job('a1'));
    const first = await call(0);
    const a2 = await queue.enqueue('alice', job('a2'));
    const b1 = await queue.enqueue('bob', job('b1'));
    expect(positions(a2, b1)).toEqual([2, 1]);
    first.finish();
    expect((await call(1)).request.prompt).toBe('b1');
  });

  it('reports positions as the jobs ahead finish, and the model loading while it loads', async () => {
    const { queue, ready, call } = newQueue();
    const seen: JobStatus[] = [];
    await queue.enqueue('alice', job('a1'));
    await queue.enqueue('bob', job('b1'));
    const c1 = await queue.enqueue('carol', job('c1'));
    c1.onStatus((status) => seen.push(status));
    expect(c1.status()).toEqual({ state: 'waiting', position: 3, modelLoading: true });
    ready.resolve(model);
    (await call(0)).finish();
    const second = await call(1);
    second.onStep?.({ step: 1, totalSteps: 20 });
    second.finish();
    const third = await call(2);
    third.onStep?.({ step: 7, totalSteps: 20 });
    third.finish();
    await c1.result;
    expect(seen).toEqual([
      { state: 'waiting', position: 2, modelLoading: false },
      { state: 'waiting', position: 1, modelLoading: false },
      { state: 'running', image: 1, images: 1, step: 0, totalSteps: 20 },
      { state: 'running', image: 1, images: 1, step: 7, totalSteps: 20 },
    ]);
  });
});

describe('LocalJobQueue limits', () => {
  it('refuses beyond MAX_QUEUE and MAX_JOBS_PER_USER, and accepts again once a job is done', async () => {
    const { queue, ready, call } = newQueue({ maxQueue: 3, maxJobsPerUser: 2 });
    await queue.enqueue('alice', job('a1'));
    await queue.enqueue('alice', job('a2'));
    await expect(queue.enqueue('alice', job('a3'))).rejects.toMatchObject({ name: 'QueueRejection', reason: 'user_limit', limit: 2 });
    await queue.enqueue('bob', job('b1'));
    await expect(queue.enqueue('carol', job('c1'))).rejects.toMatchObject({ reason: 'queue_full', limit: 3 });
    ready.resolve(model);
    (await call(0)).finish();
    await flush();
    await expect(queue.enqueue('carol', job('c1'))).resolves.toMatchObject({ userId: 'carol' });
    await expect(queue.enqueue('alice', job('a3'))).rejects.toBeInstanceOf(QueueRejection);
  });

  it('refuses options the loaded model does not allow before they take a place', async () => {
    const { queue, ready } = newQueue();
    ready.resolve(model);
    await flush();
    await expect(queue.enqueue('alice', job('x', { steps: 51 }))).rejects.toThrow('steps must be between 1 and 50 for test-model');
    await expect(queue.enqueue('alice', job('x', { size: { width: 500, height: 500 } }))).rejects.toBeInstanceOf(OptionError);
  });

  it('fails a job whose options the model, once loaded, does not allow', async () => {
    const { queue, ready, call } = newQueue();
    const bad = await queue.enqueue('alice', job('x', { guidance: 25 }));
    const good = await queue.enqueue('bob', job('y'));
    ready.resolve(model);
    await expect(bad.result).rejects.toThrow(new JobFailedError('guidance must be between 0 and 20.'));
    (await call(0)).finish();
    await expect(good.result).resolves.toMatchObject({ images: [{ settings: { prompt: 'y' } }] });
  });
});

describe('LocalJobQueue cancel and failure', () => {
  it('cancels a waiting job without running it and moves the others up', async () => {
    const { queue, ready, call, calls } = newQueue();
    const a1 = await queue.enqueue('alice', job('a1'));
    const b1 = await queue.enqueue('bob', job('b1'));
    const c1 = await queue.enqueue('carol', job('c1'));
    expect(b1.cancel('user')).toBe(true);
    await expect(b1.result).rejects.toEqual(new JobCancelledError('user'));
    expect(positions(a1, c1)).toEqual([1, 2]);
    expect(queue.find(b1.id)).toBeUndefined();
    ready.resolve(model);
    (await call(0)).finish();
    (await call(1)).finish();
    await c1.result;
    expect(calls.map((current) => current.request.prompt)).toEqual(['a1', 'c1']);
    expect(b1.cancel('user')).toBe(false);
  });

  it('aborts a running job through the generator’s signal and runs the next', async () => {
    const { queue, ready, call } = newQueue();
    ready.resolve(model);
    const a1 = await queue.enqueue('alice', job('a1'));
    const b1 = await queue.enqueue('bob', job('b1'));
    const running = await call(0);
    expect(a1.status()).toMatchObject({ state: 'running' });
    a1.cancel('user');
    expect(running.signal?.aborted).toBe(true);
    await expect(a1.result).rejects.toBeInstanceOf(JobCancelledError);
    (await call(1)).finish();
    await expect(b1.result).resolves.toBeDefined();
  });

  it('tells the user only the job id when the generator fails, logs the error with that id, and keeps serving', async () => {
    const { queue, logs, ready, call } = newQueue();
    ready.resolve(model);
    const a1 = await queue.enqueue('alice', job('a1'));
    const b1 = await queue.enqueue('bob', job('b1'));
    (await call(0)).fail(new Error('onnxruntime: Failed to allocate memory for /srv/models/sd15/unet/model.onnx'));
    await expect(a1.result).rejects.toEqual(new JobFailedError(`The model failed — ask an admin (job ${a1.id}).`));
    expect(logs).toContainEqual(
      expect.objectContaining({ jobId: a1.id, msg: 'job failed on an internal error', error: expect.objectContaining({ message: expect.stringContaining('/srv/models/sd15') }) }),
    );
    (await call(1)).finish();
    await expect(b1.result).resolves.toBeDefined();
  });

  it('fails the jobs of a model that cannot load the same way: no server path for the user, all of it in the log', async () => {
    const { queue, logs, ready } = newQueue();
    const a1 = await queue.enqueue('alice', job('a1'));
    ready.reject(new Error('/srv/models/sd15/unet/model.onnx: protobuf parsing failed'));
    await expect(a1.result).rejects.toEqual(new JobFailedError(`The model failed — ask an admin (job ${a1.id}).`));
    expect(queue.modelStatus()).toEqual({ state: 'failed' });
    const b1 = await queue.enqueue('bob', job('b1'));
    await expect(b1.result).rejects.toEqual(new JobFailedError(`The model failed — ask an admin (job ${b1.id}).`));
    expect(logs.filter((line) => line.msg === 'job failed on an internal error').map((line) => line.jobId)).toEqual([a1.id, b1.id]);
  });
});

describe('LocalJobQueue count and defaults', () => {
  it('makes one generate call per image with consecutive seeds and reports which image runs', async () => {
    const { queue, ready, call } = newQueue();
    ready.resolve(model);
    const handle = await queue.enqueue('alice', job('many', { count: 3, seed: '18446744073709551614' }));
    const statuses: JobStatus[] = [];
    handle.onStatus((status) => statuses.push(status));
    for (let index = 0; index < 3; index++) (await call(index)).finish();
    const result = await handle.result;
    expect(result.images.map((image) => image.settings.seed)).toEqual(['18446744073709551614', '18446744073709551615', '0']);
    expect(statuses.filter((status) => status.state === 'running').map((status) => status.state === 'running' && status.image)).toEqual([1, 2, 3]);
  });

  it('settles a random seed for a job without one, a different one each time', () => {
    const seeds = Array.from({ length: 16 }, () => BigInt(resolveRequests(job('p'), policy, model)[0].seed));
    expect(new Set(seeds).size).toBe(seeds.length);
    for (const seed of seeds) expect(seed >= 0n && seed < 2n ** 32n).toBe(true);
  });

  it('applies the operator’s defaults, and the turbo model’s own', () => {
    const withDefaults = { ...policy, defaultSteps: 30, defaultGuidance: 5, defaultScheduler: 'Euler a' };
    expect(resolveRequests(job('p', { seed: '7' }), withDefaults, model)).toEqual([
      { prompt: 'p', negativePrompt: '', promptSyntax: 'a1111', steps: 30, guidanceScale: 5, seed: '7', width: 512, height: 512, scheduler: 'Euler a' },
    ]);
    expect(resolveRequests(job('p', { promptSyntax: 'plain' }), withDefaults, model)[0].promptSyntax).toBe('plain');
    expect(resolveRequests(job('p'), { ...withDefaults, promptSyntax: 'plain' }, model)[0].promptSyntax).toBe('plain');
    // --ar in the prompt: the offered size of the nearest shape, unless a size is given.
    expect(resolveRequests(job('p', { aspectRatio: { width: 2, height: 3 } }), withDefaults, model)[0]).toMatchObject({ width: 512, height: 768 });
    const sized = job('p', { aspectRatio: { width: 2, height: 3 }, size: { width: 512, height: 512 } });
    expect(resolveRequests(sized, withDefaults, model)[0]).toMatchObject({ width: 512, height: 512 });
    const turbo = { ...model, name: 'sd-turbo', isTurbo: true, defaultSteps: 1, defaultGuidance: 0, maxSteps: 4 };
    expect(resolveRequests(job('p', { seed: '7' }), withDefaults, turbo)[0]).toMatchObject({ steps: 1, guidanceScale: 0 });
    expect(() => resolveRequests(job('p', { steps: 5 }), withDefaults, turbo)).toThrow('steps must be between 1 and 4 for sd-turbo');
    const lcm = { ...model, name: 'lcm', isLcm: true, defaultScheduler: 'LCM', defaultSteps: 4, defaultGuidance: 8.5, maxSteps: 50 };
    expect(resolveRequests(job('p', { seed: '7' }), withDefaults, lcm)[0]).toMatchObject({ steps: 4, guidanceScale: 8.5 });
    expect(resolveRequests(job('p', { seed: '7', steps: 8, guidance: 2 }), withDefaults, lcm)[0]).toMatchObject({ steps: 8, guidanceScale: 2 });
  });

  it('names each option a client sent out of range', () => {
    const cases: [object, string][] = [
      [{ count: 0 }, 'count must be between 1 and 4.'],
      [{ count: 5 }, 'count must be between 1 and 4.'],
      [{ seed: '-1' }, 'seed must be a whole number from 0 to 18446744073709551615.'],
      [{ seed: '18446744073709551616' }, 'seed must be a whole number from 0 to 18446744073709551615.'],
      [{ steps: 0 }, 'steps must be a whole number of at least 1.'],
      [{ guidance: -1 }, 'guidance must be a number of at least 0.'],
      [{ prompt: 'x'.repeat(1001) }, 'The prompt is 1001 characters long; the limit is 1000.'],
      [{ negativePrompt: 'x'.repeat(1001) }, 'The negative prompt is longer than 1000 characters.'],
      [{ scheduler: 'Magic' }, 'Unknown scheduler "Magic"; choose one of Euler, Euler a,'],
    ];
    for (const [options, message] of cases) {
      expect(() => checkOptions({ prompt: 'p', count: 1, ...options })).toThrow(message);
    }
    expect(() => checkOptions({ prompt: 'p', count: 1, scheduler: 'EulerDiscreteScheduler', seed: '18446744073709551615' })).not.toThrow();
  });

  it('offers the native size and the operator’s sizes the model can draw', () => {
    expect(offeredSizes(policy, model)).toEqual([
      { width: 512, height: 512 },
      { width: 512, height: 768 },
    ]);
    expect(offeredSizes(policy, undefined)).toEqual(policy.sizes);
  });

  it('without the operator’s sizes, offers those that suit the model: SDXL’s buckets for SDXL, SD’s for the others', () => {
    const labels = (sizes: { width: number; height: number }[]) => sizes.map(({ width, height }) => `${width}x${height}`);
    const ownSizes: GenerationPolicy = { ...policy, sizes: 'model' };
    const sdxl: ModelInfo = { ...model, name: 'sdxl-base', nativeWidth: 1024, nativeHeight: 1024, sizeMultiple: 8 };
    expect(labels(offeredSizes(ownSizes, sdxl))).toEqual(['1024x1024', '896x1152', '1152x896', '832x1216', '1216x832', '768x1344', '1344x768', '640x1536', '1536x640']);
    expect(labels(offeredSizes(ownSizes, { ...sdxl, nativeWidth: 512, nativeHeight: 512 }))).toEqual(['512x512', '512x768', '768x512', '640x384', '384x640']);
    expect(labels(offeredSizes(ownSizes, model))).toEqual(['512x512', '512x768', '768x512', '640x384', '384x640']);
    expect(labels(offeredSizes(ownSizes, { ...model, nativeWidth: 768, nativeHeight: 768 }))).toEqual(['768x768', '512x512', '512x768', '768x512', '640x384', '384x640']);
    expect(resolveRequests(job('p', { aspectRatio: { width: 16, height: 9 } }), ownSizes, sdxl)[0]).toMatchObject({ width: 1344, height: 768 });
    expect(resolveRequests(job('p'), ownSizes, sdxl)[0]).toMatchObject({ width: 1024, height: 1024 });
    expect(() => resolveRequests(job('p', { size: { width: 512, height: 512 } }), ownSizes, sdxl)).toThrow('512x512 is not a size sdxl-base offers; choose one of 1024x1024, 896x1152');
  });
});

describe('LocalJobQueue close', () => {
  it('cancels waiting jobs, lets the running one finish and refuses new ones', async () => {
    const { queue, ready, call } = newQueue();
    ready.resolve(model);
    const a1 = await queue.enqueue('alice', job('a1'));
    const b1 = await queue.enqueue('bob', job('b1'));
    const running = await call(0);
    const closing = queue.close(5_000);
    await expect(b1.result).rejects.toEqual(new JobCancelledError('shutdown'));
    await expect(queue.enqueue('carol', job('c1'))).rejects.toMatchObject({ reason: 'closed' });
    running.finish();
    await closing;
    await expect(a1.result).resolves.toBeDefined();
  });

  it('aborts the running job when it outlasts the grace period', async () => {
    const { queue, ready, call } = newQueue();
    ready.resolve(model);
    const a1 = await queue.enqueue('alice', job('a1'));
    const running = await call(0);
    const started = performance.now();
    await queue.close(50);
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
    expect(running.signal?.aborted).toBe(true);
    await expect(a1.result).rejects.toEqual(new JobCancelledError('shutdown'));
  });
});

describe('LocalJobQueue journal', () => {
  const delivery = (token: string) => ({ applicationId: '1', token, tokenIssuedAt: 1, channelId: '2', attachmentSizeLimit: 1024 });

  it('gives a queue started after a crash the running and waiting jobs, in order, with their delivery records', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'imagine-journal-'));
    const before = newQueue({}, new JobJournal(dataDir));
    before.ready.resolve(model);
    const running = await before.queue.enqueue('alice', job('running', { seed: '7' }), { delivery: delivery('a') });
    const waiting = await before.queue.enqueue('bob', job('waiting'), { delivery: delivery('b') });
    const done = await before.queue.enqueue('carol', job('done'), { delivery: delivery('c') });
    (await before.call(0)).finish();
    await running.result;
    await running.acknowledge?.();
    await before.call(1);
    // The bot process dies here, with bob's job running: nothing is closed, nothing more acknowledged.
    expect(positions(waiting, done)).toEqual(['running', 1]);

    const after = newQueue({}, new JobJournal(dataDir));
    const recovered: { job: JobHandle; delivery: unknown }[] = [];
    after.queue.recover((handle, record) => recovered.push({ job: handle, delivery: record }));
    expect(recovered.map(({ job: handle }) => [handle.id, handle.userId, handle.options.prompt, handle.possiblyPosted])).toEqual([
      [waiting.id, 'bob', 'waiting', true],
      [done.id, 'carol', 'done', true],
    ]);
    expect(recovered.map((entry) => entry.delivery)).toEqual([delivery('b'), delivery('c')]);
    expect(after.queue.find(waiting.id)).toBe(recovered[0].job);

    after.ready.resolve(model);
    (await after.call(0)).finish();
    expect((await recovered[0].job.result).images).toHaveLength(1);
    await recovered[0].job.acknowledge?.();
    expect(new JobJournal(dataDir).pending().map((entry) => entry.id)).toEqual([done.id]);
  });

  it('a job accepted while the model loaded is settled after a crash with its server’s defaults and limits', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'imagine-journal-'));
    const before = newQueue({}, new JobJournal(dataDir));
    const serverPolicy: GenerationPolicy = { ...policy, defaultSteps: 3, promptSyntax: 'plain' };
    await before.queue.enqueue('alice', job('a (fox:1.2.3)'), { guildId: '100000000000000001', policy: serverPolicy });

    const after = newQueue({}, new JobJournal(dataDir));
    after.queue.recover(() => undefined);
    expect((await after.queue.list()).map((entry) => [entry.userId, entry.guildId, entry.prompt])).toEqual([['alice', '100000000000000001', 'a (fox:1.2.3)']]);
    after.ready.resolve(model);
    const { request } = await after.call(0);
    expect([request.steps, request.promptSyntax]).toEqual([3, 'plain']);
  });

  it('keeps a job’s picture once, and a job taken up again gives it to each of its images', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'imagine-journal-'));
    const before = newQueue({}, new JobJournal(dataDir));
    before.ready.resolve(model);
    await flush();
    const picture = Buffer.from(Array.from({ length: 3000 }, (_, index) => index % 251)).toString('base64');
    const initImage = { image: picture, width: 512, height: 768, strength: 0.5 };
    await before.queue.enqueue('alice', job('from a picture', { count: 3, seed: '4', initImage }), { delivery: delivery('a') });
    expect(readFileSync(join(dataDir, 'local-queue.jsonl'), 'utf8').split(picture)).toHaveLength(2);
    await before.call(0);

    const after = newQueue({}, new JobJournal(dataDir));
    const recovered: JobHandle[] = [];
    after.queue.recover((handle) => recovered.push(handle));
    after.ready.resolve(model);
    for (const index of [0, 1, 2]) {
      const call = await after.call(index);
      expect(call.request).toMatchObject({ seed: String(4 + index), width: 512, height: 768, initImage: { image: picture, strength: 0.5 } });
      call.finish();
    }
    expect((await recovered[0].result).images).toHaveLength(3);
  });

  it('survives a line cut short by a crash, keeps its file private, and stays small', () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'imagine-journal-'));
    const journal = new JobJournal(dataDir);
    for (let index = 0; index < 200; index++) {
      journal.accepted({ id: `job${index}`, userId: 'u', options: job(`prompt ${index}`), delivery: null });
      if (index !== 150) journal.finished(`job${index}`);
    }
    const file = join(dataDir, 'local-queue.jsonl');
    expect(readFileSync(file, 'utf8').split('\n').length).toBeLessThan(200);
    appendFileSync(file, '{"accepted":{"id":"torn","userId":"u","opti');
    expect(new JobJournal(dataDir).pending().map((entry) => [entry.id, entry.options.prompt])).toEqual([['job150', 'prompt 150']]);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('refuses a folder it cannot write', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'imagine-journal-')), 'a-file');
    appendFileSync(file, 'x');
    expect(() => new JobJournal(join(file, 'data'))).toThrow(/ENOTDIR|EEXIST/);
  });
});

