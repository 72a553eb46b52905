// What a storage load costs on lavapipe by how its address varies across a subgroup: each version
// sums vec4s of a buffer, one subgroup (8 lanes) per workgroup, the same number of subgroup load
// instructions per launch (LOADS per invocation, 8 lanes), so ms per launch compare the cost of one
// load instruction. llm.c dev/cuda style: numbered versions, checked first (each sum against the
// float64 reference), then timed by lavapipe's worker CPU, versions interleaved, medians.
//   1  per lane: lane l reads src[base + 8k + l] (a different vec4 per lane: Mesa's masked gather)
//   2  uniform, in a loop: every lane reads src[base + k], base from workgroup_id, k the loop's counter
//   3  uniform, written out: LOADS loads at base + constant, no loop
//   4  per lane, written out: as 1 without the loop
//   5  constant addresses, written out: every lane of every workgroup reads src[0..LOADS) (NIR's
//      nir_src_is_always_uniform holds: constants and ALU of them)
//   6  addresses from the Params uniform only, written out: src[p.pad + j]
//   7  per lane from a uniform buffer (64 KiB, var<uniform> array<vec4f, 4096>), in a loop
//   8  subgroup-uniform from that uniform buffer, in a loop
//   9  per lane from workgroup memory (a 64-vec4 tile each workgroup fills once, 8 stores a lane), in a loop
//  10  per lane, scalar f32 loads (the same buffer as array<f32>), in a loop: 4x the instructions of 1
//      for the same bytes, so its ns compare per load instruction, its GB/s per byte
// GB/s counts the bytes delivered to lanes (8 x 16 per load instruction) and, for the uniform
// versions, the distinct bytes read (16 per instruction).
//   npx tsx bench/uniform-loads.ts [--rounds N]
// The x86 code: GALLIVM_DEBUG=asm MESA_SHADER_CACHE_DISABLE=true npx tsx bench/uniform-loads.ts --asm
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { getGpu, workerCpuMs } from '../src/gpu/index.ts';
import { openGpu } from './harness.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '7' }, asm: { type: 'boolean' } } });
const ROUNDS = Number(values.rounds);

const LANES = 8;
const LOADS = 64; // vec4 loads per invocation
const WORKGROUPS = 16384; // 16384 x 8 lanes x 64 loads: 8.4 M lane loads (134 MB delivered) a launch
const SRC_VEC4 = WORKGROUPS * LANES * LOADS; // version 1 reads every vec4 once (128 MiB)

const unrolled = (index: (j: number) => string) => Array.from({ length: LOADS }, (_, j) => `  s += src[${index(j)}];`).join('\n');

const source = /* wgsl */ `
struct Params { loads: u32, pad: u32 }
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> out: array<vec4f>;  // out: [workgroups * 8] (each lane's sum)
@group(0) @binding(2) var<storage, read> src: array<vec4f>;        // src: [workgroups * 8 * LOADS]
@group(0) @binding(3) var<storage, read> src32: array<f32>;        // src32: src as floats

// 1: per lane, in a loop
@compute @workgroup_size(${LANES})
fn perLane(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let base = wid.x * p.loads * ${LANES}u + lid;
  var s = vec4f(0.0);
  for (var k = 0u; k < p.loads; k++) { s += src[base + k * ${LANES}u]; }
  out[wid.x * ${LANES}u + lid] = s;
}

// 2: subgroup-uniform, in a loop (lanes read a workgroup's own segment, ${LANES} vec4s apart, so
// the same cache lines as version 1 are touched once each)
@compute @workgroup_size(${LANES})
fn uniformLoop(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let base = wid.x * p.loads * ${LANES}u;
  var s = vec4f(0.0);
  for (var k = 0u; k < p.loads; k++) { s += src[base + k * ${LANES}u]; }
  out[wid.x * ${LANES}u + lid] = s;
}

// 3: subgroup-uniform, written out
@compute @workgroup_size(${LANES})
fn uniformUnrolled(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let base = wid.x * ${LOADS * LANES}u;
  var s = vec4f(0.0);
${unrolled((j) => `base + ${j * LANES}u`)}
  out[wid.x * ${LANES}u + lid] = s;
}

// 4: per lane, written out
@compute @workgroup_size(${LANES})
fn perLaneUnrolled(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let base = wid.x * ${LOADS * LANES}u + lid;
  var s = vec4f(0.0);
${unrolled((j) => `base + ${j * LANES}u`)}
  out[wid.x * ${LANES}u + lid] = s;
}

// 9: per lane from workgroup memory: tile[i] = (i, workgroup, 1, 2), lane l reads (8k + l) % 64
var<workgroup> tile: array<vec4f, 64>;
@compute @workgroup_size(${LANES})
fn sharedPerLane(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  for (var j = 0u; j < 8u; j++) { let i = j * ${LANES}u + lid; tile[i] = vec4f(f32(i), f32(wid.x), 1.0, 2.0); }
  workgroupBarrier();
  var s = vec4f(0.0);
  for (var k = 0u; k < p.loads; k++) { s += tile[(k * ${LANES}u + lid) % 64u]; }
  out[wid.x * ${LANES}u + lid] = s;
}

// 10: per lane, scalar loads (4 per vec4 of version 1; the same bytes)
@compute @workgroup_size(${LANES})
fn perLaneScalar(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let base = wid.x * p.loads * ${LANES}u + lid;
  var s = vec4f(0.0);
  for (var k = 0u; k < p.loads * 4u; k++) { s.x += src32[base + k * ${LANES}u]; }
  out[wid.x * ${LANES}u + lid] = s;
}

// 5: constant addresses
@compute @workgroup_size(${LANES})
fn constantUnrolled(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  var s = vec4f(0.0);
${unrolled((j) => `${j * LANES}u`)}
  out[wid.x * ${LANES}u + lid] = s;
}

// 6: addresses from the uniform buffer only
@compute @workgroup_size(${LANES})
fn paramsUnrolled(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  var s = vec4f(0.0);
${unrolled((j) => `p.pad + ${j * LANES}u`)}
  out[wid.x * ${LANES}u + lid] = s;
}
`;

