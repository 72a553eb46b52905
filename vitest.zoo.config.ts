// npm run test:zoo: the torchvision zoo (test/zoo/), which plain `npm test` leaves out.
import { configDefaults, defineConfig } from 'vitest/config';
import base from './vitest.config.ts';

export default defineConfig({ ...base, test: { ...base.test, include: ['test/zoo/**/*.test.ts'], exclude: configDefaults.exclude } });
