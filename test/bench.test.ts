import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { EventLoopLagSampler } from '../src/bench/event-loop-lag.ts';
import { runImageBench } from '../src/bench/image-bench.ts';
import { modelFileBytes } from '../src/bench/machine.ts';
import { formatQueueReport, runQueueBench } from '../src/bench/queue-bench.ts';
import { formatReport } from '../src/bench/report.ts';
import { median, quantile } from '../src/bench/stats.ts';
import { writeBenchTinyVae } from '../src/tiny-model/bench-model.ts';
import { ensureTinyModel } from '../src/tiny-model/index.ts';
import { entryPoint } from './entry-point.ts';

const run = promisify(execFile);

let tinyDir: string;
let scratch: string;
beforeAll(async () => {
  tinyDir = await ensureTinyModel();
  scratch = await mkdtemp(join(tmpdir(), 'bench-test-'));
});
afterAll(async () => {
  await rm(scratch, { recursive: true, force: true });
});

describe('statistics', () => {
  it('interpolates quantiles between ranks as numpy.percentile does', () => {
    // numpy.percentile([1, 2, 3, 4], 99) = 3.97; numpy.median([5, 1, 3]) = 3; numpy.median([4, 1, 3, 2]) = 2.5
    expect(quantile([1, 2, 3, 4], 0.99)).toBeCloseTo(3.97, 10);
    expect(median([5, 1, 3])).toBe(3);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });
});

describe('modelFileBytes', () => {
  it('counts the graphs and weights of every part the pipeline loads: both SDXL text encoders, and the VAE encoder for img2img', async () => {
    const dir = join(scratch, 'sizes');
    const parts = { text_encoder: 10, text_encoder_2: 200, unet: 3000, vae_decoder: 40000, vae_encoder: 500000 };
    for (const [part, bytes] of Object.entries(parts)) {
      await mkdir(join(dir, part), { recursive: true });
      await writeFile(join(dir, part, 'model.onnx'), Buffer.alloc(bytes));
      await writeFile(join(dir, part, 'model.onnx_data'), Buffer.alloc(bytes));
      await writeFile(join(dir, part, 'config.json'), '{"not": "counted"}');
    }
    expect(modelFileBytes(dir)).toBe(2 * 43210);
    expect(modelFileBytes(dir, { imageToImage: true })).toBe(2 * 543210);
    await rm(join(dir, 'text_encoder_2'), { recursive: true });
    expect(modelFileBytes(dir)).toBe(2 * 43010);
  });
});

describe('EventLoopLagSampler', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('takes a late tick as lag of its lateness, and charges it the thread time the kernel counted meanwhile', () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    let now = 0;
    let thread: [number, number] = [0, 0];
    const sampler = new EventLoopLagSampler(10, () => thread, () => now);
    sampler.start();
    const tick = (elapsedMs: number, runningMs: number, waitingMs: number) => {
      now += elapsedMs;
      thread = [thread[0] + runningMs, thread[1] + waitingMs];
      vi.advanceTimersByTime(10);
    };
    tick(10, 1, 0); // on time, the thread nearly idle
    tick(160, 150, 2); // 150 ms of our own synchronous work held the tick back
    tick(50, 1, 40); // 40 ms late again, this time waiting for a CPU another process had
    expect(sampler.stop()).toEqual([
      { lagMs: 0, runningMs: 1, waitingMs: 0 },
      { lagMs: 150, runningMs: 150, waitingMs: 2 },
      { lagMs: 40, runningMs: 1, waitingMs: 40 },
    ]);
  });

  it('leaves the thread times unknown (NaN) where the kernel does not tell them', () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
    const sampler = new EventLoopLagSampler(10, () => undefined, () => 0);
    sampler.start();
    vi.advanceTimersByTime(10);
    const [sample] = sampler.stop();
    expect(sample.runningMs).toBeNaN();
    expect(sample.waitingMs).toBeNaN();
  });

  it('on the real clock, sees synchronous work as a tick at least that late', async () => {
    const sampler = new EventLoopLagSampler(10);
    sampler.start();
    await new Promise((resolve) => setTimeout(resolve, 30));
    const blockedAt = performance.now();
    while (performance.now() - blockedAt < 150);
    await new Promise((resolve) => setTimeout(resolve, 30));
    // A busier machine only makes ticks later, never earlier.
    expect(Math.max(...sampler.stop().map((sample) => sample.lagMs))).toBeGreaterThan(135);
  });
});

