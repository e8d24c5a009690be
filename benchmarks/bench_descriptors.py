"""Speed of fpcore's fingerprints (wACSF, EAD, GMP) against peer codes, measured in one run.

    python benchmarks/bench_descriptors.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench_descriptors.py --quick    # smaller repeats and scaling sizes
    python benchmarks/bench_descriptors.py --device cuda
    python benchmarks/bench_descriptors.py --baseline 8f6430f   # this tree vs a previous commit, same run

With --baseline REF, the extension of REF is built once in build/baseline/<sha> (a detached git worktree,
tools/dev_build.sh) and fpcore's public path (descriptor.compute on the cases below, forward and forward+backward,
one thread) is timed for REF and for this tree in alternating subprocesses (--rounds, default 3), so both are measured
on the same machine state; the table gives medians, ranges over rounds and the per-round speed-up range.

Cases: 256-atom fcc Cu, a 128-atom skewed triclinic cell, a batch of 300 small crystals (2-20 atoms), and a
scaling series up to 100k atoms (1M on CUDA; EAD to 1M on the CPU, forward only). fpcore is timed forward and forward+backward (gradients with respect
to positions and cell), single-threaded and with all cores; peers (PyXtal_FF wACSF/EAD, DScribe ACSF, TorchANI AEV)
single-threaded on the CPU. GMPFeaturizer cannot be installed here, so GMP is compared with its published
0.86k atoms/s (orders up to 3, 8 widths). Prints a table, writes JSON and a PNG under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import time
import warnings

import numpy as np
import torch

HERE = pathlib.Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
GMPFEATURIZER_PUBLISHED_ATOMS_PER_S = 860.0  # orders <= 3, 8 widths (published GMPFeaturizer number)
CUTOFF = 6.0

# The shared reference parameter sets, at the benchmark cutoff of 6 Angstrom.
WACSF_PARAMS = dict(
    g2_eta=[0.3, 0.8, 1.6],
    g2_rs=[0.0, 2.0],
    g4_eta=[0.02, 0.08],
    g4_lambda=[-1.0, 1.0],
    g4_zeta=[1.0, 2.0],
    g4_rs=[0.0],
)
EAD_PARAMS = dict(L=2, eta=[0.4, 1.2], rs=[0.0, 1.0, 2.0, 3.0])
GMP_SIGMAS = [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
GMP_SCALING_MAX_ATOMS = 20_000
CLOCK = time.perf_counter  # --clock thread: time.thread_time


@contextlib.contextmanager
def tee_log(path: pathlib.Path):
    """Copies everything printed to stdout into `path` (the run's log next to its JSON and PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as log:

        class Tee:
            def write(self, text):
                log.write(text)
                return stdout.write(text)

            def flush(self):
                log.flush()
                stdout.flush()

        stdout, sys.stdout = sys.stdout, Tee()
        try:
            yield
        finally:
            sys.stdout = stdout


def machine_name() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def timeit(fn, repeats: int, min_time: float = 0.2, max_time: float = 20.0, sync=lambda: None) -> float:
    """Median wall time of fn() over `repeats` runs after one warm-up (fewer if runs are slow)."""
    sync()
    start = CLOCK()
    fn()
    sync()
    first = CLOCK() - start
    times = []
    budget_start = CLOCK()
    while len(times) < repeats or (sum(times) < min_time and len(times) < 50 * repeats):
        start = CLOCK()
        fn()
        sync()
        times.append(CLOCK() - start)
        if CLOCK() - budget_start > max_time:
            break
    return statistics.median(times) if times else first


# --------------------------------------------------------------------------------------------- structures
def fcc_cu(repeat: int):
    import ase.build

    return ase.build.bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)


