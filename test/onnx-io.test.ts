// ONNX reading and writing, checked against Python's `onnx` package (the reference reader/writer and
// checker), the official conformance files, the real Darknet-tiny export and onnxruntime-node.
// Python writes the fixture models at test time (typed fields, raw_data, old-style initializer
// inputs, external data, escaping external paths, malformed tensors) and summarizes every model it
// reads in the same form as `summary` below, so each parse is compared field by field, tensors by
// sha256 of their bytes (bit-exact).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataType, type AttrValue, type OnnxModel, type OnnxTensor } from '../src/onnx/ir.ts';
import { OnnxError, parseOnnx, parseTensor, readOnnx } from '../src/onnx/read.ts';
import { encodeOnnx, saveOnnx } from '../src/onnx/write.ts';
import { output } from './binary.ts';

const SHARED = path.join(import.meta.dirname, '..', '..', 'shared');
const DARKNET = path.join(SHARED, 'weights', 'darknet-tiny-imagenet.onnx');
const NODE_CASES = '/usr/share/libonnx-testdata/data/node';
/** conformance cases covering conv/pool attrs, float attrs, int64/int8/float16/double tensors, a tensor attribute */
const CASES = [
  'test_conv_with_strides_padding',
  'test_gemm_all_attributes',
  'test_reshape_reordered_all_dims',
  'test_cast_FLOAT16_to_FLOAT',
  'test_cast_DOUBLE_to_FLOAT',
  'test_constant',
  'test_clip_default_int8_min',
  'test_maxpool_2d_default',
  'test_batchnorm_epsilon',
  'test_slice_end_out_of_bounds',
];

