/** Summary statistics over measurements; all take a non-empty list and leave it unchanged. */

function sorted(values: readonly number[]): number[] {
  if (values.length === 0) throw new Error('no measurements');
  return [...values].sort((a, b) => a - b);
}

export function min(values: readonly number[]): number {
  return sorted(values)[0];
}

export function max(values: readonly number[]): number {
  return sorted(values).at(-1)!;
}

export function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** The q-quantile (0..1) by linear interpolation between closest ranks, as numpy.percentile does by default. */
export function quantile(values: readonly number[], q: number): number {
  const ordered = sorted(values);
  const position = (ordered.length - 1) * q;
  const lower = Math.floor(position);
  const upper = Math.ceil(position);
  return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower);
}

export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}