def triclinic_128(seed: int = 0):
    import ase

    rng = np.random.default_rng(seed)
    cell = np.array([[10.2, 0.0, 0.0], [4.1, 9.5, 0.0], [-3.0, 2.7, 11.0]])
    # Random but not overlapping: jittered grid points of the skewed cell.
    grid = np.stack(np.meshgrid(*(np.arange(n) / n for n in (4, 4, 8)), indexing="ij"), -1).reshape(-1, 3)
    frac = grid + rng.uniform(-0.03, 0.03, grid.shape)
    numbers = rng.choice([8, 14, 26], size=len(frac))
    return ase.Atoms(numbers=numbers, scaled_positions=frac, cell=cell, pbc=True)


def small_crystals(count: int = 300, seed: int = 0):
    import ase

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n = int(rng.integers(2, 21))
        volume = n * rng.uniform(12.0, 20.0)
        lengths = rng.uniform(0.8, 1.25, 3)
        lengths *= (volume / np.prod(lengths)) ** (1 / 3)
        cell = np.diag(lengths) + rng.uniform(-0.15, 0.15, (3, 3)) * lengths.mean()
        frac = rng.uniform(0.0, 1.0, (n, 3))
        out.append(
            ase.Atoms(
                numbers=rng.choice([3, 8, 12, 13, 14, 26, 29], size=n), scaled_positions=frac, cell=cell, pbc=True
            )
        )
    return out


# --------------------------------------------------------------------------------------------- fpcore
def build_fpcore(name: str, gmp_density):
    import fpcore

    if name == "wacsf":
        return fpcore.WACSF(cutoff=CUTOFF, cutoff_fn="cosine", **WACSF_PARAMS)
    if name == "ead":
        return fpcore.EAD(cutoff=CUTOFF, cutoff_fn="cosine", **EAD_PARAMS)
    if name == "gmp":
        return fpcore.GMP(orders=[-1, 0, 1, 2, 3], sigmas=GMP_SIGMAS, density=gmp_density)
    raise ValueError(name)