describe('image bench', () => {
  it('times every stage of each run, and the stages add up', async () => {
    const result = await runImageBench({
      modelDir: tinyDir,
      width: 256,
      height: 256,
      steps: 3,
      scheduler: 'Euler',
      guidance: 7.5,
      runs: 2,
      executionProvider: 'cpu',
      fuseAttention: true,
      prompt: 'a red fox in the snow',
      seed: '7',
    });
    expect(result.runs).toHaveLength(2);
    for (const image of result.runs) {
      expect(image.unetStepMs).toHaveLength(3);
      const inside = image.unetStepMs.reduce((a, b) => a + b, 0);
      expect(inside).toBeLessThanOrEqual(image.onnxMs);
      expect(image.onnxMs).toBeLessThan(image.totalMs);
      expect(image.overheadRatio).toBeCloseTo(image.totalMs / image.onnxMs, 10);
      expect(image.pngMs).toBeGreaterThan(0);
      expect(image.iterationsPerSecond).toBeGreaterThan(0);
    }
    expect(result.model.fileBytes).toBeGreaterThan(100_000);
    expect(result.peakRssBytes).toBeGreaterThanOrEqual(result.rssAfterLoadBytes * 0.9);
    expect(result.fusedAttentions.unet).toBeGreaterThan(0);

    const table = formatReport(result);
    expect(table).toMatch(/attention fused at load \(U-Net [1-9]/);
    expect(result.decoderLayout).toBe('blocked');
    expect(table).toContain('VAE decoder layout blocked');
    for (const label of ['model load', 'tokenize', 'text encoder', 'U-Net per step', 'scheduler + own code per step', 'VAE decode', 'PNG encode', 'total per image', 'it/s', 'overhead ratio', 'peak RSS']) {
      expect(table).toContain(label);
    }
  });

  it('with a tiny decoder: the two decoders in turns, and what the previews cost', async () => {
    const taesdDir = join(scratch, 'taesd-bench');
    await writeBenchTinyVae(taesdDir);
    const result = await runImageBench({
      modelDir: tinyDir,
      width: 128,
      height: 128,
      steps: 4,
      scheduler: 'Euler',
      guidance: 7.5,
      executionProvider: 'cpu',
      fuseAttention: true,
      prompt: 'a red fox in the snow',
      seed: '7',
      tinyVaeDir: taesdDir,
      decoder: 'alternate',
      runs: 2,
      previewEverySteps: 1,
    });
    expect(result.runs.map((run) => run.decoder)).toEqual(['full', 'tiny']);
    const image = result.runs[0];
    // The first job makes a linear preview to learn its cost (the tiny decoder's was timed at load).
    expect(image.previews).toBeGreaterThanOrEqual(1);
    expect(image.previewMs).toBeGreaterThan(0);
    expect(image.previewMs).toBeLessThan(image.totalMs);
    const table = formatReport(result);
    expect(table).toContain('tiny decoder taesd-bench');
    expect(table).toMatch(/VAE decode \(tiny decoder\)/);
    expect(table).toMatch(/tiny decoder ÷ full, run by run +\d+\.\d\d %/);
    expect(table).toMatch(/previews \(decode \+ JPEG\), share of image +\d+\.\d\d %/);
  });

  it('with the steps animation: a preview after every step, and the animation’s encoding, as a share of the image', async () => {
    const options = { modelDir: tinyDir, width: 128, height: 128, steps: 4, scheduler: 'Euler', guidance: 7.5, runs: 1, executionProvider: 'cpu', fuseAttention: true, prompt: 'a fox', seed: '7' } as const;
    const result = await runImageBench({ ...options, stepsVideo: true });
    const [image] = result.runs;
    expect([image.previews, image.tinyDecoderPreviews]).toEqual([3, 0]);
    expect(image.animationMs).toBeGreaterThan(0);
    expect(image.animationBytes).toBeGreaterThan(1000);
    const table = formatReport(result);
    expect(table).toContain(', steps animation,');
    expect(table).toMatch(/steps animation size +\d+ KiB/);
    expect(table).toMatch(/previews \+ animation, share of image +\d+\.\d\d %/);
  });

  it('img2img: runs the VAE encoder too and only the strength’s share of the steps', async () => {
    const options = { modelDir: tinyDir, width: 128, height: 128, steps: 4, scheduler: 'Euler', guidance: 7.5, runs: 1, executionProvider: 'cpu', fuseAttention: true, prompt: 'a fox', seed: '7' } as const;
    const [plain, img2img] = [await runImageBench(options), await runImageBench({ ...options, strength: 0.5 })];
    expect(plain.runs[0].unetStepMs).toHaveLength(4);
    expect(img2img.runs[0].unetStepMs).toHaveLength(2);
    const table = formatReport(img2img);
    expect(table).toContain('img2img at strength 0.5, 128x128, 4 steps (2 U-Net calls) of Euler');
    expect(table).toContain('VAE encode + decode');
  });

  it('runs from npm run bench and writes the JSON with the machine', async () => {
    const json = join(scratch, 'bench.json');
    const { stdout } = await run(process.execPath, [entryPoint('src/bench/cli.ts'), '--model', tinyDir, '--size', '256x256', '--steps', '2', '--scheduler', 'Euler', '--runs', '1', '--json', json]);
    expect(stdout).toMatch(/overhead ratio/);
    const result = JSON.parse(await readFile(json, 'utf8'));
    expect(result.machine).toMatchObject({ cores: expect.any(Number), cpuModel: expect.any(String), executionProvider: 'cpu', onnxruntime: '1.30.0' });
    expect(result.runs[0].unetStepMs).toHaveLength(2);
  });

  it('names the bad option', async () => {
    const failure = run(process.execPath, [entryPoint('src/bench/cli.ts'), '--model', tinyDir, '--size', '500x300']);
    await expect(failure).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('--size must be WIDTHxHEIGHT') });
  });
});

