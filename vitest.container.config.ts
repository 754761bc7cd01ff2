import { defineConfig } from 'vitest/config';

// scripts/container-test.sh: the image and compose.yaml, run with podman. Not part of `npm test`.
export default defineConfig({
  test: {
    include: ['test/container/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
