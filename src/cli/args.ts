// Numeric option values, checked: a bad one is a one-line UsageError naming the flag.
import { UsageError } from './errors.ts';

export function positiveNumber(flag: string, v: string | undefined): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${flag} must be a positive number, got '${v}'`);
  return n;
}

export function nonNegative(flag: string, v: string | undefined): number {
  const n = Number(v);
  if (v === undefined || !Number.isFinite(n) || n < 0) throw new UsageError(`--${flag} must be a non-negative number, got '${v}'`);
  return n;
}

export function positiveInt(flag: string, v: string | undefined): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new UsageError(`--${flag} must be a positive integer, got '${v}'`);
  return n;
}
