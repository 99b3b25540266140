#!/usr/bin/env python3
"""PyTorch's side of bench/bench_kernels' memory-bound kernels: the same
shapes (GPT-2 124M, 256 tokens), each kernel's time against a copy of the
same bytes (half read, half written) made by torch in the same run, printed
as GB/s and of_copy like bench_kernels, so the two can be read side by side.

  OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive python3 reference/kernel_bench.py [--threads 2]
"""
import argparse
import time

import torch
import torch.nn.functional as F


def best_seconds(fn, reps):
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def mean_seconds(fn, min_time=0.5):
    fn()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < min_time:
        fn()
        n += 1
    return (time.perf_counter() - t0) / n


def copy_seconds(nbytes):
    src = torch.ones(max(1, int(nbytes // 8)))
    dst = torch.zeros_like(src)
    return best_seconds(lambda: dst.copy_(src), 20)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    N, C, F4, V = 256, 768, 3072, 50257
    x = torch.randn(N, C)
    w, b = torch.randn(C), torch.randn(C)
    h = torch.randn(N, F4)
    logits = torch.randn(N, V)
    targets = torch.randint(0, V, (N,))

    def ln_bwd():
        xr = x.clone().requires_grad_()
        y = F.layer_norm(xr, (C,), w, b)
        return lambda: torch.autograd.grad(y, xr, torch.ones_like(y), retain_graph=True)

    def gelu_bwd():
        hr = h.clone().requires_grad_()
        y = F.gelu(hr, approximate="tanh")
        return lambda: torch.autograd.grad(y, hr, torch.ones_like(y), retain_graph=True)

    def ce_bwd():
        lr = logits.clone().requires_grad_()
        loss = F.cross_entropy(lr, targets)
        return lambda: torch.autograd.grad(loss, lr, retain_graph=True)

    kernels = [  # name, bytes moved (as bench_kernels counts them), the call
        ("layer_norm forward (256, 768)", 2 * N * C * 4, lambda: F.layer_norm(x, (C,), w, b)),
        ("layer_norm backward", 3 * N * C * 4, ln_bwd()),
        ("gelu forward (256, 3072)", 2 * N * F4 * 4, lambda: F.gelu(h, approximate="tanh")),
        ("gelu backward", 3 * N * F4 * 4, gelu_bwd()),
        ("dropout p=0.1 (256, 3072)", 2 * N * F4 * 4, lambda: F.dropout(h, 0.1, training=True)),
        ("softmax (256, 50257)", 2 * N * V * 4, lambda: torch.softmax(logits, -1)),
        ("cross_entropy forward", N * V * 4, lambda: F.cross_entropy(logits, targets)),
        ("cross_entropy backward", 2 * N * V * 4, ce_bwd()),
    ]
    print(f"torch {torch.__version__}, {args.threads} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    for name, nbytes, fn in kernels:
        t = mean_seconds(fn)
        print(f"  {name:32s} {t * 1e6:9.1f} us  GB/s {nbytes / t / 1e9:6.1f}  of_copy {copy_seconds(nbytes) / t:.2f}")


if __name__ == "__main__":
    main()