// 7, 8: the same loops reading a uniform buffer (bound through the WebGPU API directly: Gpu.dispatch
// binds storage buffers only); lanes wrap around its 4096 vec4s
const UBO_VEC4 = 4096;
const uboSource = /* wgsl */ `
@group(0) @binding(0) var<uniform> u: array<vec4f, ${UBO_VEC4}>;
@group(0) @binding(1) var<storage, read_write> out: array<vec4f>;
@compute @workgroup_size(${LANES})
fn uboPerLane(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let base = wid.x * ${LOADS * LANES}u + lid;
  var s = vec4f(0.0);
  for (var k = 0u; k < ${LOADS}u; k++) { s += u[(base + k * ${LANES}u) % ${UBO_VEC4}u]; }
  out[wid.x * ${LANES}u + lid] = s;
}
@compute @workgroup_size(${LANES})
fn uboUniformLoop(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let base = wid.x * ${LOADS * LANES}u;
  var s = vec4f(0.0);
  for (var k = 0u; k < ${LOADS}u; k++) { s += u[(base + k * ${LANES}u) % ${UBO_VEC4}u]; }
  out[wid.x * ${LANES}u + lid] = s;
}
`;

const versions = [
  { n: 1, entry: 'perLane', uniform: false },
  { n: 2, entry: 'uniformLoop', uniform: true },
  { n: 3, entry: 'uniformUnrolled', uniform: true },
  { n: 4, entry: 'perLaneUnrolled', uniform: false },
  { n: 5, entry: 'constantUnrolled', uniform: true, constant: true },
  { n: 6, entry: 'paramsUnrolled', uniform: true, constant: true },
  { n: 7, entry: 'uboPerLane', uniform: false, ubo: true },
  { n: 8, entry: 'uboUniformLoop', uniform: true, ubo: true },
  { n: 9, entry: 'sharedPerLane', uniform: false, shared: true },
  { n: 10, entry: 'perLaneScalar', uniform: false, scalar: true },
];

const gpu = await openGpu();
const src = gpu.pool.acquire(SRC_VEC4 * 16, 'uniform-loads src');
const out = gpu.pool.acquire(WORKGROUPS * LANES * 16, 'uniform-loads out');
const values32 = new Float32Array(SRC_VEC4 * 4);
for (let i = 0; i < values32.length; i++) values32[i] = ((i * 2654435761) % 1000) / 1000 - 0.5;
gpu.device.queue.writeBuffer(src, 0, values32);

