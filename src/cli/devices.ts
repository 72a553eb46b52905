import { isCpuAdapter, listAdapters, NoAdapterError } from '../gpu/index.ts';
import { defineCommand } from './command.ts';
import { flag } from './options.ts';

export const devicesCommand = defineCommand({
  name: 'devices',
  summary: 'list the WebGPU adapters (name, vendor, backend, features, key limits)',
  synopsis: '[--json]',
  description: `Lists the adapters WebGPU offers. Pick one for any command with --device INDEX|NAME, or with
--device cpu (a CPU adapter) or --device gpu (the first real GPU).`,
  options: { json: flag({ help: 'the list as JSON' }) },
  async run(v) {
    const adapters = await listAdapters();
    if (adapters.length === 0) throw new NoAdapterError();
    if (v.json) {
      console.log(JSON.stringify(adapters, null, 2));
      return 0;
    }
    for (const a of adapters) {
      console.log(`${a.index}: ${a.name}`);
      console.log(`   vendor ${a.vendor}${a.architecture ? ` (${a.architecture})` : ''}, backend ${a.backend}, ${a.type} adapter, ${isCpuAdapter(a) ? 'CPU (--device cpu)' : 'GPU (--device gpu)'}`);
      console.log(`   features: ${a.features.join(', ')}`);
      const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
      const l = a.limits;
      console.log(
        `   limits: storage binding ${mib(l.maxStorageBufferBindingSize)}, buffer ${mib(l.maxBufferSize)}, ` +
          `workgroup storage ${l.maxComputeWorkgroupStorageSize} B, invocations/workgroup ${l.maxComputeInvocationsPerWorkgroup}, ` +
          `workgroups/dimension ${l.maxComputeWorkgroupsPerDimension}`,
      );
    }
    return 0;
  },
});
