export { add, elementwise, ELEMENTWISE, leakyRelu, mul, relu, scale, sub, type ElementwiseName } from './elementwise.ts';