def fpcore_timers(descriptor, structures, device: str, repeats: int, forward_only: bool = False):
    """Seconds of the forward and of forward+backward (None with forward_only) of `descriptor` on `structures`."""
    from fpcore._structures import batch_from_atoms

    data = batch_from_atoms(structures, dtype=torch.float64, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    descriptor = descriptor.to(device)

    def forward():
        with torch.no_grad():
            descriptor.compute(data.positions, data.numbers, data.cells, data.pbc, data.batch)

    weights = None

    def forward_backward():
        nonlocal weights
        positions = data.positions.detach().requires_grad_(True)
        cells = data.cells.detach().requires_grad_(True)
        x = descriptor.compute(positions, data.numbers, cells, data.pbc, data.batch)
        if weights is None:
            weights = torch.rand_like(x)
        torch.autograd.grad((x * weights).sum(), (positions, cells))

    t_forward = timeit(forward, repeats, sync=sync)
    t_backward = None if forward_only else timeit(forward_backward, repeats, sync=sync)
    return t_forward, t_backward


def public_path_split(descriptor, structures, repeats: int) -> dict:
    """Where the time of `descriptor(list of ase.Atoms)` goes (forward, no gradients, CPU).

    `kernels` is the neighbor-list operator (with its vectors and distances) plus the descriptor operator on
    prepared tensors; `convert` is ase.Atoms -> batched tensors; `public` is the whole user call. The issue's target
    is public <= 1.3x kernels.
    """
    from fpcore import ops
    from fpcore._structures import batch_from_atoms
    from fpcore.descriptors.base import pair_row_ptr
    from fpcore.neighbors import Neighbors

    data = batch_from_atoms(structures, dtype=torch.float64, device="cpu")
    cutoff = descriptor.neighbor_cutoff(data.numbers)

    def search():
        return ops.neighbor_list(
            positions=data.positions, cells=data.cells, pbc=data.pbc, ptr=data.ptr, cutoff=cutoff, geometry=True
        )

    neighbors = Neighbors(*search())
    row_ptr = pair_row_ptr(neighbors.i, data.positions.shape[0])

    def features():
        descriptor._features(data.positions, data.numbers, data.cells, data.batch, neighbors, row_ptr)

    def public():
        descriptor(structures)

    with torch.no_grad():
        t_public = timeit(public, repeats)
        t_convert = timeit(lambda: batch_from_atoms(structures, dtype=torch.float64, device="cpu"), repeats)
        t_search = timeit(search, repeats)
        t_features = timeit(features, repeats)
    kernels = t_search + t_features
    return {
        "public_s": t_public,
        "convert_s": t_convert,
        "neighbor_list_op_s": t_search,
        "descriptor_op_s": t_features,
        "kernels_s": kernels,
        "public_over_kernels": t_public / kernels,
    }


# --------------------------------------------------------------------------------------------- peers
def peer_pyxtal(name: str, structures, repeats: int):
    default_dtype = torch.get_default_dtype()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if name == "wacsf":
                from pyxtal_ff.descriptors.ACSF import ACSF

                params = {
                    "G2": {"eta": WACSF_PARAMS["g2_eta"], "Rs": WACSF_PARAMS["g2_rs"]},
                    "G4": {
                        "eta": WACSF_PARAMS["g4_eta"],
                        "lambda": WACSF_PARAMS["g4_lambda"],
                        "zeta": WACSF_PARAMS["g4_zeta"],
                        "Rs": WACSF_PARAMS["g4_rs"],
                    },
                }
                calculator = ACSF(params, Rc=CUTOFF, derivative=False, stress=False, atom_weighted=True)
            else:
                from pyxtal_ff.descriptors.EAD import EAD

                params = {"L": EAD_PARAMS["L"], "eta": EAD_PARAMS["eta"], "Rs": EAD_PARAMS["rs"]}
                calculator = EAD(params, Rc=CUTOFF, derivative=False, stress=False)
    except Exception as error:  # noqa: BLE001 - an optional peer: report why it is missing
        return None, f"PyXtal_FF unavailable: {type(error).__name__}: {error}"
    finally:
        torch.set_default_dtype(default_dtype)  # pyxtal_ff changes torch's default tensor type on import

    def run():
        for atoms in structures:
            calculator.calculate(atoms)

    try:
        return timeit(run, max(1, repeats // 3), max_time=30.0), None
    except Exception as error:  # noqa: BLE001 - e.g. its crash on a centre without a neighbour of some species
        return None, f"PyXtal_FF {name} failed on a structure: {type(error).__name__}: {error}"


def peer_dscribe(structures, repeats: int):
    try:
        from dscribe.descriptors import ACSF
    except Exception as error:  # noqa: BLE001
        return None, f"DScribe unavailable: {error}"
    species = sorted({s for atoms in structures for s in atoms.get_chemical_symbols()})
    g2 = [[eta, rs] for eta in WACSF_PARAMS["g2_eta"] for rs in WACSF_PARAMS["g2_rs"]]
    g4 = [
        [eta, zeta, lam]
        for zeta in WACSF_PARAMS["g4_zeta"]
        for lam in WACSF_PARAMS["g4_lambda"]
        for eta in WACSF_PARAMS["g4_eta"]
    ]
    acsf = ACSF(r_cut=CUTOFF, g2_params=g2, g4_params=g4, species=species, periodic=True)

    def run():
        for atoms in structures:
            acsf.create(atoms)

    return timeit(run, repeats, max_time=30.0), None


def peer_torchani(structures, repeats: int):
    os.environ.setdefault("TORCHANI_NO_WARN_EXTENSIONS", "1")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torchani
            from torchani.aev._terms import ANIAngular, ANIRadial
    except Exception as error:  # noqa: BLE001
        return None, f"TorchANI unavailable: {error}"
    species = sorted({int(z) for atoms in structures for z in atoms.numbers})
    # 6 radial and 8 angular functions, like the wACSF set: comparable work per pair and triplet. TorchANI
    # requires the angular cutoff to be strictly below the radial one.
    aev = torchani.AEVComputer(
        radial=ANIRadial.cover_linearly(cutoff=CUTOFF, num_shifts=6),
        angular=ANIAngular.cover_linearly(cutoff=CUTOFF - 1e-6, num_shifts=2, num_sections=4),
        num_species=len(species),
    ).double()
    inputs = []
    for atoms in structures:
        elem = torch.tensor([[species.index(int(z)) for z in atoms.numbers]])
        inputs.append(
            (elem, torch.tensor(atoms.positions).unsqueeze(0), torch.tensor(atoms.cell[:]), torch.tensor(atoms.pbc))
        )

    def run():
        with torch.no_grad():
            for elem, pos, cell, pbc in inputs:
                aev(elem, pos, cell=cell, pbc=pbc)

    try:
        return timeit(run, repeats, max_time=30.0), None
    except Exception as error:  # noqa: BLE001
        return None, f"TorchANI failed: {type(error).__name__}: {error}"


# --------------------------------------------------------------------------------------------- baseline
def baseline_tree(ref: str) -> pathlib.Path:
    """The source tree of `ref` with its extension built (build/baseline/<sha>, a detached git worktree)."""
    import subprocess

    root = HERE.parent
    sha = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short=7", f"{ref}^{{commit}}"], capture_output=True, text=True
    )
    if sha.returncode != 0:
        raise SystemExit(f"bench_descriptors: --baseline {ref}: not a commit ({sha.stderr.strip()})")
    tree = root / "build" / "baseline" / sha.stdout.strip()
    if not (tree / "python" / "fpcore").is_dir():
        tree.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "-C", str(root), "worktree", "add", "--detach", str(tree), sha.stdout.strip()], check=True
        )
    if not list((tree / "python" / "fpcore").glob("libfpcore_ops*.so")):
        print(f"building the extension of {ref} in {tree} (once) ...", flush=True)
        # dev_build.sh builds against the torch of the first python3 on PATH: make it this interpreter's
        path = os.pathsep.join([str(pathlib.Path(sys.executable).parent), os.environ.get("PATH", "")])
        env = dict(os.environ, FPCORE_CUDA="off", PATH=path)
        subprocess.run(["bash", "tools/dev_build.sh"], cwd=tree, env=env, check=True)
    return tree


