"""Neighbor-list throughput of fpcore against ASE, matscipy and vesin.

Cases: (a) 256-atom fcc Cu at 6 A, (b) 128-atom skewed triclinic cell at 6 A, (c) 300 small random
crystals (2-20 atoms) in one batched call against the peers in a Python loop, (d) fcc Cu supercells
from ~100 to ~1,000,000 atoms at 5 A (scaling). Each case runs single-threaded (torch and vesin on one
thread; ASE and matscipy are single-threaded anyway) and on all cores.

fpcore is timed three ways: `op` is the raw operator on prepared tensors returning i, j, shifts (like
vesin/matscipy/ASE "ijS"); `full` is `fpcore.neighbor_list(atoms)` from ase.Atoms, including tensor
conversion, vectors and distances (like vesin "ijSdD"); `grad` is the gradient of the summed distances with
respect to positions and cell through `fpcore.neighbors.compute` (like vesin-torch "ijSd" and its backward).
Timings are medians of repeated runs after a warm-up; ratios are measured in the same run, so they survive a
noisy, shared machine better than absolute numbers do. The scaling series also records, in a fresh subprocess
per size, the peak memory the public call adds (resident set growth) per pair found.

    python benchmarks/bench_neighbors.py [--quick] [--device cuda] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import ase
import ase.build
import numpy as np
import torch

try:  # an installed fpcore first (GPU machines), else the developer build in python/
    import fpcore
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    import fpcore
from fpcore._structures import batch_from_atoms  # noqa: E402

try:
    import vesin
except ImportError:  # pragma: no cover
    vesin = None
try:
    from matscipy.neighbours import neighbour_list as matscipy_neighbour_list
except ImportError:  # pragma: no cover
    matscipy_neighbour_list = None
from ase.neighborlist import neighbor_list as ase_neighbor_list  # noqa: E402


def measure(fn, budget: float, min_repeats: int = 3, max_repeats: int = 200, sync=None) -> float:
    """Median wall time of fn() in seconds, after a warm-up, within roughly `budget` seconds."""
    t0 = time.perf_counter()
    fn()
    if sync:
        sync()
    if time.perf_counter() - t0 > 2 * budget:  # very slow peer (ASE on large inputs): one more run
        min_repeats = 1
    times = []
    start = time.perf_counter()
    while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ----------------------------------------------------------------------------------------- systems
def fcc_cu(repeat) -> ase.Atoms:
    return ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)


def skewed_triclinic(n_atoms=128, seed=0) -> ase.Atoms:
    from ase.geometry import cellpar_to_cell

    rng = np.random.default_rng(seed)
    cell = cellpar_to_cell([11.0, 12.0, 13.0, 62.0, 75.0, 118.0])
    # density close to Cu's so pair counts are comparable with case (a)
    cell *= (n_atoms * 11.8 / abs(np.linalg.det(cell))) ** (1 / 3)
    return ase.Atoms("Si" * n_atoms, scaled_positions=rng.random((n_atoms, 3)), cell=cell, pbc=True)


def small_crystals(count=300, seed=0) -> list:
    from ase.geometry import cellpar_to_cell

    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        n = int(rng.integers(2, 21))
        lengths = rng.uniform(3.0, 7.0, 3) * (n / 8) ** (1 / 3)
        angles = rng.uniform(70.0, 110.0, 3)
        try:
            cell = cellpar_to_cell([*lengths, *angles])
        except (ValueError, AssertionError):
            continue
        if abs(np.linalg.det(cell)) < 0.5 * np.prod(lengths):
            continue
        cell *= (n * 11.8 / abs(np.linalg.det(cell))) ** (1 / 3)
        out.append(ase.Atoms(numbers=rng.integers(1, 84, n), scaled_positions=rng.random((n, 3)), cell=cell, pbc=True))
    return out


# ------------------------------------------------------------------------------------- competitors
def fpcore_runners(structures, cutoff, device, with_grad=True):
    data = batch_from_atoms(structures, dtype=torch.float64, device=device)
    args = (data.positions, data.cells, data.pbc, data.ptr, float(cutoff))
    op = torch.ops.fpcore.neighbor_list
    runners = {
        "fpcore op (ijS)": lambda: op(*args),
        "fpcore full (ijSdD)": lambda: fpcore.neighbor_list(structures, cutoff, device=device),
    }
    if with_grad:
        positions = data.positions.clone().requires_grad_(True)
        cells = data.cells.clone().requires_grad_(True)

        def gradient():
            neighbors = fpcore.neighbors.compute(positions, cells, data.pbc, data.batch, cutoff)
            return torch.autograd.grad(neighbors.distances.sum(), (positions, cells))

        runners["fpcore grad (d -> positions, cell)"] = gradient
    return runners


def peer_runners(structures, cutoff, threads):
    """Peers work on one structure at a time: a batch is a Python loop over its structures."""
    atoms_list = structures if isinstance(structures, list) else [structures]
    runners = {}
    if vesin is not None:
        calculator = vesin.NeighborList(cutoff=cutoff, full_list=True, n_threads=threads)
        prepared = [(a.positions, a.cell[:], a.pbc) for a in atoms_list]

        def vesin_run(quantities):
            return lambda: [calculator.compute(p, c, b, quantities=quantities) for p, c, b in prepared]

        runners["vesin (ijS)"] = vesin_run("ijS")
        runners["vesin (ijSdD)"] = vesin_run("ijSdD")
    if matscipy_neighbour_list is not None:
        runners["matscipy (ijS)"] = lambda: [matscipy_neighbour_list("ijS", a, cutoff) for a in atoms_list]
    runners["ase (ijS)"] = lambda: [ase_neighbor_list("ijS", a, cutoff) for a in atoms_list]
    return runners


def vesin_torch_runners(structures, cutoff, device, with_grad=True):
    try:
        from vesin_torch import NeighborList as TorchNeighborList
    except ImportError:
        try:
            from vesin.torch import NeighborList as TorchNeighborList
        except ImportError:
            return {}
    atoms_list = structures if isinstance(structures, list) else [structures]
    calculator = TorchNeighborList(cutoff=cutoff, full_list=True)
    prepared = [
        (
            torch.tensor(a.positions, device=device),
            torch.tensor(a.cell[:], device=device),
            torch.tensor(a.pbc, device=device),
        )
        for a in atoms_list
    ]

    def gradient():
        grads = []
        for p, c, b in prepared:
            p, c = p.detach().requires_grad_(True), c.detach().requires_grad_(True)
            (d,) = calculator.compute(p, c, b, quantities="d")
            grads.append(torch.autograd.grad(d.sum(), (p, c)))
        return grads

    # the gradient only where fpcore's is timed too, so every ratio has both sides
    runners = {"vesin-torch grad (d -> positions, cell)": gradient} if with_grad else {}
    if device == "cuda":
        runners["vesin-torch (ijS)"] = lambda: [calculator.compute(p, c, b, quantities="ijS") for p, c, b in prepared]
    return runners


def peak_memory_per_pair(n_repeat: int, cutoff: float, device: str) -> dict:
    """Peak resident memory the public call adds, in a fresh process (so earlier cases do not hide it), per pair."""
    script = f"""
