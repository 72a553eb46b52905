#!/usr/bin/python3
"""PyTorch as the reference implementation for gpunet's tests.

Reads a JSON list of cases from argv[1] and writes the results to argv[2]. A case:
  {"inputs": {"x": {"shape": [..], "data": [..], "grad": true}, ...},
   "expr": "F.conv2d(x, w, b, stride=2)",   # evaluated with torch, F, nn and the inputs in scope
   "prelude": "...",                        # optional statements run before expr (same scope)
   "dy": [..],                              # optional: gradient of the output, to run backward
   "outputs": ["running_mean", ...],        # optional: extra names to return after evaluation
   "dtype": "float64" | "float32"}           # float64 unless said
The result per case: {"out": [..], "shape": [..], "grads": {"x": [..]}, "extra": {"name": [..]}}.
Everything is computed on the CPU.
"""
import json
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


def tensor(spec, dtype):
    t = torch.tensor(spec["data"], dtype=dtype).reshape(spec["shape"])
    if spec.get("int"):
        t = t.long()
    elif spec.get("grad"):
        t.requires_grad_(True)
    return t


def flat(t):
    if isinstance(t, torch.Tensor):
        return t.detach().double().reshape(-1).tolist()
    return [float(t)]


def run(case):
    dtype = torch.float32 if case.get("dtype") == "float32" else torch.float64
    scope = {"torch": torch, "F": F, "nn": nn}
    inputs = {k: tensor(v, dtype) for k, v in case["inputs"].items()}
    scope.update(inputs)
    if case.get("prelude"):
        exec(case["prelude"], scope)
    out = eval(case["expr"], scope)
    res = {"out": flat(out), "shape": list(out.shape) if isinstance(out, torch.Tensor) else []}
    if case.get("dy") is not None:
        dy = torch.tensor(case["dy"], dtype=out.dtype).reshape(out.shape)
        out.backward(dy)
        res["grads"] = {k: flat(t.grad) for k, t in inputs.items() if t.requires_grad and t.grad is not None}
    res["extra"] = {k: flat(scope[k]) for k in case.get("outputs", [])}
    return res


def main():
    torch.manual_seed(0)
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    results = [run(c) for c in cases]
    with open(sys.argv[2], "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