def measure_public_path(descriptors, cases, repeats: int):
    """fpcore's public path (descriptor.compute: neighbor list, pair geometry, operator, autograd) for every
    descriptor and case, one thread: median forward and forward+backward seconds."""
    import fpcore

    torch.set_num_threads(1)
    gmp_density = SHARED / "data" / "gmp" / "QE-kjpaw.gpsp"
    gmp_density = str(gmp_density) if gmp_density.exists() else None
    out = []
    for name in descriptors:
        descriptor = build_fpcore(name, gmp_density)
        for case, structures in cases.items():
            t_f, t_fb = fpcore_timers(descriptor, structures, "cpu", repeats)
            out.append(
                dict(
                    descriptor=name,
                    case=case,
                    atoms=sum(len(a) for a in structures),
                    forward_s=t_f,
                    forward_backward_s=t_fb,
                    fpcore_file=fpcore.__file__,
                )
            )
    return out


def compare_with_baseline(args) -> int:
    """--baseline: this tree and REF timed in alternating subprocesses; JSON, PNG and log under --out."""
    import subprocess

    tree = baseline_tree(args.baseline)
    sha = tree.name
    trees = {"this tree": None, f"baseline {sha}": tree}
    rounds: list[dict] = []
    for round_index in range(args.rounds):
        for label, source in trees.items():
            env = dict(os.environ)
            if source is not None:  # the baseline's python/ first on the path
                env["PYTHONPATH"] = os.pathsep.join(
                    [str(source / "python")] + env.get("PYTHONPATH", "").split(os.pathsep)
                )
            command = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker"]
            command += ["--descriptors", args.descriptors, "--repeats", str(args.repeats), "--clock", args.clock]
            done = subprocess.run(command, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stdout, done.stderr, file=sys.stderr)
                raise SystemExit(f"bench_descriptors: the {label} worker failed")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            for r in result:
                r.update(tree=label, round=round_index)
                print(
                    f"  round {round_index} {label:>17}: {r['descriptor']:5} {r['case']:12} "
                    f"fwd {r['forward_s'] * 1e3:9.2f} ms  fwd+bwd {r['forward_backward_s'] * 1e3:9.2f} ms  "
                    f"({r['fpcore_file']})",
                    flush=True,
                )
            rounds += result
    summary = baseline_summary(rounds, sha)
    print("\n" + summary)
    args.out.mkdir(parents=True, exist_ok=True)
    import fpcore

    result = {
        "date": datetime.date.today().isoformat(),
        "machine": machine_name(),
        "torch": torch.__version__,
        "fpcore": fpcore.__version__,
        "baseline": sha,
        "threads": 1,
        "clock": args.clock,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "records": rounds,
        "table": summary,
    }
    stem = f"descriptors_cpu_vs_{sha}"
    json_path = args.out / f"{stem}.json"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, json_path)
    plot_baseline(rounds, sha, args.out / f"{stem}.png", result["machine"], result["date"])
    print(f"wrote {json_path} and {args.out / (stem + '.png')}")
    return 0