describe('session-options sweep', () => {
  it('runs the chosen option sets in turns and reports each, refusing unknown names', async () => {
    const json = join(scratch, 'sweep.json');
    const arms = 'defaults,enableMemPattern true';
    await run(process.execPath, [entryPoint('src/bench/session-sweep.ts'), '--model', tinyDir, '--size', '256x256', '--runs', '2', '--only', arms, '--interleave', '--json', json]);
    const sweep = JSON.parse(await readFile(json, 'utf8'));
    expect(sweep.rows.map((row: { variant: string }) => row.variant)).toEqual(['defaults', 'enableMemPattern true']);
    expect(sweep.rows[1].options.enableMemPattern).toBe(true);
    for (const row of sweep.rows) expect(row.runMs).toHaveLength(2);
    const failure = run(process.execPath, [entryPoint('src/bench/session-sweep.ts'), '--model', tinyDir, '--only', 'fastest']);
    await expect(failure).rejects.toMatchObject({ stderr: expect.stringContaining('no option set named fastest') });
  });
});

describe('queue bench', () => {
  it('measures lag and acknowledgements while the real queue and worker generate', async () => {
    const result = await runQueueBench({ jobs: 3, users: 2, steps: 3, probeEveryMs: 20, progressIntervalMs: 0, executionProvider: 'cpu' }, () => {});
    expect(result.jobs).toBe(3);
    expect(result.busyLagMs.count).toBeGreaterThan(5);
    expect(result.idleLagMs.count).toBeGreaterThan(50);
    expect(result.acknowledgeMs.count).toBeGreaterThan(0);
    expect(result.busyLagMs.max).toBeGreaterThanOrEqual(result.busyLagMs.p99);
    expect(result.mainThreadRunningShare).toBeGreaterThan(0);
    expect(result.mainThreadRunningShare).toBeLessThan(1);
    expect(result.imagesPerMinute).toBeGreaterThan(0);
    // The first job's first preview is made to learn its cost; it reaches the job's status after its step did.
    expect(result.firstPreviewMs.count).toBeGreaterThanOrEqual(1);
    expect(result.previewDelayMs.count).toBeGreaterThanOrEqual(result.firstPreviewMs.count);
    expect(result.previewDelayMs.p50).toBeGreaterThanOrEqual(0);
    expect(formatQueueReport(result)).toContain('first preview: job start → its JPEG');
  });
});
