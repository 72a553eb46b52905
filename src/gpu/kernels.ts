// Shader loading and the pipeline cache.
//
// A kernel is one entry point of one `.wgsl` file in shaders/ (or of WGSL given as text: custom ops), plus
//  - `constants`: WGSL `override` values (tile sizes, workgroup size) fixed at pipeline creation;
//  - `defines`: `{{NAME}}` text substitutions, for generated code such as the elementwise table's
//    expressions.
// Binding convention: @group(0) @binding(0) is the op's uniform `Params` struct; bindings 1..n are
// storage buffers in the order the op passes them, each declared 'read' (read-only) or 'write'
// (read_write). The bind group layout is explicit, so an entry point may leave some unused.
// `Params` is declared once, in the shader: its fields (u32, i32 or f32 scalars) are read from the
// source, and a dispatch passes their values by name (paramFields, packParams).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const SHADER_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'shaders');

export type Access = 'read' | 'write';

export interface KernelSpec {
  /** shader file stem in shaders/, e.g. 'conv2d'; with `source`, the name errors give the code */
  shader: string;
  /** the WGSL itself, for kernels from outside shaders/ (custom ops) */
  source?: string;
  /** entry point in that file */
  entry: string;
  /** access of storage bindings 1..n */
  bindings: readonly Access[];
  constants?: Record<string, number>;
  defines?: Record<string, string>;
}

export interface Kernel {
  readonly spec: KernelSpec;
  readonly label: string;
  /** the fields of the shader's `struct Params`, in declaration order */
  readonly params: readonly ParamField[];
  readonly pipeline: GPUComputePipeline;
  readonly layout: GPUBindGroupLayout;
  /** compile errors are collected asynchronously; Gpu.sync() raises them */
  readonly compiled: Promise<string | null>;
}

const sourceCache = new Map<string, string>();

/** The name of a kernel's code in messages: the file in shaders/, or the name given with its source. */
export function shaderFile(spec: Pick<KernelSpec, 'shader' | 'source'>): string {
  return spec.source === undefined ? `${spec.shader}.wgsl` : spec.shader;
}

/** The WGSL of shaders/`shader`.wgsl (or `source`, when given) with `defines` substituted. */
export function shaderSource(shader: string, defines?: Record<string, string>, source?: string): string {
  let src = source ?? sourceCache.get(shader);
  if (src === undefined) {
    src = readFileSync(join(SHADER_DIR, `${shader}.wgsl`), 'utf8');
    sourceCache.set(shader, src);
  }
  if (defines) {
    for (const [k, v] of Object.entries(defines)) src = src.split(`{{${k}}}`).join(v);
  }
  const missing = /\{\{(\w+)\}\}/.exec(src);
  if (missing) throw new Error(`shader ${shaderFile({ shader, source })}: no value given for {{${missing[1]}}}`);
  return src;
}

export type ParamType = 'u32' | 'i32' | 'f32';

export interface ParamField {
  name: string;
  type: ParamType;
}

/** The fields of `struct Params { ... }` in a shader's source (none when it declares no Params). */
export function paramFields(source: string, file = 'shader.wgsl'): ParamField[] {
  const m = /\bstruct\s+Params\s*\{([^}]*)\}/.exec(source.replace(/\/\/[^\n]*/g, ''));
  if (!m) return [];
  return m[1]
    .split(',')
    .map((f) => f.trim())
    .filter((f) => f !== '')
    .map((f) => {
      const field = /^(\w+)\s*:\s*(\w+)$/.exec(f);
      if (!field || !['u32', 'i32', 'f32'].includes(field[2])) {
        throw new Error(`shader ${file}: Params field '${f}' is not a u32, i32 or f32 scalar`);
      }
      return { name: field[1], type: field[2] as ParamType };
    });
}

/**
 * Writes `values` (by field name; booleans as 0/1) into `view` at `byteOffset` in the layout of
 * `fields`: every field a 4-byte scalar, in declaration order. Every field must be given, and
 * nothing else, so that a renamed or forgotten field fails loudly at the dispatch.
 */