def _range(values) -> str:
    return f"{statistics.median(values):.3g} [{min(values):.3g}-{max(values):.3g}]"


def fb_ratio(by_round: dict, rounds) -> list[float]:
    return [by_round[k]["forward_backward_s"] / by_round[k]["forward_s"] for k in rounds]


def baseline_summary(records, sha: str) -> str:
    """Markdown table: medians [min-max] over rounds, and the per-round ratios this tree / baseline."""
    lines = [
        f"| descriptor | case | atoms | fwd ms, {sha} | fwd ms, this tree | fwd speed-up | "
        f"fwd+bwd/fwd, {sha} | fwd+bwd/fwd, this tree | fwd+bwd speed-up |",
        "|" + "---|" * 9,
    ]
    keys = sorted({(r["descriptor"], r["case"]) for r in records})
    for descriptor, case in keys:
        rows = [r for r in records if r["descriptor"] == descriptor and r["case"] == case]
        new = {r["round"]: r for r in rows if r["tree"] == "this tree"}
        old = {r["round"]: r for r in rows if r["tree"] != "this tree"}
        both = sorted(set(new) & set(old))
        speed_f = [old[k]["forward_s"] / new[k]["forward_s"] for k in both]
        speed_fb = [old[k]["forward_backward_s"] / new[k]["forward_backward_s"] for k in both]
        lines.append(
            f"| {descriptor} | {case} | {rows[0]['atoms']} | {_range([old[k]['forward_s'] * 1e3 for k in both])} | "
            f"{_range([new[k]['forward_s'] * 1e3 for k in both])} | {_range(speed_f)}x | {_range(fb_ratio(old, both))} | "
            f"{_range(fb_ratio(new, both))} | {_range(speed_fb)}x |"
        )
    return "\n".join(lines)


