#!/usr/bin/python3
"""Exports a torchvision classifier with seeded random weights to ONNX, with an input and PyTorch's logits.

  export_torchvision.py OUT_DIR [--arch NAME] [--mode eval|train] [--seed N]
                        [--classes K] [--size S] [--batch N] [--weights FILE.pth]

--arch is any torchvision classification model (torchvision.models.list_models(), default resnet18):
resnet18/34 map onto gpunet's ResNet module, others (squeezenet1_1, resnet50, vgg16, mobilenet_v2,
...) run as a generic graph when built only from supported ops. Some need a minimum --size: the
VGGs' AdaptiveAvgPool2d(7) exports only when its input side is a multiple of 7 (--size 224, 448...).

Writes into OUT_DIR:
  model.onnx   opset 13, input 'input' [batch,3,S,S], output 'logits' [batch,K]. --mode eval exports
               the model in eval mode, where PyTorch folds every BatchNormalization into the Conv
               before it (weights scaled, a bias added); --mode train exports it in training mode,
               which keeps the BatchNormalization nodes with their running statistics.
  input.bin    float32 [N,3,S,S], little endian, seeded N(0,1)
  logits.bin   float32 [N,K]: PyTorch's output for input.bin with the model in eval mode (both ONNX
               files describe the same eval-mode function once imported)
  meta.json    {"arch", "mode", "classes", "size", "batch"}

The batchnorm affine parameters and running statistics are set to random non-trivial values
(torchvision initializes them to 1, 0, 0, 1), so that importing a folded or a kept BN is really
tested; --bn-stats batch takes the running statistics from the exported input instead. --weights loads a torchvision state dict instead (e.g. resnet18-f37072fd.pth, ImageNet:
tools/fetch-weights). Run with Debian's /usr/bin/python3 (torch 1.13, torchvision, onnx).
"""
import argparse
import copy
import json
import os
import warnings

import torch
import torchvision


def randomize_batchnorm(model, gen):
    """gamma in [0.5, 1.5], beta ~ N(0, 0.1), running mean ~ N(0, 0.1), running var in [0.5, 2]."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            c = m.num_features
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(c, generator=gen))
                m.bias.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(c, generator=gen))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(c, generator=gen))


def batch_statistics(model, x):
    """Sets every batchnorm's running statistics to those of its input when the model runs on x (one
    training-mode pass, cumulative average): random statistics let the signal fade in deep nets
    with narrow layers (in mobilenet_v2 the two inputs' logits agree to 1e-7), making the logits
    nearly independent of the input."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--arch", choices=torchvision.models.list_models(module=torchvision.models), default="resnet18", metavar="NAME",
                    help="a torchvision classification model (default resnet18)")
    ap.add_argument("--mode", choices=["eval", "train"], default="eval")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--weights", help="a torchvision state dict (.pth) instead of random weights")
    ap.add_argument("--bn-stats", choices=["random", "batch"], default="random",
                    help="batchnorm running statistics with random weights: random, or those of the exported input")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = getattr(torchvision.models, args.arch)(num_classes=args.classes)
    if args.weights:
        model.load_state_dict(torch.load(args.weights, map_location="cpu"))
    else:
        randomize_batchnorm(model, gen)
    x = torch.randn(args.batch, 3, args.size, args.size, generator=gen)
    if args.bn_stats == "batch" and not args.weights:
        batch_statistics(model, x)

    model.eval()
    with torch.no_grad():
        logits = model(x)

    # Export a copy: tracing in training mode runs a forward pass that moves the running statistics.
    exported = copy.deepcopy(model)
    if args.mode == "train":
        exported.train()
        training = torch.onnx.TrainingMode.TRAINING
    else:
        training = torch.onnx.TrainingMode.EVAL
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, "model.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            exported,
            x,
            path,
            opset_version=13,
            training=training,
            do_constant_folding=True,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    if args.mode == "train":
        restore_running_stats(path, model)

    x.numpy().astype("<f4").tofile(os.path.join(args.out_dir, "input.bin"))
    logits.numpy().astype("<f4").tofile(os.path.join(args.out_dir, "logits.bin"))
    with open(os.path.join(args.out_dir, "meta.json"), "w") as f:
        json.dump({"arch": args.arch, "mode": args.mode, "classes": args.classes, "size": args.size, "batch": args.batch}, f)


def restore_running_stats(path, model):
    """Tracing in training mode ran a forward pass that moved the copy's running statistics; the
    export must carry the ones the logits were computed with (the training export names the BN
    initializers by their state-dict names)."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load(path)
    inits = {t.name: t for t in proto.graph.initializer}
    state = model.state_dict()
    bns = [n for n in proto.graph.node if n.op_type == "BatchNormalization"]
    assert len(bns) == sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    for n in bns:
        for name in n.input[3:5]:
            assert name in state, f"BatchNormalization {n.name} reads {name}, not a state-dict name"
            inits[name].CopyFrom(numpy_helper.from_array(state[name].numpy(), name))
    onnx.save(proto, path)

if __name__ == "__main__":
    main()