const ubo = gpu.device.createBuffer({ size: UBO_VEC4 * 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
gpu.device.queue.writeBuffer(ubo, 0, values32, 0, UBO_VEC4 * 4);
const uboModule = gpu.device.createShaderModule({ code: uboSource });
const uboPipelines = new Map<string, { pipeline: GPUComputePipeline; group: GPUBindGroup }>();
for (const entry of ['uboPerLane', 'uboUniformLoop']) {
  const pipeline = gpu.device.createComputePipeline({ layout: 'auto', compute: { module: uboModule, entryPoint: entry } });
  const group = gpu.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: ubo } }, { binding: 1, resource: { buffer: out } }] });
  uboPipelines.set(entry, { pipeline, group });
}
const launchUbo = (entry: string) => {
  gpu.flush();
  const { pipeline, group } = uboPipelines.get(entry)!;
  const enc = gpu.device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, group);
  pass.dispatchWorkgroups(WORKGROUPS);
  pass.end();
  gpu.device.queue.submit([enc.finish()]);
};

const launch = (entry: string) =>
  uboPipelines.has(entry) ? launchUbo(entry) : gpu.dispatch({
    kernel: { shader: 'uniform-loads', source, entry, bindings: ['write', 'read', 'read'] },
    buffers: [out, src, src],
    params: { loads: LOADS, pad: 0 },
    workgroups: [WORKGROUPS],
    label: `uniform-loads.${entry}`,
  });

// validate: each lane's sum against float64
type Version = (typeof versions)[number];
function expected(v: Version, w: number, l: number, c: number): number {
  let ref = 0;
  if ('shared' in v) {
    for (let k = 0; k < LOADS; k++) ref += [(k * LANES + l) % 64, w, 1, 2][c];
  } else if ('scalar' in v) {
    for (let k = 0; c === 0 && k < LOADS * 4; k++) ref += values32[w * LOADS * LANES + l + k * LANES];
  } else {
    for (let k = 0; k < LOADS; k++) {
      let i = (('constant' in v ? 0 : w) * LOADS + k) * LANES + (v.uniform ? 0 : l);
      if ('ubo' in v) i %= UBO_VEC4;
      ref += values32[i * 4 + c];
    }
  }
  return ref;
}
for (const v of versions) {
  launch(v.entry);
  const got = new Float32Array(await gpu.read(out, 0, WORKGROUPS * LANES * 16));
  for (const w of [0, 1, WORKGROUPS - 1]) {
    for (let l = 0; l < LANES; l++) {
      for (let c = 0; c < 4; c++) {
        const ref = expected(v, w, l, c);
        const g = got[(w * LANES + l) * 4 + c];
        if (Math.abs(g - ref) > 1e-4 * (1 + Math.abs(ref))) throw new Error(`version ${v.n} (${v.entry}): workgroup ${w} lane ${l}: ${g} against ${ref}`);
      }
    }
  }
}
if (values.asm) process.exit(0);

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
console.log(`load average ${loadavg().map((x) => x.toFixed(1)).join(' ')}; ${ROUNDS} rounds interleaved, 2 launches each; ${LANES} lanes x ${LOADS} vec4 loads x ${WORKGROUPS} workgroups a launch`);
const cpu = versions.map(() => [] as number[]);
for (const v of versions) launch(v.entry);
await gpu.sync();
for (let r = 0; r < ROUNDS; r++) {
  for (let i = 0; i < versions.length; i++) {
    const v = versions[(i + r) % versions.length];
    const c0 = workerCpuMs().ms;
    launch(v.entry);
    launch(v.entry);
    await gpu.sync();
    cpu[versions.indexOf(v)].push((workerCpuMs().ms - c0) / 2);
  }
}
console.log('version                 worker CPU ms   ns per subgroup load   lane GB per CPU-s   distinct GB per CPU-s');
for (let i = 0; i < versions.length; i++) {
  const v = versions[i];
  const ms = median(cpu[i]);
  const width = 'scalar' in v ? 4 : 16; // bytes a lane receives per load
  const instructions = WORKGROUPS * LOADS * (16 / width); // subgroup load instructions a launch
  const lane = (instructions * LANES * width) / (ms / 1e3) / 1e9;
  const distinct = v.uniform ? (instructions * width) / (ms / 1e3) / 1e9 : lane;
  console.log(`${`${v.n} ${v.entry}`.padEnd(22)}  ${ms.toFixed(1).padStart(13)}  ${((ms * 1e6) / instructions).toFixed(2).padStart(21)}  ${lane.toFixed(2).padStart(18)}  ${distinct.toFixed(2).padStart(22)}`);
}
console.log(`load average now ${loadavg().map((x) => x.toFixed(1)).join(' ')}`);
gpu.pool.release(src);
gpu.pool.release(out);
