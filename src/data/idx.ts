// MNIST-style data sets in LeCun's IDX format (Fashion-MNIST, MNIST, KMNIST): a big-endian header
// (two zero bytes, a type code, the number of dimensions, each dimension as a u32) and the values,
// gzipped or not. Debian's `dataset-fashion-mnist` installs Fashion-MNIST under
// /usr/share/datasets/fashion-mnist/ as {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { type FileError, readRegularFile } from '../io/files.ts';
import { DataError } from './folder.ts';

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'] as const;

/** Fashion-MNIST's training-set pixel mean and standard deviation (of values in [0, 1]). */
export const FASHION_MNIST_NORMALIZATION = { mean: 0.286, std: 0.353 };

const UNSIGNED_BYTE = 0x08;

/** The dimensions and bytes of an IDX file of unsigned bytes (the only type MNIST sets use). */
export function readIdx(path: string): { dims: number[]; data: Uint8Array } {
  let bytes: Uint8Array;
  try {
    bytes = readRegularFile(path);
  } catch (e) {
    throw new DataError(path, (e as FileError).reason);
  }
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = gunzipSync(bytes);
    } catch (e) {
      throw new DataError(path, `not a valid gzip file (${(e as Error).message}): download it again`);
    }
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 4 || view.getUint16(0) !== 0) throw new DataError(path, 'not an IDX file (it does not start with two zero bytes)');
  if (bytes[2] !== UNSIGNED_BYTE) throw new DataError(path, `IDX type 0x${bytes[2].toString(16)} is not unsigned bytes (0x08), which MNIST-style sets use`);
  const rank = bytes[3];
  const header = 4 + 4 * rank;
  if (rank === 0 || bytes.length < header) throw new DataError(path, `truncated IDX header (${bytes.length} bytes for ${rank} dimensions)`);
  const dims = Array.from({ length: rank }, (_, i) => view.getUint32(4 + 4 * i));
  const count = dims.reduce((a, b) => a * b, 1);
  if (bytes.length - header !== count) {
    throw new DataError(path, `holds ${bytes.length - header} values where its header [${dims.join(', ')}] needs ${count}: the file is truncated or corrupt`);
  }
  return { dims, data: bytes.subarray(header) };
}

export interface MnistSet {
  /** [n, 1, 28, 28], normalised with FASHION_MNIST_NORMALIZATION */
  images: Float32Array;
  labels: number[];
  /** image side */
  size: number;
  classes: readonly string[];
}

export interface FashionMnistOptions {
  /** the folder of the four .gz files (default: Debian's) */
  dir?: string;
  /** only the first `limit` images (a quick run) */
  limit?: number;
}

/** Fashion-MNIST's 60,000 training or 10,000 test images, normalised, with their labels. */
export function loadFashionMnist(split: 'train' | 'test', opts: FashionMnistOptions = {}): MnistSet {
  const dir = opts.dir ?? FASHION_MNIST_DIR;
  const stem = split === 'train' ? 'train' : 't10k';
  // gzipped as distributed, or unpacked
  const file = (kind: string) => {
    const plain = join(dir, `${stem}-${kind}-ubyte`);
    return existsSync(plain) ? plain : `${plain}.gz`;
  };
  if (!existsSync(file('images-idx3'))) {
    throw new DataError(dir, `no Fashion-MNIST ${split} images (${stem}-images-idx3-ubyte.gz): apt-get install dataset-fashion-mnist, or pass the folder holding the four IDX files`);
  }
  const images = readIdx(file('images-idx3'));
  const labels = readIdx(file('labels-idx1'));
  const [n, h, w] = images.dims;
  if (images.dims.length !== 3 || h !== w) throw new DataError(file('images-idx3'), `expected [n, side, side] images, got [${images.dims.join(', ')}]`);
  if (labels.dims.length !== 1 || labels.dims[0] !== n) throw new DataError(file('labels-idx1'), `${labels.dims[0]} labels for ${n} images`);
  const count = Math.min(n, opts.limit ?? n);
  const { mean, std } = FASHION_MNIST_NORMALIZATION;
  const out = new Float32Array(count * h * w);
  for (let i = 0; i < out.length; i++) out[i] = (images.data[i] / 255 - mean) / std;
  const classes = FASHION_MNIST_CLASSES;
  const labelList = Array.from(labels.data.subarray(0, count));
  const bad = labelList.findIndex((l) => l >= classes.length);
  if (bad >= 0) throw new DataError(file('labels-idx1'), `label ${labelList[bad]} of image ${bad} is not one of the ${classes.length} classes`);
  return { images: out, labels: labelList, size: h, classes };
}
