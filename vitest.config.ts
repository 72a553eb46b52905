import { fileURLToPath } from 'node:url';
import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  // `import 'gpunet'` (the examples) is the sources, as tsconfig.json's paths make it for tsx and tsc
  resolve: { alias: { gpunet: fileURLToPath(new URL('./src/index.ts', import.meta.url)) } },
  test: {
    include: ['test/**/*.test.ts'],
    // the torchvision zoo runs on its own: npm run test:zoo (vitest.zoo.config.ts)
    exclude: [...configDefaults.exclude, 'test/zoo/**'],
    // One process per file (Dawn is not meant for worker threads), one file at a time: the
    // software adapter already uses both cores.
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
