import { totalmem } from 'node:os';
import { describe, expect, it } from 'vitest';
import { WorkSpace, freeMemoryBytes } from '../src/pipeline/work-space.ts';

describe('WorkSpace', () => {
  it('needs its bytes per pixel for a first run, then only what a larger run adds', () => {
    const workSpace = new WorkSpace(4_000);
    expect(workSpace.growthFor(1024 * 1024)).toBe(4_000 * 1024 * 1024);
    workSpace.ran(512 * 512);
    expect(workSpace.growthFor(512 * 512)).toBe(0);
    expect(workSpace.growthFor(256 * 256)).toBe(0);
    expect(workSpace.growthFor(1024 * 1024)).toBe(4_000 * (1024 * 1024 - 512 * 512));
  });

  it('needs nothing where it is not counted (a GPU, a tiny decoder)', () => {
    expect(new WorkSpace(0).growthFor(2048 * 2048)).toBe(0);
  });
});

describe('freeMemoryBytes', () => {
  it("reads this machine's free memory: more than nothing, less than all of it", () => {
    const free = freeMemoryBytes();
    expect(free).toBeGreaterThan(0);
    expect(free).toBeLessThanOrEqual(totalmem());
  });
});