// Writes the fixtures into argv[1], checks the model gpunet wrote there (ours.onnx) with onnx's
// checker, and prints JSON: {ours, oursCheck, fixtures: {file: summary}, cases: {case: {model, tensors}}}.
const PYTHON = String.raw`
import sys, os, json, hashlib
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto as T

d, cases = sys.argv[1], sys.argv[2:]

def sha(a): return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()
def tsum(t): return {'name': t.name, 'dims': list(t.dims), 'dataType': t.data_type, 'sha': sha(numpy_helper.to_array(t))}
def attr(a):
    v = helper.get_attribute_value(a)
    if a.type == onnx.AttributeProto.TENSOR: return tsum(v)
    if isinstance(v, bytes): return v.decode()
    if isinstance(v, list): return [x.decode() if isinstance(x, bytes) else x for x in v]
    return v
def vi(v):
    t = v.type.tensor_type
    return {'name': v.name, 'elemType': t.elem_type,
            'shape': [x.dim_value if x.HasField('dim_value') else x.dim_param if x.HasField('dim_param') else None for x in t.shape.dim]}
def summary(m):
    g = m.graph
    inits = {t.name for t in g.initializer}
    return {'irVersion': m.ir_version, 'opset': [o.version for o in m.opset_import if o.domain in ('', 'ai.onnx')][0],
            'nodes': [{'name': n.name, 'opType': n.op_type, 'domain': n.domain, 'inputs': list(n.input), 'outputs': list(n.output),
                       'attrs': {a.name: attr(a) for a in n.attribute}} for n in g.node],
            'initializers': [tsum(t) for t in g.initializer],
            'inputs': [vi(v) for v in g.input if v.name not in inits], 'outputs': [vi(v) for v in g.output],
            'metadata': {p.key: p.value for p in m.metadata_props}}

out = {'fixtures': {}, 'cases': {}}
ours = onnx.load(os.path.join(d, 'ours.onnx'))
try:
    onnx.checker.check_model(ours, full_check=True)
    out['oursCheck'] = 'ok'
except Exception as e:
    out['oursCheck'] = str(e)
out['ours'] = summary(ours)

def save(m, name):
    p = os.path.join(d, name)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, 'wb') as f: f.write(m.SerializeToString())
    out['fixtures'][name] = summary(onnx.load(p))

X = helper.make_tensor_value_info('X', T.FLOAT, ['N', 3])
Y = helper.make_tensor_value_info('Y', T.FLOAT, [3, None])
typed_inits = [
    helper.make_tensor('W', T.FLOAT, [2, 3], [0.5, -1.25, 2, 3.5, 1e-3, -7]),
    helper.make_tensor('S', T.INT64, [2], [3, -1]),
    helper.make_tensor('big', T.INT64, [2], [2**62 + 3, -5]),
    helper.make_tensor('dbl', T.DOUBLE, [2], [0.1, -2.5]),
    helper.make_tensor('i32', T.INT32, [3], [1, -2, 2**31 - 1]),
    helper.make_tensor('half', T.FLOAT16, [2], np.array([1.5, -0.25], dtype=np.float16)),
    helper.make_tensor('flags', T.BOOL, [3], [True, False, True]),
    helper.make_tensor('i8', T.INT8, [2], [-128, 127]),
    helper.make_tensor('u8', T.UINT8, [2], [0, 255]),
    helper.make_tensor('scalar', T.FLOAT, [], [4.25]),
    helper.make_tensor('empty', T.FLOAT, [0, 3], []),
]
nodes = [
    helper.make_node('Add', ['X', 'W'], ['A'], name='add'),
    helper.make_node('LeakyRelu', ['A'], ['B'], name='lrelu', alpha=1.0),
    helper.make_node('Reshape', ['B', 'S'], ['Y'], name='reshape'),
    helper.make_node('Constant', [], ['C'], name='const', value=helper.make_tensor('cv', T.FLOAT, [2], [1.5, 2.5])),
    helper.make_node('Identity', ['Y'], ['Z'], name='', note='h\u00e9llo', tags=['a', 'b'], ks=[1, 2], fs=[0.5, 1.0]),
]
def model(inits, inputs=[X], ir=onnx.IR_VERSION, opset=13, nodes=nodes):
    return helper.make_model(helper.make_graph(nodes, 'g', inputs, [Y], inits), opset_imports=[helper.make_opsetid('', opset)], ir_version=ir)

typed = model(typed_inits)
helper.set_model_props(typed, {'gpunet.classes': '["ant","bee"]', 'note': 'typed fields'})
save(typed, 'typed.onnx')
raw_inits = [numpy_helper.from_array(numpy_helper.to_array(t), t.name) for t in typed_inits]
save(model(raw_inits), 'raw.onnx')
save(model(typed_inits[:2], inputs=[X, helper.make_tensor_value_info('W', T.FLOAT, [2, 3]),
                                    helper.make_tensor_value_info('S', T.INT64, [2])], ir=3, opset=9, nodes=nodes[:3]), 'old.onnx')

ext = model(raw_inits)
os.makedirs(os.path.join(d, 'ext'))
onnx.save_model(ext, os.path.join(d, 'ext', 'model.onnx'), save_as_external_data=True, all_tensors_to_one_file=True,
                location='weights.bin', size_threshold=0)
out['fixtures']['ext/model.onnx'] = summary(onnx.load(os.path.join(d, 'ext', 'model.onnx')))

# external data that must be refused because it resolves outside the model's folder, and a control
w_bytes = numpy_helper.to_array(typed_inits[0]).tobytes()
os.makedirs(os.path.join(d, 'esc'))
for p in ['outside.bin', 'esc/inside.bin']:
    with open(os.path.join(d, p), 'wb') as f: f.write(w_bytes)
os.symlink('../outside.bin', os.path.join(d, 'esc', 'link.bin'))
def external(location):
    t = T(name='W', data_type=T.FLOAT, dims=[2, 3])
    t.data_location = T.EXTERNAL
    for k, v in [('location', location), ('offset', '0'), ('length', str(len(w_bytes)))]:
        e = t.external_data.add(); e.key = k; e.value = v
    return model([t, typed_inits[1]], nodes=nodes[:3])
for name, loc in [('ok', 'inside.bin'), ('up', '../outside.bin'), ('abs', os.path.join(d, 'outside.bin')), ('link', 'link.bin')]:
    with open(os.path.join(d, 'esc', name + '.onnx'), 'wb') as f: f.write(external(loc).SerializeToString())

# malformed models
def bad(name, t):
    with open(os.path.join(d, name), 'wb') as f: f.write(model([t, typed_inits[1]], nodes=nodes[:3]).SerializeToString())
negative = helper.make_tensor('W', T.FLOAT, [2, 3], [1, 2, 3, 4, 5, 6]); negative.dims[0] = -2
bad('negative.onnx', negative)
huge = helper.make_tensor('W', T.FLOAT, [2, 3], [1, 2, 3, 4, 5, 6]); huge.dims[:] = [1 << 20, 1 << 20, 4]
bad('huge.onnx', huge)
short = numpy_helper.from_array(np.ones([2, 3], np.float32), 'W'); short.raw_data = short.raw_data[:20]
bad('short.onnx', short)
bad('nodata.onnx', T(name='W', data_type=T.FLOAT, dims=[2, 3]))
with open(os.path.join(d, 'nograph.onnx'), 'wb') as f: f.write(onnx.ModelProto(ir_version=8).SerializeToString())

for c in cases:
    ds = os.path.join(c, 'test_data_set_0')
    tensors = {}
    for f in sorted(os.listdir(ds)):
        t = onnx.TensorProto()
        with open(os.path.join(ds, f), 'rb') as fh: t.ParseFromString(fh.read())
        tensors[f] = tsum(t)
    out['cases'][os.path.basename(c)] = {'model': summary(onnx.load(os.path.join(c, 'model.onnx'))), 'tensors': tensors}
print(json.dumps(out))
`;

