"""PyTorch eager baseline for netc's benchmark: the same LeNet and MLP, the same batch sizes and
thread count, random data of MNIST's shape. Prints one JSON object per measurement.

Usage: python pytorch_bench.py --model lenet|mlp --threads 2 [--seconds 3]
"""

import argparse
import json
import resource
import time

import torch
from torch import nn


def lenet() -> nn.Module:
    # examples/lenet.net: conv5x5x20, maxpool2, conv5x5x50, maxpool2, conv4x4x500, relu, conv1x1x10
    return nn.Sequential(
        nn.Conv2d(1, 20, 5), nn.MaxPool2d(2, 2),
        nn.Conv2d(20, 50, 5), nn.MaxPool2d(2, 2),
        nn.Conv2d(50, 500, 4), nn.ReLU(),
        nn.Conv2d(500, 10, 1), nn.Flatten(),
    )


def mlp() -> nn.Module:
    # examples/mlp.net: 784-500-10
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 500), nn.ReLU(), nn.Linear(500, 10))


def measure(step, images_per_call: int, seconds: float) -> float:
    """Images per second of `step`, after a warm-up, over at least `seconds`."""
    for _ in range(3):
        step()
    calls, start = 0, time.perf_counter()
    while True:
        step()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 5:
            return calls * images_per_call / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["lenet", "mlp"], required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-batch", type=int, default=100)
    parser.add_argument("--infer-batch", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = {"lenet": lenet, "mlp": mlp}[args.model]()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=0.0005)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(args.train_batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.train_batch,))

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimizer.step()

    train = measure(train_step, args.train_batch, args.seconds)
    xi = torch.randn(args.infer_batch, 1, 28, 28)

    def infer_step() -> None:
        with torch.no_grad():
            model(xi).argmax(1)

    infer = measure(infer_step, args.infer_batch, args.seconds)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "engine": "pytorch-eager", "version": torch.__version__, "model": args.model, "threads": args.threads,
        "train_images_per_sec": train, "infer_images_per_sec": infer, "peak_mib": peak_mib,
    }))


if __name__ == "__main__":
    main()
