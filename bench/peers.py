"""netc's peers on the same nets, batch sizes, thread count and random data: PyTorch eager written
as its users write it (tensors preloaded, zero_grad(set_to_none=True), torch.optim.SGD), the same
model under torch.compile (its warm-up timed separately), and JAX jit. Prints one JSON object.

Usage: python peers.py --engine eager|compile|jax --model lenet|mlp|lenet5_cifar --threads 2 [--seconds 2]

Threads: PyTorch gets torch.set_num_threads; JAX (XLA's CPU client) is limited through the
environment before it is imported, and bench/run pins one-thread runs to one core with taskset.
"""

import argparse
import json
import os
import resource
import statistics
import time

# Input shape and the layers of each net, as in examples/*.net.
SHAPES = {"lenet": (1, 28, 28), "mlp": (1, 28, 28), "lenet5_cifar": (3, 32, 32)}
HYPER = {  # lr, momentum, weight decay of each net's train block
    "lenet": (0.001, 0.9, 0.0005),
    "mlp": (0.01, 0.9, 0.0005),
    "lenet5_cifar": (0.05, 0.9, 0.0005),
}


def rate(step, images_per_call: int, seconds: float) -> float:
    """Images per second of `step`: the median of rounds of ~0.2 s over `seconds`, after warm-up."""
    for _ in range(3):
        step()
    rates, start = [], time.perf_counter()
    while len(rates) < 5 or time.perf_counter() - start < seconds:
        calls, t = 0, time.perf_counter()
        while calls == 0 or time.perf_counter() - t < 0.2:
            step()
            calls += 1
        rates.append(calls * images_per_call / (time.perf_counter() - t))
    return statistics.median(rates)


def torch_model(name: str):
    from torch import nn

    if name == "lenet":
        return nn.Sequential(
            nn.Conv2d(1, 20, 5), nn.MaxPool2d(2, 2),
            nn.Conv2d(20, 50, 5), nn.MaxPool2d(2, 2),
            nn.Conv2d(50, 500, 4), nn.ReLU(),
            nn.Conv2d(500, 10, 1), nn.Flatten(),
        )
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 500), nn.ReLU(), nn.Linear(500, 10))
    # cnn_cifar pads its pooling windows only below and to the right (examples/lenet5_cifar.net's
    # pad=[0, 1, 0, 1]): max pooling never picks the padding, average pooling counts it as zeros.
    below_right = (0, 1, 0, 1)
    return nn.Sequential(
        nn.Conv2d(3, 32, 5, padding=2), nn.ConstantPad2d(below_right, float("-inf")), nn.MaxPool2d(3, 2), nn.ReLU(),
        nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(), nn.ZeroPad2d(below_right), nn.AvgPool2d(3, 2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.ZeroPad2d(below_right), nn.AvgPool2d(3, 2),
        nn.Conv2d(64, 64, 4), nn.ReLU(),
        nn.Conv2d(64, 10, 1), nn.Flatten(),
    )


def run_torch(args, compiled: bool) -> dict:
    import torch
    from torch import nn

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torch_model(args.model)
    lr, momentum, decay = HYPER[args.model]
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=decay)
    loss_fn = nn.CrossEntropyLoss()
    shape = SHAPES[args.model]
    x = torch.randn(args.train_batch, *shape)
    y = torch.randint(0, 10, (args.train_batch,))
    xi = torch.randn(args.infer_batch, *shape)
    forward = torch.compile(model) if compiled else model

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss_fn(forward(x), y).backward()
        optimizer.step()

    def infer_step() -> None:
        with torch.no_grad():
            forward(xi).argmax(1)

    result = {"engine": "torch-compile" if compiled else "pytorch-eager", "version": torch.__version__}
    if compiled:
        # The first calls compile (training and inference graphs separately): timed apart.
        start = time.perf_counter()
        train_step()
        infer_step()
        result["warmup_s"] = time.perf_counter() - start
    result["train_images_per_sec"] = rate(train_step, args.train_batch, args.seconds)
    result["infer_images_per_sec"] = rate(infer_step, args.infer_batch, args.seconds)
    if not compiled:
        # An independent timer on the same loop: torch.utils.benchmark picks its own run lengths.
        from torch.utils import benchmark

        timer = benchmark.Timer(stmt="train_step()", globals={"train_step": train_step}, num_threads=args.threads)
        measured = timer.blocked_autorange(min_run_time=args.seconds)
        result["train_images_per_sec_torch_benchmark"] = args.train_batch / measured.median
    return result


