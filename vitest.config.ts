import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: { conditions: ['meshfetch-source'] },
  ssr: { resolve: { conditions: ['meshfetch-source'] } },
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    environment: 'node',
    pool: 'forks',
    testTimeout: 20_000,
    hookTimeout: 60_000,
    setupFiles: ['test/support/setup.ts'],
    // An unhandled rejection anywhere fails the run (vitest's default; kept explicit).
    dangerouslyIgnoreUnhandledErrors: false,
  },
});
