import { readFileSync } from 'node:fs';
import { freemem } from 'node:os';
import { RequestError } from './types.ts';

/** An image refused because its work space does not fit in the memory this machine has free. */
export class NotEnoughMemoryError extends RequestError {
  constructor(
    readonly width: number,
    readonly height: number,
    readonly neededBytes: number,
    readonly freeBytes: number,
  ) {
    super(`A ${width}x${height} image needs about ${formatGigabytes(neededBytes)} more memory than this machine has free (${formatGigabytes(freeBytes)}): ask for a smaller one.`);
  }
}

export function formatGigabytes(bytes: number): string {
  return `${(bytes / 1e9).toFixed(1)} GB`;
}

/**
 * The memory an onnxruntime CPU session needs for feature maps that grow with the image, beyond what it already
 * holds: its arena keeps what its largest run used, so a size it has run before costs nothing new.
 */
export class WorkSpace {
  private largestBytes = 0;

  constructor(private readonly bytesPerPixel: number) {}

  /** Bytes a run at this many image pixels would add to what the session holds. */
  growthFor(pixels: number): number {
    return Math.max(0, pixels * this.bytesPerPixel - this.largestBytes);
  }

  ran(pixels: number): void {
    this.largestBytes = Math.max(this.largestBytes, pixels * this.bytesPerPixel);
  }
}

/**
 * Memory this process can still get: the kernel's MemAvailable (free memory plus the page cache it can drop) and free
 * swap (slow, but no crash), within what the cgroup (a container's memory limit) leaves; os.freemem() where /proc is
 * not there.
 */
export function freeMemoryBytes(): number {
  const available = availableWithSwap() ?? freemem();
  const cgroupHeadroom = cgroupV2Headroom() ?? cgroupV1Headroom();
  return cgroupHeadroom === undefined ? available : Math.min(available, cgroupHeadroom);
}

function availableWithSwap(): number | undefined {
  const meminfo = readText('/proc/meminfo');
  const kilobytes = (field: string) => Number(meminfo?.match(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm'))?.[1] ?? Number.NaN);
  const available = kilobytes('MemAvailable');
  if (Number.isNaN(available)) return undefined;
  return (available + (kilobytes('SwapFree') || 0)) * 1024;
}

function cgroupV2Headroom(): number | undefined {
  const limit = readText('/sys/fs/cgroup/memory.max')?.trim();
  const usage = readText('/sys/fs/cgroup/memory.current')?.trim();
  if (!limit || limit === 'max' || !usage) return undefined;
  return Math.max(0, Number(limit) - Number(usage));
}

function cgroupV1Headroom(): number | undefined {
  const limit = Number(readText('/sys/fs/cgroup/memory/memory.limit_in_bytes'));
  const usage = Number(readText('/sys/fs/cgroup/memory/memory.usage_in_bytes'));
  // Without a limit, v1 reports a number near 2^63.
  if (!Number.isFinite(limit) || !Number.isFinite(usage) || limit === 0 || limit > 2 ** 60) return undefined;
  return Math.max(0, limit - usage);
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}
