#!/usr/bin/env python
"""Benchmark the foldlite network's forward pass (inference, random weights).

For each length L, a fresh subprocess (so that its peak memory belongs to that L alone):

* measures this machine's float32 matrix-multiply throughput (a 2048 x 2048 ``jnp.dot``,
  best of several) just before timing the model, under the same load;
* compiles the forward pass (``compile_s``: tracing + XLA compilation);
* runs it warm ``--repeats`` times (``forward_s``: median; ``forward_min_s``: best);
* counts FLOPs per forward from the jaxpr: matrix-multiply FLOPs exactly (2 per multiply-add,
  loop bodies times their trip counts) plus element-wise operations (1 per output element,
  approximate). XLA's ``cost_analysis()`` counts each loop body once (the trunk is a scan over
  blocks), so its figure is printed beside ours only for reference;
* reports the fraction of the measured matmul throughput that the forward pass reaches
  (``mm_frac``: matmul FLOPs only; ``all_frac``: matmul + element-wise);
* reads peak resident memory (``VmHWM`` from ``/proc/self/status``) at the end, and the
  resident memory after importing JAX (``base``) for comparison.

By default the subprocesses run with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (transparent huge
pages for malloc): XLA allocates its buffers afresh on every call, and with 4 KiB pages the
kernel's page faults cost as much as the arithmetic on large pair tensors (measured: 16,000 faults
and ~2x the time for one [256, 256, 256] float32 output). ``--no-hugepages`` turns it off.

Examples:
    python scripts/benchmark_model.py --config small --lengths 64 128 256 512
    python scripts/benchmark_model.py --lengths 512 1000 --chunk-size 64 --memory-only
    python scripts/benchmark_model.py --lengths 256 --set trunk.triangle_attention=true

Timings on a shared machine are noisy; the matmul throughput is measured in the same process
right before the model so the fractions are comparable across loads.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- measurements
def proc_status_kib(field: str) -> int:
    """A ``/proc/self/status`` field (``VmHWM``, ``VmRSS``) in KiB (0 where unavailable)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def matmul_gflops(n: int = 2048, repeats: int = 7) -> float:
    """Best float32 ``n x n`` matmul throughput of this process, GFLOP/s."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), jnp.float32)
    f = jax.jit(jnp.dot)
    f(a, b).block_until_ready()
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best / 1e9


_MOVEMENT = {
    "reshape", "broadcast_in_dim", "transpose", "slice", "dynamic_slice", "dynamic_update_slice",
    "concatenate", "gather", "scatter", "convert_element_type", "squeeze", "expand_dims", "copy",
    "copy_p", "pad", "iota", "select_n", "rev", "stop_gradient", "random_bits", "random_wrap",
    "random_unwrap", "random_seed", "threefry2x32", "device_put", "sharding_constraint",
}
_REDUCE = {"reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin",
           "cumsum", "cummax", "reduce_and", "reduce_or"}


def _size(aval) -> int:
    shape = getattr(aval, "shape", ())
    return int(math.prod(shape)) if shape else 1


def count_flops(jaxpr) -> tuple[float, float, int]:
    """(matmul FLOPs, element-wise FLOPs, while loops counted once) of a (closed) jaxpr."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    mm, other, whiles = 0.0, 0.0, 0
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "dot_general":
            (lhs_contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval
            k = math.prod(lhs.shape[d] for d in lhs_contract) if lhs_contract else 1
            mm += 2.0 * _size(eqn.outvars[0].aval) * k
            continue
        subs = []
        for v in eqn.params.values():
            for item in (v if isinstance(v, (tuple, list)) else (v,)):
                if hasattr(item, "eqns") or (hasattr(item, "jaxpr")
                                             and hasattr(item.jaxpr, "eqns")):
                    subs.append(item)
        if subs:
            mult = float(eqn.params.get("length", 1)) if name == "scan" else 1.0
            if name == "while":
                whiles += 1
            counted = [count_flops(s) for s in subs]
            if name == "cond":  # one branch runs: count the most expensive
                counted = [max(counted, key=lambda c: c[0] + c[1])]
            for c_mm, c_other, c_wh in counted:
                mm += mult * c_mm
                other += mult * c_other
                whiles += c_wh
            continue
        if name in _MOVEMENT:
            continue
        if name in _REDUCE:
            other += sum(_size(v.aval) for v in eqn.invars if hasattr(v, "aval"))
        else:
            other += sum(_size(v.aval) for v in eqn.outvars)
    return mm, other, whiles


def worker(args: argparse.Namespace) -> dict:
    """Measure one length in this process; returns a dict of figures."""
    import jax
    import numpy as np

    from foldlite.data.features import make_features
    from foldlite.model import load_model_config, make_model

    base_kib = proc_status_kib("VmRSS")
    cfg = load_model_config(args.config, overrides=args.set)
    model = make_model(cfg)
    length = args.worker
    rng = np.random.default_rng(0)
    small = make_features(rng.integers(0, 20, 16))
    params = jax.jit(lambda k, f: model.init(k, f, 0))(jax.random.PRNGKey(0), small)
    features = make_features(rng.integers(0, 20, length))

    def fwd(p, f):
        return model.apply(p, None, f, args.num_recycles, chunk_size=args.chunk_size)

    result = {"config": args.config, "L": length, "chunk_size": args.chunk_size,
              "num_recycles": args.num_recycles, "base_mib": base_kib / 1024}
    if not args.memory_only:
        result["matmul_gflops"] = matmul_gflops()
    t = time.perf_counter()
    lowered = jax.jit(fwd).lower(params, features)
    compiled = lowered.compile()
    result["compile_s"] = time.perf_counter() - t
    mm, other, whiles = count_flops(jax.make_jaxpr(fwd)(params, features))
    result["gflop_matmul"] = mm / 1e9
    result["gflop_elementwise"] = other / 1e9
    result["while_loops_counted_once"] = whiles
    try:
        ca = compiled.cost_analysis()
        ca = ca[0] if isinstance(ca, (list, tuple)) else ca
        result["xla_gflop_loop_bodies_once"] = float(ca.get("flops", float("nan"))) / 1e9
    except Exception:  # cost analysis is optional in some backends
        result["xla_gflop_loop_bodies_once"] = float("nan")

    t = time.perf_counter()
    jax.block_until_ready(compiled(params, features))
    result["first_run_s"] = time.perf_counter() - t
    if not args.memory_only:
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            jax.block_until_ready(compiled(params, features))
            times.append(time.perf_counter() - t)
        times.sort()
        result["forward_s"] = times[len(times) // 2]
        result["forward_min_s"] = times[0]
        peak = result["matmul_gflops"] * 1e9
        result["mm_frac"] = mm / result["forward_s"] / peak
        result["all_frac"] = (mm + other) / result["forward_s"] / peak
        result["matmul_gflops_after"] = matmul_gflops()
    result["peak_mib"] = proc_status_kib("VmHWM") / 1024
    return result


# ----------------------------------------------------------------------------- driver
def run_length(args: argparse.Namespace, length: int) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(length),
           "--config", args.config, "--repeats", str(args.repeats),
           "--chunk-size", str(args.chunk_size), "--num-recycles", str(args.num_recycles)]
    if args.memory_only:
        cmd.append("--memory-only")
    for item in args.set:
        cmd += ["--set", item]
    env = dict(os.environ)
    if not args.no_hugepages:
        tunables = [t for t in env.get("GLIBC_TUNABLES", "").split(":") if t]
        if not any(t.startswith("glibc.malloc.hugetlb=") for t in tunables):
            tunables.append("glibc.malloc.hugetlb=1")
        env["GLIBC_TUNABLES"] = ":".join(tunables)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        return {"L": length, "error": (proc.stderr or proc.stdout).strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="small", help="model config name or YAML path")
    p.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--repeats", type=int, default=5, help="warm forward runs per length")
    p.add_argument("--chunk-size", type=int, default=0, help="0: no chunking")
    p.add_argument("--num-recycles", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model config key, e.g. trunk.triangle_attention=true")
    p.add_argument("--memory-only", action="store_true",
                   help="compile and run once: compile time and peak memory only")
    p.add_argument("--no-hugepages", action="store_true",
                   help="do not set GLIBC_TUNABLES=glibc.malloc.hugetlb=1 in the workers")
    p.add_argument("--json", type=Path, help="also write the results to this JSON file")
    p.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker is not None:
        print(json.dumps(worker(args)))
        return 0

    import jax
    print(f"foldlite model benchmark: config={args.config} {' '.join(args.set)} "
          f"chunk_size={args.chunk_size} "
          f"num_recycles={args.num_recycles} (forward = {args.num_recycles + 1} pass(es)), "
          f"jax {jax.__version__}, {os.cpu_count()} CPUs, device {jax.devices()[0].platform}, "
          f"hugepage malloc {'off' if args.no_hugepages else 'on'}")
    print("Timings are wall-clock on a possibly shared machine; the matmul throughput is "
          "measured in the same process just before.")
    header = (f"{'L':>5} {'compile s':>9} {'1st run':>8} {'fwd s':>8} {'fwd min':>8} "
              f"{'peak MiB':>9} "
              f"{'base MiB':>8} {'GF mm':>8} {'GF ew':>7} {'xla GF*':>8} {'mm GF/s':>8} "
              f"{'mm frac':>7} {'all frac':>8}")
    print(header)
    results = []
    for length in args.lengths:
        r = run_length(args, length)
        results.append(r)
        if "error" in r:
            print(f"{length:>5} failed: {r['error']}")
            continue
        print(f"{length:>5} {r['compile_s']:>9.2f} {r['first_run_s']:>8.3f} "
              f"{fmt(r.get('forward_s'), '>8.3f')} "
              f"{fmt(r.get('forward_min_s'), '>8.3f')} {r['peak_mib']:>9.0f} "
              f"{r['base_mib']:>8.0f} {r['gflop_matmul']:>8.2f} {r['gflop_elementwise']:>7.2f} "
              f"{r['xla_gflop_loop_bodies_once']:>8.2f} {fmt(r.get('matmul_gflops'), '>8.1f')} "
              f"{fmt(r.get('mm_frac'), '>7.3f')} {fmt(r.get('all_frac'), '>8.3f')}",
              flush=True)
    print("1st run: the first call after compiling; fwd s / fwd min: median / best warm call; "
          "peak MiB: VmHWM of the worker (base MiB: resident after importing JAX); "
          "GF mm / GF ew: matmul / element-wise GFLOP per forward (counted from the jaxpr, loops "
          "times trip counts); xla GF*: XLA cost analysis, which counts loop bodies once; "
          "mm GF/s: measured float32 matmul throughput; mm frac = GF mm / fwd s / mm GF/s; "
          "all frac uses GF mm + GF ew.")
    if args.json:
        from foldlite.fileio import write_json
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
