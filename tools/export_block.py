#!/usr/bin/python3
"""Exports one building block of a torchvision model to ONNX, with PyTorch's output and gradients.

  export_block.py OUT_DIR --block NAME [--seed N]

Blocks (small widths, torchvision's own classes, so the exported graph is what a whole model's
export holds for that block):
  layernorm     Linear -> LayerNorm -> GELU -> Linear on [N, C] (the decomposed LayerNorm pattern)
  mbconv        EfficientNet's MBConv: 1x1 expand, depthwise 3x3, squeeze-excitation (SiLU, Sigmoid), 1x1 project, residual
  mobilenet_v3  MobileNetV3's InvertedResidual with squeeze-excitation (Hardsigmoid) and Hardswish
  convnext      ConvNeXt's CNBlock: depthwise 7x7, permute, LayerNorm, Linear, GELU, Linear, layer scale, permute, residual
  vit           ViT's EncoderBlock: LayerNorm, multi-head self-attention, LayerNorm, MLP (GELU), residuals

Writes into OUT_DIR:
  model.onnx   opset 14, input 'input', output 'output'. Exported in training mode, so that
               BatchNormalization stays a node of its own with the state-dict names (an eval-mode
               export folds it into the conv before it); dropout and stochastic depth are 0 and
               the running statistics are the ones the reference used.
  input.bin    float32 input, seeded N(0,1);  dy.bin  float32 gradient of the output, seeded N(0,1)
  output.bin   float32: PyTorch's output in eval mode
  grads.json   {"<initializer name>": [gradient of every element], ...} for every parameter,
               and {"input": [...]}: the gradients of sum(output * dy) in eval mode
  meta.json    {"block", "input_shape", "output_shape"}
Run with Debian's /usr/bin/python3 (torch 1.13, torchvision, onnx).
"""
import argparse
import copy
import json
import os
import warnings
from functools import partial

import torch
import torch.nn as nn
import torchvision
from torchvision.models import convnext, efficientnet, mobilenetv3, vision_transformer


def build(name):
    """The block and its input shape."""
    if name == "layernorm":
        return nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.GELU(), nn.Linear(8, 5)), [3, 6]
    if name == "mbconv":
        cfg = efficientnet.MBConvConfig(expand_ratio=4, kernel=3, stride=1, input_channels=8, out_channels=8, num_layers=1)
        return efficientnet.MBConv(cfg, stochastic_depth_prob=0.0, norm_layer=nn.BatchNorm2d), [2, 8, 7, 5]
    if name == "mobilenet_v3":
        cfg = mobilenetv3.InvertedResidualConfig(8, 3, 16, 8, True, "HS", 1, 1, 1.0)
        return mobilenetv3.InvertedResidual(cfg, norm_layer=nn.BatchNorm2d), [2, 8, 7, 5]
    if name == "convnext":
        block = convnext.CNBlock(8, layer_scale=0.5, stochastic_depth_prob=0.0, norm_layer=partial(nn.LayerNorm, eps=1e-6))
        return block, [2, 8, 7, 5]
    if name == "vit":
        return vision_transformer.EncoderBlock(num_heads=2, hidden_dim=16, mlp_dim=24, dropout=0.0, attention_dropout=0.0), [2, 5, 16]
    raise SystemExit(f"unknown block {name}")


def randomize(model, gen):
    """Every parameter and batchnorm statistic seeded and non-trivial (layer scale and LayerNorm
    affine included: their initial 0.5/1/0 would hide a wrong gradient)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=gen))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--block", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model, shape = build(args.block)
    randomize(model, gen)
    x = torch.randn(shape, generator=gen)

    model.eval()
    xg = x.clone().requires_grad_(True)
    out = model(xg)
    dy = torch.randn(out.shape, generator=gen)
    (out * dy).sum().backward()
    grads = {n: p.grad.reshape(-1).tolist() for n, p in model.named_parameters()}
    grads["input"] = xg.grad.reshape(-1).tolist()

    # export a copy in training mode (batchnorm kept); tracing it moves the copy's running statistics,
    # so the file gets the reference's back
    exported = copy.deepcopy(model).train()
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, "model.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(exported, x, path, opset_version=14, training=torch.onnx.TrainingMode.TRAINING,
                          do_constant_folding=False, input_names=["input"], output_names=["output"])
    restore_buffers(path, model)

    x.numpy().astype("<f4").tofile(os.path.join(args.out_dir, "input.bin"))
    dy.numpy().astype("<f4").tofile(os.path.join(args.out_dir, "dy.bin"))
    out.detach().numpy().astype("<f4").tofile(os.path.join(args.out_dir, "output.bin"))
    with open(os.path.join(args.out_dir, "grads.json"), "w") as f:
        json.dump(grads, f)
    with open(os.path.join(args.out_dir, "meta.json"), "w") as f:
        json.dump({"block": args.block, "input_shape": list(x.shape), "output_shape": list(out.shape)}, f)


def restore_buffers(path, model):
    """Writes the model's buffers (running statistics) over the initializers of the same name."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(path)
    state = dict(model.named_buffers())
    for t in proto.graph.initializer:
        if t.name in state:
            t.CopyFrom(numpy_helper.from_array(state[t.name].numpy(), t.name))
    onnx.save(proto, path)


if __name__ == "__main__":
    main()
