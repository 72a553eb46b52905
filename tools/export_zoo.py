#!/usr/bin/python3
"""Exports torchvision classifiers with seeded random weights to ONNX, as PyTorch itself exports
them, into a cache: what test/zoo.test.ts checks gpunet's logits against.

  export_zoo.py CACHE_DIR ARCH:SIZE:BATCH [ARCH:SIZE:BATCH ...]

Each model goes to CACHE_DIR/torch-<torch version>-<hash of this script>/<ARCH>-<SIZE>-b<BATCH>/;
a folder already there is kept, so a rerun imports torch only when something is missing. Prints
the folders, one a line, in the order asked. Each holds:
  model.onnx      eval mode (batchnorm folded into the convs), opset 14 (PyTorch 1.13's default),
                  10 classes, input 'input' [batch,3,S,S], output 'logits' [batch,10]
  input.bin       float32 [N,3,S,S], seeded N(0,1)
  logits.bin      PyTorch's logits for it computed in float64 (stored as float32)
  logits_f32.bin  PyTorch's float32 logits (how far float32 itself is from logits.bin)
  meta.json       {"arch", "classes", "size", "batch", "opset", "seed"}

Weights: torchvision's initialisation, except that every parameter it sets to one constant (zero
biases, LayerNorm's ones and zeros, ViT's zero head, ConvNeXt's 1e-6 layer scale) gets seeded
noise around it, so that a wrong bias, scale or layer-scale path shows in the logits; batchnorm's
running statistics are the exported input's own (random ones let the signal fade in deep nets).
Run with Debian's /usr/bin/python3 (torch 1.13, torchvision, onnx).
"""
import hashlib
import json
import os
import sys
import warnings
import zlib

OPSET = 14
CLASSES = 10


def cache_root(cache_dir):
    """The folder of this torch version and this script's text (so that changing either re-exports)."""
    import importlib.util

    spec = importlib.util.find_spec("torch")
    version = {}
    with open(os.path.join(os.path.dirname(spec.origin), "version.py")) as f:
        exec(f.read(), version)  # torch's own version file: reading it is much cheaper than importing torch
    with open(__file__, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    return os.path.join(cache_dir, f"torch-{version['__version__']}-{digest}")


def export(out_dir, arch, size, batch, seed):
    import torch
    import torchvision

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from export_torchvision import batch_statistics, randomize_batchnorm

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    # GoogLeNet's and Inception's auxiliary classifiers run in training mode only (batch_statistics'
    # pass, where Inception's fails below 299 px); eval mode, which is exported, never reads them
    extra = {"aux_logits": False, "init_weights": False} if arch in ("googlenet", "inception_v3") else {}
    model = getattr(torchvision.models, arch)(num_classes=CLASSES, **extra)
    with torch.no_grad():
        for p in model.parameters():
            flat = p.reshape(-1)
            if bool((flat == flat[0]).all()):
                p.add_(0.1 * torch.randn(p.shape, generator=gen))
    randomize_batchnorm(model, gen)
    x = torch.randn(batch, 3, size, size, generator=gen)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if bns:
        batch_statistics(model, x)
        # a channel nearly constant over the few values a small input leaves (Inception's 1x1 maps
        # at 80 px) would have its rounding noise amplified up to 1/sqrt(eps) by its statistics
        for m in bns:
            m.running_var.clamp_(min=0.1 * float(m.running_var.mean()))
    model.eval()
    # the export traces one real forward pass on x: its output is PyTorch's float32 logits
    captured = []
    model.register_forward_hook(lambda module, inputs, output: captured.append(output.detach().clone()))
    tmp = out_dir + ".tmp"
    os.makedirs(tmp, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, x, os.path.join(tmp, "model.onnx"), opset_version=OPSET,
                          training=torch.onnx.TrainingMode.EVAL, do_constant_folding=True,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    (logits32,) = captured
    # the reference: PyTorch's logits in float64, the function itself rather than one float32
    # rounding of it (deep nets with random weights amplify rounding: PyTorch's own float32
    # logits are 1e-4 from these in Inception v3)
    with torch.no_grad():
        logits = model.double()(x.double())
    x.numpy().astype("<f4").tofile(os.path.join(tmp, "input.bin"))
    logits.numpy().astype("<f4").tofile(os.path.join(tmp, "logits.bin"))
    logits32.numpy().astype("<f4").tofile(os.path.join(tmp, "logits_f32.bin"))
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump({"arch": arch, "classes": CLASSES, "size": size, "batch": batch, "opset": OPSET, "seed": seed}, f)
    os.rename(tmp, out_dir)  # whole or not at all: an interrupted export is redone


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    root = cache_root(sys.argv[1])
    dirs = []
    for spec in sys.argv[2:]:
        arch, size, batch = spec.split(":")
        out_dir = os.path.join(root, f"{arch}-{size}-b{batch}")
        if not os.path.isdir(out_dir):
            export(out_dir, arch, int(size), int(batch), seed=zlib.crc32(arch.encode()) % 1000)
        dirs.append(out_dir)
    print("\n".join(dirs))


if __name__ == "__main__":
    main()