import sys, json, torch
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from bench_neighbors import fcc_cu, fpcore

def status_kib(key):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key + ":"))

atoms = fcc_cu(({n_repeat},) * 3)
fpcore.neighbor_list(fcc_cu((2, 2, 2)), {cutoff}, device={device!r})  # load the extension, warm the allocator
with open("/proc/self/clear_refs", "w") as refs:  # reset the peak resident size (VmHWM) to the current one
    refs.write("5")
before = status_kib("VmRSS")
nl = fpcore.neighbor_list(atoms, {cutoff}, device={device!r})
peak = status_kib("VmHWM")
output = sum(t.numel() * t.element_size() for t in (nl.i, nl.j, nl.shifts, nl.vectors, nl.distances))
print(json.dumps({{"pairs": int(nl.i.numel()), "peak_added_bytes": (peak - before) * 1024, "output_bytes": output}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    record = json.loads(done.stdout.strip().splitlines()[-1])
    record["peak_added_bytes_per_pair"] = record["peak_added_bytes"] / max(record["pairs"], 1)
    record["output_bytes_per_pair"] = record["output_bytes"] / max(record["pairs"], 1)
    return record


# ----------------------------------------------------------------------------------------- driver
def run_case(name, structures, cutoff, device, threads_label, budget, include_ase=True, with_grad=True):
    n_atoms = sum(len(a) for a in structures) if isinstance(structures, list) else len(structures)
    all_threads = threads_label == "all"
    torch.set_num_threads(os.cpu_count() if all_threads else 1)
    runners = dict(fpcore_runners(structures, cutoff, device, with_grad=with_grad))
    sync = torch.cuda.synchronize if device == "cuda" else None
    if device != "cuda":
        runners.update(peer_runners(structures, cutoff, threads=0 if all_threads else 1))
        if not include_ase:
            runners.pop("ase (ijS)")
    if with_grad or device == "cuda":
        runners.update(vesin_torch_runners(structures, cutoff, device, with_grad=with_grad))
    n_pairs = int(runners["fpcore op (ijS)"]()[0].shape[0])
    result = {
        "case": name,
        "threads": threads_label,
        "device": device,
        "atoms": n_atoms,
        "pairs": n_pairs,
        "cutoff": cutoff,
        "seconds": {},
        "atoms_per_s": {},
    }
    for label, fn in runners.items():
        seconds = measure(fn, budget, sync=sync if label.startswith(("fpcore", "vesin-torch")) else None)
        result["seconds"][label] = seconds
        result["atoms_per_s"][label] = n_atoms / seconds
    return result


def ratios(result):
    """fpcore atoms/s over each peer's, like with like (op vs ijS, full vs ijSdD)."""
    rate = result["atoms_per_s"]
    out = {}
    for peer, peer_rate in rate.items():
        if peer.startswith("fpcore"):
            continue
        if "grad" in peer:
            mine = "fpcore grad (d -> positions, cell)"
        else:
            mine = "fpcore full (ijSdD)" if "ijSdD" in peer else "fpcore op (ijS)"
        out[f"{mine.split(' (')[0]} / {peer}"] = rate[mine] / peer_rate
    return out


def print_result(result):
    print(
        f"\n[{result['case']}] {result['atoms']} atoms, {result['pairs']} pairs, cutoff {result['cutoff']} A, "
        f"threads={result['threads']}, device={result['device']}"
    )
    for label, rate in result["atoms_per_s"].items():
        print(f"  {label:<22s} {rate:14,.0f} atoms/s  {result['seconds'][label] * 1e3:10.3f} ms")
    for label, value in result["ratios"].items():
        print(f"  {label:<38s} x{value:7.2f}")
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short run (~30 s): fewer repeats, smaller scaling range")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--threads", default="1,all", help="comma list among 1,all (CPU only)")
    args = parser.parse_args()
    if args.device == "cuda" and not fpcore._library.cuda_available():
        sys.exit("fpcore was not built with CUDA or no CUDA device is visible")

    budget = 0.3 if args.quick else 1.0
    thread_modes = ["all"] if args.device == "cuda" else args.threads.split(",")
    # fcc repeats: 4 n^3 atoms, 108 .. 1,000,188
    sizes = [3, 4, 6, 10] if args.quick else [3, 4, 6, 10, 16, 20, 30, 46, 63]
    results = []
    for threads in thread_modes:
        cases = [
            ("a_fcc_cu_256", fcc_cu((4, 4, 4)), 6.0, True),
            ("b_triclinic_128", skewed_triclinic(), 6.0, True),
            ("c_batch_300_small", small_crystals(), 6.0, False),  # ASE: ~8 s per batch
        ]
        for name, structures, cutoff, with_ase in cases:
            result = run_case(name, structures, cutoff, args.device, threads, budget, with_ase)
            result["ratios"] = ratios(result)
            print_result(result)
            results.append(result)
        for n in sizes:
            atoms = fcc_cu((n, n, n))
            # ASE is far slower than the rest: keep it to the small systems; gradients up to 100k atoms
            result = run_case(
                f"d_scaling_{len(atoms)}",
                atoms,
                5.0,
                args.device,
                threads,
                budget / 2,
                include_ase=len(atoms) <= 1000,
                with_grad=len(atoms) <= 110_000,
            )
            result["ratios"] = ratios(result)
            if threads == thread_modes[0]:
                result["memory"] = peak_memory_per_pair(n, 5.0, args.device)
                print(
                    f"  memory: peak +{result['memory']['peak_added_bytes'] / 2**20:,.0f} MiB, "
                    f"{result['memory']['peak_added_bytes_per_pair']:.0f} B/pair "
                    f"(outputs {result['memory']['output_bytes_per_pair']:.0f} B/pair)"
                )
            print_result(result)
            results.append(result)

    machine = socket.gethostname().split(".")[0] + ("-cuda" if args.device == "cuda" else "")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "machine": machine,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "vesin": getattr(vesin, "__version__", None),
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "quick": args.quick,
    }
    json_path = out / f"neighbors_{machine}.json"
    json_path.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    print(f"\nwrote {json_path}")
    plot_scaling(results, out / f"neighbors_scaling_{machine}.png")


def plot_scaling(results, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot")
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, threads in zip(axes, ["1", "all"]):
        rows = [r for r in results if r["case"].startswith("d_scaling") and r["threads"] == threads]
        if not rows:
            ax.set_visible(False)
            continue
        labels = {label for r in rows for label in r["seconds"]}
        for label in sorted(labels):
            pts = [(r["atoms"], r["seconds"][label]) for r in rows if label in r["seconds"]]
            ax.loglog(*zip(*pts), "o-", label=label)
        x = np.array([rows[0]["atoms"], rows[-1]["atoms"]], dtype=float)
        ref = rows[0]["seconds"]["fpcore op (ijS)"] * x / x[0]
        ax.loglog(x, ref, "k:", label="linear")
        ax.set_xlabel("atoms (fcc Cu, cutoff 5 A)")
        ax.set_title(f"{rows[0]['device']}, threads={threads}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("seconds per neighbor list")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