def plot_baseline(records, sha: str, path: pathlib.Path, machine: str, stamp: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({(r["descriptor"], r["case"]) for r in records})
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(keys)), 4.5))
    x = np.arange(len(keys))
    for offset, (tree, column, hatch) in enumerate(
        [
            (f"baseline {sha}", "forward_s", ""),
            ("this tree", "forward_s", ""),
            (f"baseline {sha}", "forward_backward_s", "//"),
            ("this tree", "forward_backward_s", "//"),
        ]
    ):
        values = [
            [r[column] * 1e3 for r in records if (r["descriptor"], r["case"]) == key and r["tree"] == tree]
            for key in keys
        ]
        med = [statistics.median(v) for v in values]
        err = [[m - min(v) for m, v in zip(med, values)], [max(v) - m for m, v in zip(med, values)]]
        label = f"{'fwd' if column == 'forward_s' else 'fwd+bwd'}, {tree}"
        ax.bar(x + (offset - 1.5) * 0.2, med, 0.2, yerr=err, hatch=hatch, label=label, color=f"C{offset % 2}")
    ax.set_xticks(x, [f"{d}\n{c}" for d, c in keys], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("ms (public path, 1 thread; median, range over rounds)")
    ax.legend(fontsize=7)
    fig.suptitle(f"fpcore descriptors: this tree vs {sha} — {machine} — {stamp}", fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------- main
def benchmark_cases():
    return {"cu256": [fcc_cu(4)], "triclinic128": [triclinic_128()], "batch300": small_crystals(300)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller scaling sizes")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--descriptors", default="wacsf,ead,gmp")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "results")
    parser.add_argument("--baseline", metavar="GIT_REF", help="compare this tree with a previous commit (see above)")
    parser.add_argument("--rounds", type=int, default=3, help="--baseline: alternating rounds per tree")
    parser.add_argument("--repeats", type=int, default=5, help="--baseline: timed repeats per measurement")
    parser.add_argument(
        "--clock",
        choices=["wall", "thread"],
        default="wall",
        help="wall time, or the CPU time of the timing thread (all work at one thread: less noise on a shared machine)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # --baseline's subprocesses
    args = parser.parse_args(argv)
    if args.clock == "thread":
        global CLOCK
        CLOCK = time.thread_time
    if args.worker:
        print(json.dumps(measure_public_path(args.descriptors.split(","), benchmark_cases(), args.repeats)))
        return 0
    if args.baseline:
        with tee_log(args.out / "descriptors_cpu_baseline.log"):
            return compare_with_baseline(args)

    import fpcore

    if args.device == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA device available", file=sys.stderr)
        return 2
    gmp_density = SHARED / "data" / "gmp" / "QE-kjpaw.gpsp"
    gmp_density = str(gmp_density) if gmp_density.exists() else None
    repeats = 3 if args.quick else 7
    all_threads = torch.get_num_threads()
    cases = benchmark_cases()
    if args.device == "cuda":
        scaling = [(r, fcc_cu(r)) for r in ((4, 7, 14, 30) if not args.quick else (4, 7, 14))]  # 256 .. 108k atoms
        scaling += [] if args.quick else [("1M", fcc_cu(63))]
    else:
        scaling = [(r, fcc_cu(r)) for r in ((4, 7, 14) if args.quick else (4, 7, 14, 30))]  # 256 .. 108,000 atoms
    records, notes = [], []

    def record(**kw):
        records.append(kw)
        print(
            "  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in kw.items()), flush=True
        )

    for name in args.descriptors.split(","):
        try:
            descriptor = build_fpcore(name, gmp_density)
        except NotImplementedError as error:
            notes.append(f"{name}: {error}")
            continue
        print(f"== {name}: {descriptor.n_features} features", flush=True)
        thread_settings = [1, all_threads] if args.device == "cpu" else [all_threads]
        for case, structures in cases.items():
            n_atoms = sum(len(a) for a in structures)
            for threads in thread_settings:
                torch.set_num_threads(threads)
                t_f, t_fb = fpcore_timers(descriptor, structures, args.device, repeats)
                record(
                    descriptor=name,
                    case=case,
                    code="fpcore",
                    device=args.device,
                    threads=threads,
                    atoms=n_atoms,
                    forward_s=t_f,
                    forward_backward_s=t_fb,
                    atoms_per_s=n_atoms / t_f,
                    backward_ratio=t_fb / t_f,
                )
            torch.set_num_threads(1)
            if args.device == "cpu":
                split = public_path_split(descriptor, structures, repeats)
                record(
                    descriptor=name,
                    case=case,
                    code="fpcore public path",
                    device="cpu",
                    threads=1,
                    atoms=n_atoms,
                    **split,
                )
            if args.no_peers or args.device != "cpu":
                continue
            peers = []
            if name in ("wacsf", "ead"):
                peers.append(("PyXtal_FF", lambda s=structures, n=name: peer_pyxtal(n, s, repeats)))
            if name == "wacsf":
                peers.append(("DScribe ACSF", lambda s=structures: peer_dscribe(s, repeats)))
                peers.append(("TorchANI AEV", lambda s=structures: peer_torchani(s, repeats)))
            for peer, run in peers:
                if peer == "PyXtal_FF" and case == "batch300" and args.quick:
                    continue
                seconds, why = run()
                if seconds is None:
                    notes.append(why)
                    continue
                record(
                    descriptor=name,
                    case=case,
                    code=peer,
                    device="cpu",
                    threads=1,
                    atoms=n_atoms,
                    forward_s=seconds,
                    atoms_per_s=n_atoms / seconds,
                )
        torch.set_num_threads(1 if args.device == "cpu" else all_threads)
        # EAD is the cheapest descriptor per pair: on the CPU its series goes on to ~390k atoms (30M pairs) and, forward
        # only, to 1M atoms (78M pairs; the gradients would need ~15 GB), to show throughput stays flat where the pair
        # list no longer fits any cache.
        extra = (
            [(46, fcc_cu(46)), ("1M", fcc_cu(63))] if name == "ead" and args.device == "cpu" and not args.quick else []
        )
        for label, atoms in scaling + extra:
            if name == "gmp" and len(atoms) > GMP_SCALING_MAX_ATOMS:
                notes.append(
                    f"gmp scaling stops at {GMP_SCALING_MAX_ATOMS} atoms: with sigmas up to 2 A the search radius "
                    "is ~20 A (~3,000 pairs per atom in fcc Cu), so 108k atoms would hold ~330M pairs"
                )
                continue
            forward_only = label == "1M" and args.device == "cpu"
            t_f, t_fb = fpcore_timers(descriptor, [atoms], args.device, max(1, repeats // 3), forward_only)
            record(
                descriptor=name,
                case=f"scaling_{len(atoms)}",
                code="fpcore",
                device=args.device,
                threads=torch.get_num_threads(),
                atoms=len(atoms),
                forward_s=t_f,
                forward_backward_s=t_fb,
                atoms_per_s=len(atoms) / t_f,
                backward_ratio=None if t_fb is None else t_fb / t_f,
            )
    torch.set_num_threads(all_threads)

    summary = summarize(records)
    print("\n" + summary)
    for note in sorted(set(notes)):
        print("note:", note)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.date.today().isoformat()
    result = {
        "date": stamp,
        "machine": machine_name(),
        "device": args.device,
        "torch": torch.__version__,
        "fpcore": fpcore.__version__,
        "cutoff": CUTOFF,
        "records": records,
        "notes": sorted(set(notes)),
        "gmpfeaturizer_published_atoms_per_s": GMPFEATURIZER_PUBLISHED_ATOMS_PER_S,
        "table": summary,
    }
    stem = f"descriptors_{args.device}"
    json_path = args.out / f"{stem}.json"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, json_path)
    plot(records, args.out / f"{stem}.png", result["machine"], stamp)
    print(f"wrote {json_path} and {args.out / (stem + '.png')}")
    return 0


def summarize(records) -> str:
    """Markdown table: fpcore atoms/s per case and thread count, and the ratio to each peer (single thread)."""
    lines = [
        "| descriptor | case | atoms | fpcore 1 thread (atoms/s) | fpcore all cores (atoms/s) | fwd+bwd / fwd | "
        "peer (1 thread) | peer atoms/s | fpcore / peer |",
        "|" + "---|" * 9,
    ]
    keys = sorted({(r["descriptor"], r["case"]) for r in records}, key=lambda k: (k[0], k[1]))
    for descriptor, case in keys:
        rows = [r for r in records if r["descriptor"] == descriptor and r["case"] == case]
        ours = [r for r in rows if r["code"] == "fpcore"]
        if not ours:
            continue
        one = min(ours, key=lambda r: r["threads"])
        many = max(ours, key=lambda r: r["threads"])
        peers = [r for r in rows if r["code"] not in ("fpcore", "fpcore public path")]
        if descriptor == "gmp" and case == "cu256":
            peers = [{"code": "GMPFeaturizer (published)", "atoms_per_s": GMPFEATURIZER_PUBLISHED_ATOMS_PER_S}]
        ratio = "-" if one.get("backward_ratio") is None else f"{one['backward_ratio']:.2f}"
        base = (
            f"| {descriptor} | {case} | {one['atoms']} | {one['atoms_per_s']:.3g} | {many['atoms_per_s']:.3g} | "
            f"{ratio} |"
        )
        if not peers:
            lines.append(base + " - | - | - |")
        for peer in peers:
            lines.append(
                base + f" {peer['code']} | {peer['atoms_per_s']:.3g} | "
                f"{one['atoms_per_s'] / peer['atoms_per_s']:.1f}x |"
            )
    splits = [r for r in records if r["code"] == "fpcore public path"]
    if splits:
        lines += [
            "",
            "| descriptor | case | atoms | public call (ms) | convert (ms) | neighbor-list op (ms) | descriptor op (ms) | "
            "public / kernels |",
            "|" + "---|" * 8,
        ]
        for r in splits:
            lines.append(
                f"| {r['descriptor']} | {r['case']} | {r['atoms']} | {r['public_s'] * 1e3:.3g} | "
                f"{r['convert_s'] * 1e3:.3g} | {r['neighbor_list_op_s'] * 1e3:.3g} | {r['descriptor_op_s'] * 1e3:.3g} | "
                f"{r['public_over_kernels']:.2f}x |"
            )
    return "\n".join(lines)


def plot(records, path: pathlib.Path, machine: str, stamp: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    cases = [c for c in ("cu256", "triclinic128", "batch300")]
    codes = sorted(
        {
            (r["descriptor"], r["code"])
            for r in records
            if r["case"] in cases and r["threads"] == 1 and "atoms_per_s" in r
        },
        key=lambda k: (k[0], k[1] != "fpcore", k[1]),
    )
    width = 0.8 / max(1, len(codes))
    for index, (descriptor, code) in enumerate(codes):
        values = []
        for case in cases:
            match = [
                r["atoms_per_s"]
                for r in records
                if r["descriptor"] == descriptor and r["code"] == code and r["case"] == case and r["threads"] == 1
            ]
            values.append(match[0] if match else np.nan)
        left.bar(np.arange(len(cases)) + index * width, values, width, label=f"{descriptor}: {code}")
    left.set_xticks(np.arange(len(cases)) + 0.4 - width / 2, cases)
    left.set_yscale("log")
    left.set_ylabel("atoms / s (forward, 1 thread)")
    left.legend(fontsize=7)
    for descriptor in sorted({r["descriptor"] for r in records}):
        points = sorted(
            (r["atoms"], r["atoms_per_s"])
            for r in records
            if r["descriptor"] == descriptor and r["case"].startswith("scaling_")
        )
        if points:
            right.plot(*zip(*points), "o-", label=descriptor)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel("atoms in one cell (fcc Cu)")
    right.set_ylabel("atoms / s (forward)")
    right.set_title("scaling: flat = linear time")
    right.legend()
    fig.suptitle(f"fpcore descriptors, cutoff {CUTOFF} Å — {machine} — {stamp}", fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
