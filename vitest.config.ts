import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 20_000 } },
      // the bundle, the .deb and the npm package; Debian's node 18 and node 22 are fetched into the lab cache once
      { test: { name: 'pkg', include: ['test/pkg/**/*.test.ts'], testTimeout: 60_000, hookTimeout: 300_000 } },
      {
        test: {
          name: 'lab',
          include: ['test/lab/**/*.test.ts'],
          // Lab tests share one namespaced lab per file and wait out real timeouts.
          testTimeout: 180_000,
          hookTimeout: 300_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