function tensorSummary(t: OnnxTensor) {
  const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return { name: t.name, dims: t.dims, dataType: t.dataType, sha: createHash('sha256').update(bytes).digest('hex') };
}

const isTensor = (a: AttrValue): a is OnnxTensor => typeof a === 'object' && !Array.isArray(a);

/** The model in the Python script's summary form. */
function summary(m: OnnxModel) {
  return {
    irVersion: m.irVersion,
    opset: m.opset,
    nodes: m.graph.nodes.map((n) => ({
      ...n,
      attrs: Object.fromEntries(Object.entries(n.attrs).map(([k, v]) => [k, isTensor(v) ? tensorSummary(v) : v])),
    })),
    initializers: [...m.graph.initializers.values()].map(tensorSummary),
    inputs: m.graph.inputs,
    outputs: m.graph.outputs,
    metadata: m.metadata,
  };
}

/** The OnnxError thrown by `run`, checked to be one line naming `file`. */
function onnxError(run: () => unknown, file: string): string {
  let err: unknown;
  try {
    run();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(OnnxError);
  const message = (err as Error).message;
  expect(message).not.toContain('\n');
  expect(message.startsWith(`${file}: `)).toBe(true);
  return message;
}

/** Y = Relu(X W^T + B), Z = LeakyRelu(X W^T + B, alpha 2): float attrs with whole values (alpha=1, 2). */
function gemmModel(): OnnxModel {
  const w = Float32Array.from({ length: 12 }, (_, i) => ((i * 7) % 11) / 4 - 1.3);
  const b = Float32Array.from([0.25, -0.5, 1]);
  return {
    irVersion: 0,
    opset: 13,
    producerName: 'gpunet-test',
    graph: {
      name: 'gemm_relu',
      nodes: [
        { name: 'fc', opType: 'Gemm', domain: '', inputs: ['x', 'w', 'b'], outputs: ['g'], attrs: { transB: 1, alpha: 1, beta: 1 } },
        { name: 'relu', opType: 'Relu', domain: '', inputs: ['g'], outputs: ['y'], attrs: {} },
        { name: 'leaky', opType: 'LeakyRelu', domain: '', inputs: ['g'], outputs: ['z'], attrs: { alpha: 2 } },
      ],
      initializers: new Map([
        ['w', { name: 'w', dims: [3, 4], dataType: DataType.FLOAT, data: w }],
        ['b', { name: 'b', dims: [3], dataType: DataType.FLOAT, data: b }],
      ]),
      inputs: [{ name: 'x', elemType: DataType.FLOAT, shape: ['batch', 4] }],
      outputs: [
        { name: 'y', elemType: DataType.FLOAT, shape: ['batch', 3] },
        { name: 'z', elemType: DataType.FLOAT, shape: ['batch', 3] },
      ],
    },
    metadata: { 'gpunet.classes': '["a","b","c"]', 'gpunet.input_size': '4' },
  };
}

let dir: string;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
let py: any;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gpunet-onnx-io-'));
  saveOnnx(gemmModel(), path.join(dir, 'ours.onnx'));
  const stdout = await output('/usr/bin/python3', ['-c', PYTHON, dir, ...CASES.map((c) => path.join(NODE_CASES, c))]);
  py = JSON.parse(stdout);
}, 60_000);

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('readOnnx', () => {
  it('reads the real Darknet-tiny export', () => {
    const m = readOnnx(DARKNET);
    let params = 0;
    for (const t of m.graph.initializers.values()) {
      expect(t.data).toBeInstanceOf(Float32Array);
      params += t.data.length;
    }
    // 1,042,104 trainable parameters before batchnorm folding (README): the folded convolutions
    // carry one bias per former batchnorm channel instead of gamma and beta, 2,192 fewer
    expect(params).toBe(1_039_912);
    expect(m.opset).toBe(13);
    expect(m.graph.inputs).toEqual([{ name: 'input', elemType: DataType.FLOAT, shape: ['batch', 3, 224, 224] }]);
    expect(m.graph.outputs).toEqual([{ name: 'logits', elemType: DataType.FLOAT, shape: ['batch', 1000] }]);
    expect(new Set(m.graph.nodes.map((n) => n.opType))).toEqual(new Set(['Conv', 'LeakyRelu', 'MaxPool', 'GlobalAveragePool', 'Flatten']));
    const leaky = m.graph.nodes.find((n) => n.opType === 'LeakyRelu')!;
    expect(leaky.attrs.alpha).toBe(Math.fround(0.1));
    expect(m.graph.nodes[0].attrs).toEqual({ dilations: [1, 1], group: 1, kernel_shape: [3, 3], pads: [1, 1, 1, 1], strides: [1, 1] });
  });

  it('reads official conformance models and test tensors as onnx does', () => {
    for (const c of CASES) {
      const m = readOnnx(path.join(NODE_CASES, c, 'model.onnx'));
      expect(summary(m), c).toEqual(py.cases[c].model);
      for (const [file, expected] of Object.entries(py.cases[c].tensors)) {
        const t = parseTensor(fs.readFileSync(path.join(NODE_CASES, c, 'test_data_set_0', file)));
        expect(tensorSummary(t), `${c}/${file}`).toEqual(expected);
      }
    }
    const half = parseTensor(fs.readFileSync(path.join(NODE_CASES, 'test_cast_FLOAT16_to_FLOAT/test_data_set_0/input_0.pb')));
    expect(half.data).toBeInstanceOf(Uint16Array);
    const stringTensor = path.join(NODE_CASES, 'test_cast_STRING_to_FLOAT/test_data_set_0/input_0.pb');
    expect(onnxError(() => parseTensor(fs.readFileSync(stringTensor), { source: stringTensor }), stringTensor)).toMatch(/unsupported data type 8/);
  });

  it('reads typed fields, raw_data and external data into the same tensors', () => {
    const typed = readOnnx(path.join(dir, 'typed.onnx'));
    expect(summary(typed)).toEqual(py.fixtures['typed.onnx']);
    expect(summary(readOnnx(path.join(dir, 'raw.onnx')))).toEqual(py.fixtures['raw.onnx']);
    expect(summary(readOnnx(path.join(dir, 'ext/model.onnx')))).toEqual(py.fixtures['ext/model.onnx']);
    const raw = readOnnx(path.join(dir, 'raw.onnx'));
    expect(summary(raw).initializers).toEqual(summary(typed).initializers);

    const init = (name: string) => typed.graph.initializers.get(name)!.data;
    expect(init('W')).toEqual(Float32Array.from([0.5, -1.25, 2, 3.5, 1e-3, -7]));
    expect(init('big')).toEqual(BigInt64Array.from([2n ** 62n + 3n, -5n]));
    expect(init('half')).toEqual(Uint16Array.from([0x3e00, 0xb400])); // float16 bits of 1.5, -0.25
    expect(init('i32')).toEqual(Int32Array.from([1, -2, 2 ** 31 - 1]));
    expect(typed.graph.initializers.get('scalar')).toMatchObject({ dims: [], data: Float32Array.from([4.25]) });
    expect(typed.graph.initializers.get('empty')!.data.length).toBe(0);
    expect(typed.graph.inputs).toEqual([{ name: 'X', elemType: DataType.FLOAT, shape: ['N', 3] }]);
    expect(typed.graph.outputs[0].shape).toEqual([3, null]);
    expect(typed.graph.nodes[4].attrs).toEqual({ note: 'héllo', tags: ['a', 'b'], ks: [1, 2], fs: [0.5, 1] });
    expect(typed.metadata).toEqual({ 'gpunet.classes': '["ant","bee"]', note: 'typed fields' });
  });

  it('leaves initializers listed as graph inputs (IR version 3) out of the inputs', () => {
    const m = readOnnx(path.join(dir, 'old.onnx'));
    expect(m.irVersion).toBe(3);
    expect(m.opset).toBe(9);
    expect(m.graph.inputs.map((v) => v.name)).toEqual(['X']);
    expect([...m.graph.initializers.keys()]).toEqual(['W', 'S']);
    expect(summary(m)).toEqual(py.fixtures['old.onnx']);
  });

  it('refuses external data outside the model folder', () => {
    const esc = (name: string) => path.join(dir, 'esc', `${name}.onnx`);
    expect(readOnnx(esc('ok')).graph.initializers.get('W')!.data).toEqual(Float32Array.from([0.5, -1.25, 2, 3.5, 1e-3, -7]));
    for (const name of ['up', 'abs', 'link']) {
      expect(onnxError(() => readOnnx(esc(name)), esc(name))).toMatch(/tensor 'W'.*escapes the model's folder/);
    }
    const bytes = fs.readFileSync(esc('ok'));
    expect(onnxError(() => parseOnnx(bytes, { source: 'ok.onnx' }), 'ok.onnx')).toMatch(/model's folder is unknown/);
  });

  it('refuses malformed files with one line naming the file', () => {
    const file = (name: string) => path.join(dir, name);
    const typedBytes = fs.readFileSync(file('typed.onnx'));
    fs.writeFileSync(file('truncated.onnx'), typedBytes.subarray(0, Math.floor(typedBytes.length / 2)));
    fs.writeFileSync(file('text.onnx'), 'this is not an ONNX model\n');
    expect(onnxError(() => readOnnx(file('truncated.onnx')), file('truncated.onnx'))).toMatch(/not an ONNX file or truncated/);
    expect(onnxError(() => readOnnx(file('text.onnx')), file('text.onnx'))).toMatch(/not an ONNX/);
    const jpeg = path.join(SHARED, 'data', 'imagenet', 'samoyed.jpg');
    expect(onnxError(() => readOnnx(jpeg), jpeg)).toMatch(/not an ONNX/);
    expect(onnxError(() => readOnnx(file('nograph.onnx')), file('nograph.onnx'))).toMatch(/no graph/);
    expect(onnxError(() => readOnnx(file('negative.onnx')), file('negative.onnx'))).toMatch(/tensor 'W' has an absurd dimension -2/);
    expect(onnxError(() => readOnnx(file('huge.onnx')), file('huge.onnx'))).toMatch(/tensor 'W' has an absurd shape \[1048576,1048576,4\]/);
    expect(onnxError(() => readOnnx(file('short.onnx')), file('short.onnx'))).toMatch(/tensor 'W' of shape \[2,3\] needs 6 float values, raw_data holds 5/);
    expect(onnxError(() => readOnnx(file('nodata.onnx')), file('nodata.onnx'))).toMatch(/tensor 'W' of shape \[2,3\] has no data/);
    expect(onnxError(() => readOnnx(file('missing.onnx')), file('missing.onnx'))).toMatch(/: no such file$/);
  });
});

describe('encodeOnnx / saveOnnx', () => {
  it('round-trips every model bit-exactly', () => {
    const models = [
      DARKNET,
      ...['typed.onnx', 'raw.onnx', 'old.onnx', 'ext/model.onnx', 'ours.onnx'].map((f) => path.join(dir, f)),
      ...CASES.map((c) => path.join(NODE_CASES, c, 'model.onnx')),
    ];
    for (const file of models) {
      const m = readOnnx(file);
      expect(summary(parseOnnx(encodeOnnx(m))), file).toEqual(summary(m));
    }
  });

  it('keeps int64 sentinels and reads from a buffer at an odd offset', () => {
    const model = gemmModel();
    // Slice-1 style ends: INT64_MAX reads as 2^63 (rounded), which must not wrap to INT64_MIN on the way out
    model.graph.nodes.push({ name: 's', opType: 'Slice', domain: '', inputs: ['y'], outputs: ['s'], attrs: { ends: [2 ** 63, -(2 ** 63), 3], end: 2 ** 64 } });
    const bytes = encodeOnnx(model);
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    const back = parseOnnx(shifted.subarray(1));
    expect(back.graph.nodes[3].attrs).toEqual({ ends: [2 ** 63, -(2 ** 63), 3], end: 2 ** 63 });
    expect(summary(back)).toEqual(summary(parseOnnx(bytes)));
  });

  it('writes a model onnx checks clean and onnxruntime runs', async () => {
    const model = gemmModel();
    expect(py.oursCheck).toBe('ok');
    expect(py.ours).toEqual({ ...summary(model), irVersion: 8 });

    const session = await ort.InferenceSession.create(path.join(dir, 'ours.onnx'));
    const x = Float32Array.from({ length: 8 }, (_, i) => (i % 3) - 1.1 + i / 10);
    const out = await session.run({ x: new ort.Tensor('float32', x, [2, 4]) });
    const w = model.graph.initializers.get('w')!.data as Float32Array;
    const b = model.graph.initializers.get('b')!.data as Float32Array;
    const g = Array.from({ length: 6 }, (_, k) => {
      const [n, j] = [Math.floor(k / 3), k % 3];
      let s = b[j];
      for (let i = 0; i < 4; i++) s += x[n * 4 + i] * w[j * 4 + i];
      return s;
    });
    expect(g.some((v) => v < 0) && g.some((v) => v > 0)).toBe(true);
    expect(out.y.dims).toEqual([2, 3]);
    const y = Array.from(out.y.data as Float32Array);
    const z = Array.from(out.z.data as Float32Array);
    g.forEach((v, k) => {
      expect(y[k]).toBeCloseTo(Math.max(v, 0), 5);
      expect(z[k]).toBeCloseTo(v < 0 ? 2 * v : v, 5);
    });
  });

  it('saves atomically, replacing the old file and leaving no temporary file', () => {
    const sub = fs.mkdtempSync(path.join(dir, 'save-'));
    const target = path.join(sub, 'model.onnx');
    fs.writeFileSync(target, 'old contents');
    const model = gemmModel();
    saveOnnx(model, target);
    expect(fs.readdirSync(sub)).toEqual(['model.onnx']);
    expect(summary(readOnnx(target))).toEqual({ ...summary(model), irVersion: 8 });
    expect(() => saveOnnx(model, path.join(sub, 'no-such-folder', 'model.onnx'))).toThrow(/no-such-folder does not exist/);
    expect(fs.readdirSync(sub)).toEqual(['model.onnx']);
  });
});
