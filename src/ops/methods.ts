// Tensor methods for the common ops, as torch writes them (`x.mul(w).sum()`). The tensor layer
// cannot import the ops (they are built on it), so the methods are declared onto the Tensor
// interface here (module augmentation) and attached to its prototype in this one place, as TF.js
// does for its chained ops. Importing the ops (src/ops/index.ts, or the package) attaches them.
import { Tensor } from '../tensor/index.ts';
import { add, mul, relu, sub } from './elementwise.ts';
import { matmul } from './matmul.ts';
import { mean, sum, type ReduceOptions } from './reduce.ts';
import { softmax } from './softmax.ts';

declare module '../tensor/tensor.ts' {
  interface Tensor {
    /** this + other (a tensor that broadcasts with this, or a number) */
    add(other: Tensor | number): Tensor;
    /** this - other (a tensor that broadcasts with this, or a number) */
    sub(other: Tensor | number): Tensor;
    /** this * other elementwise (a tensor that broadcasts with this, or a number) */
    mul(other: Tensor | number): Tensor;
    /** matrix product: this [M, K] times other [K, N] -> [M, N] */
    matmul(other: Tensor): Tensor;
    /** the sum over `axes` (all: a 0-d tensor), as torch's x.sum(dim, keepdim) */
    sum(opts?: ReduceOptions): Tensor;
    /** the mean over `axes` (all: a 0-d tensor), as torch's x.mean(dim, keepdim) */
    mean(opts?: ReduceOptions): Tensor;
    /** max(this, 0) */
    relu(): Tensor;
    /** softmax over the last dimension of [N, C] */
    softmax(): Tensor;
  }
}

const methods: ThisType<Tensor> & Pick<Tensor, 'add' | 'sub' | 'mul' | 'matmul' | 'sum' | 'mean' | 'relu' | 'softmax'> = {
  add(other) {
    return add(this, other);
  },
  sub(other) {
    return sub(this, other);
  },
  mul(other) {
    return mul(this, other);
  },
  matmul(other) {
    return matmul(this, other);
  },
  sum(opts) {
    return sum(this, opts);
  },
  mean(opts) {
    return mean(this, opts);
  },
  relu() {
    return relu(this);
  },
  softmax() {
    return softmax(this);
  },
};

Object.assign(Tensor.prototype, methods);