export function packParams(fields: readonly ParamField[], values: Readonly<Record<string, number | boolean>>, view: DataView, byteOffset: number, kernel: string): void {
  let given = 0;
  for (const [i, { name, type }] of fields.entries()) {
    const raw = values[name];
    if (raw === undefined) throw new Error(`${kernel}: no value for Params.${name}`);
    given++;
    const v = typeof raw === 'boolean' ? Number(raw) : raw;
    if (type !== 'f32' && !(Number.isInteger(v) && v >= (type === 'i32' ? -(2 ** 31) : 0) && v < (type === 'i32' ? 2 ** 31 : 2 ** 32))) {
      throw new Error(`${kernel}: Params.${name} = ${raw} is not a ${type}`);
    }
    const at = byteOffset + 4 * i;
    if (type === 'f32') view.setFloat32(at, v, true);
    else if (type === 'i32') view.setInt32(at, v, true);
    else view.setUint32(at, v, true);
  }
  if (given !== Object.keys(values).length) {
    const unknown = Object.keys(values).filter((k) => !fields.some((f) => f.name === k));
    throw new Error(`${kernel}: Params has no field ${unknown.join(', ')}`);
  }
}

export function kernelKey(spec: KernelSpec): string {
  return JSON.stringify([spec.shader, spec.entry, spec.bindings, spec.constants ?? {}, spec.defines ?? {}, spec.source ?? null]);
}

export class PipelineCache {
  private kernels = new Map<string, Kernel>();
  private modules = new Map<string, GPUShaderModule>();
  private unchecked: Kernel[] = [];

  constructor(private readonly device: GPUDevice) {}

  get size(): number {
    return this.kernels.size;
  }

  get(spec: KernelSpec): Kernel {
    const key = kernelKey(spec);
    let kernel = this.kernels.get(key);
    if (kernel) return kernel;
    const label = `${spec.shader}.${spec.entry}`;
    const code = shaderSource(spec.shader, spec.defines, spec.source);
    const file = shaderFile(spec);
    this.device.pushErrorScope('validation');
    let module = this.modules.get(code);
    if (!module) {
      module = this.device.createShaderModule({ code, label: file });
      this.modules.set(code, module);
    }
    const entries: GPUBindGroupLayoutEntry[] = [
      { binding: 0, visibility: GPUShaderStage.COMPUTE, buffer: { type: 'uniform' } },
      ...spec.bindings.map((access, i) => ({
        binding: i + 1,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: access === 'read' ? 'read-only-storage' : 'storage' } as GPUBufferBindingLayout,
      })),
    ];
    const layout = this.device.createBindGroupLayout({ entries, label });
    const pipeline = this.device.createComputePipeline({
      label,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout], label }),
      compute: { module, entryPoint: spec.entry, constants: spec.constants },
    });
    const compiled = this.device.popErrorScope().then(async (err) => {
      if (!err) return null;
      this.kernels.delete(key); // a later use compiles again (and fails again) rather than reusing it
      this.modules.delete(code);
      const info = await module.getCompilationInfo();
      const lines = info.messages
        .filter((m) => m.type === 'error')
        .map((m) => `${file}:${m.lineNum}:${m.linePos}: ${m.message}`);
      return `kernel ${label} failed to compile: ${lines.length ? lines.join('; ') : err.message.split('\n')[0]}`;
    });
    kernel = { spec, label, params: paramFields(code, file), pipeline, layout, compiled };
    this.kernels.set(key, kernel);
    this.unchecked.push(kernel);
    return kernel;
  }

  all(): Kernel[] {
    return [...this.kernels.values()];
  }

  /** Compile errors of the kernels created since the last call (each reported once). */
  async failures(): Promise<string[]> {
    const unchecked = this.unchecked;
    this.unchecked = [];
    const msgs = await Promise.all(unchecked.map((k) => k.compiled));
    return msgs.filter((m): m is string => m !== null);
  }
}