def run_jax(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    lr, momentum, decay = HYPER[args.model]
    key = jax.random.PRNGKey(0)

    def conv_params(key, out_c, in_c, k):
        return {"w": 0.01 * jax.random.normal(key, (out_c, in_c, k, k)), "b": jnp.zeros(out_c)}

    def conv(p, x, pad=0):
        y = jax.lax.conv_general_dilated(x, p["w"], (1, 1), [(pad, pad), (pad, pad)],
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y + p["b"][None, :, None, None]

    def pool(x, size, stride, pad, kind):
        # `pad` is (before, after) on both spatial axes.
        window, strides = (1, 1, size, size), (1, 1, stride, stride)
        padding = ((0, 0), (0, 0), pad, pad)
        if kind == "max":
            return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, padding)
        return jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, padding) / (size * size)

    keys = jax.random.split(key, 5)
    if args.model == "lenet":
        params = [conv_params(keys[0], 20, 1, 5), conv_params(keys[1], 50, 20, 5),
                  conv_params(keys[2], 500, 50, 4), conv_params(keys[3], 10, 500, 1)]

        def net(params, x):
            x = pool(conv(params[0], x), 2, 2, (0, 0), "max")
            x = pool(conv(params[1], x), 2, 2, (0, 0), "max")
            x = jax.nn.relu(conv(params[2], x))
            return conv(params[3], x).reshape(x.shape[0], -1)
    elif args.model == "mlp":
        params = [{"w": 0.01 * jax.random.normal(keys[0], (784, 500)), "b": jnp.zeros(500)},
                  {"w": 0.01 * jax.random.normal(keys[1], (500, 10)), "b": jnp.zeros(10)}]

        def net(params, x):
            h = jax.nn.relu(x.reshape(x.shape[0], -1) @ params[0]["w"] + params[0]["b"])
            return h @ params[1]["w"] + params[1]["b"]
    else:
        params = [conv_params(keys[0], 32, 3, 5), conv_params(keys[1], 32, 32, 5), conv_params(keys[2], 64, 32, 5),
                  conv_params(keys[3], 64, 64, 4), conv_params(keys[4], 10, 64, 1)]

        def net(params, x):
            # cnn_cifar's pooling pad: below and to the right only.
            x = jax.nn.relu(pool(conv(params[0], x, 2), 3, 2, (0, 1), "max"))
            x = pool(jax.nn.relu(conv(params[1], x, 2)), 3, 2, (0, 1), "avg")
            x = pool(jax.nn.relu(conv(params[2], x, 2)), 3, 2, (0, 1), "avg")
            x = jax.nn.relu(conv(params[3], x))
            return conv(params[4], x).reshape(x.shape[0], -1)

    def loss(params, x, y):
        logits = net(params, x)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    @jax.jit
    def train(params, velocity, x, y):
        grads = jax.grad(loss)(params, x, y)
        # torch.optim.SGD's momentum and weight decay.
        velocity = jax.tree.map(lambda v, g, p: momentum * v + g + decay * p, velocity, grads, params)
        params = jax.tree.map(lambda p, v: p - lr * v, params, velocity)
        return params, velocity

    infer = jax.jit(lambda params, x: jnp.argmax(net(params, x), axis=1))
    rng = np.random.default_rng(0)
    shape = SHAPES[args.model]
    x = jnp.asarray(rng.standard_normal((args.train_batch, *shape), dtype=np.float32))
    y = jnp.asarray(rng.integers(0, 10, args.train_batch))
    xi = jnp.asarray(rng.standard_normal((args.infer_batch, *shape), dtype=np.float32))
    state = [params, jax.tree.map(jnp.zeros_like, params)]

    def train_step() -> None:
        state[0], state[1] = train(state[0], state[1], x, y)
        jax.block_until_ready(state[0])

    def infer_step() -> None:
        jax.block_until_ready(infer(state[0], xi))

    start = time.perf_counter()
    train_step()
    infer_step()
    warmup = time.perf_counter() - start
    return {
        "engine": "jax-jit", "version": jax.__version__, "warmup_s": warmup,
        "train_images_per_sec": rate(train_step, args.train_batch, args.seconds),
        "infer_images_per_sec": rate(infer_step, args.infer_batch, args.seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", choices=["eager", "compile", "jax"], required=True)
    parser.add_argument("--model", choices=sorted(SHAPES), required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-batch", type=int, default=100)
    parser.add_argument("--infer-batch", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    if args.threads < 1:
        parser.error("--threads must be at least 1")
    if args.engine == "jax":
        # XLA sizes its thread pools from these; they must be set before jax is imported.
        os.environ["XLA_FLAGS"] = (
            f"--xla_cpu_multi_thread_eigen={'true' if args.threads > 1 else 'false'} "
            f"intra_op_parallelism_threads={args.threads}"
        )
        result = run_jax(args)
    else:
        result = run_torch(args, compiled=args.engine == "compile")
    result.update({
        "model": args.model, "threads": args.threads,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
