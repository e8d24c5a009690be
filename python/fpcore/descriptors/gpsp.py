"""Reader of GMP pseudo-density files (.gpsp) and the built-in default density model.

A density model maps an atomic number Z to a list of Gaussians (B, beta) meaning
rho_Z(r) = sum_g B_g exp(-beta_g r^2), r in Angstrom (no unit conversion anywhere).

.gpsp format (GMPFeaturizer): lines starting with '#' are comments, one line '! N elements', then
blocks that each start after a line of '*': 'SYMBOL Z n_gauss' followed by n_gauss lines 'B beta'.
Entries with B == 0 are skipped, as GMPFeaturizer's C++ does (the dummy element X has one).
"""

from __future__ import annotations

import math
import pathlib
from dataclasses import dataclass, field

from ase.data import atomic_numbers, chemical_symbols, covalent_radii


@dataclass
class DensityModel:
    """Per-element Gaussian fits of a valence pseudo-density, rho_Z(r) = sum_g B_g exp(-beta_g r^2).

    Attributes:
        gaussians: gaussians[Z] = [(B, beta), ...] per atomic number Z; B in the density's units (opaque fit
            coefficients, may be negative), beta in 1/Angstrom^2.
        source: where the model came from (a file path or "built-in default"), named in error messages.
        symbols: element symbol per Z as written in the file (optional).
    """

    gaussians: dict[int, list[tuple[float, float]]]
    source: str
    symbols: dict[int, str] = field(default_factory=dict)

    def require(self, numbers) -> None:
        """Raises ValueError naming every element of `numbers` (atomic numbers) the model has no Gaussians for."""
        missing = sorted({int(z) for z in numbers} - set(self.gaussians))
        if missing:
            names = ", ".join(f"{chemical_symbols[z]} (Z={z})" for z in missing)
            raise ValueError(f"GMP: element(s) {names} missing from the density model {self.source}")


def read_gpsp(path) -> DensityModel:
    """Reads a GMPFeaturizer .gpsp file (format in the module docstring) into a DensityModel.

    Args:
        path: path of the .gpsp file.

    Returns:
        The DensityModel; its `source` names the file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a malformed line, named by file and line number.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GMP: density file {str(path)!r} does not exist")
    lines = path.read_text().splitlines()

    def fail(lineno: int, why: str):
        raise ValueError(f"GMP: malformed density file {path}, line {lineno + 1}: {why}: {lines[lineno]!r}")

    gaussians: dict[int, list[tuple[float, float]]] = {}
    symbols: dict[int, str] = {}
    k = 0
    while k < len(lines):
        line = lines[k].strip()
        if not line.startswith("*"):
            if line and not line.startswith(("#", "!")):
                fail(k, "expected a comment, the '! N elements' line or a '****' block separator")
            k += 1
            continue
        k += 1
        if k >= len(lines):
            break  # trailing separator
        head = lines[k].split()
        if len(head) != 3:
            fail(k, "expected 'SYMBOL Z n_gauss'")
        symbol = head[0]
        try:
            z, n_gauss = int(head[1]), int(head[2])
        except ValueError:
            fail(k, "Z and n_gauss must be integers")
        if n_gauss < 0 or z < 0:
            fail(k, "Z and n_gauss must be non-negative")
        if z in gaussians:
            fail(k, f"element Z={z} appears twice")
        entries = []
        for _ in range(n_gauss):
            k += 1
            if k >= len(lines):
                raise ValueError(
                    f"GMP: malformed density file {path}: element {symbol} declares {n_gauss} "
                    "Gaussians but the file ends early"
                )
            parts = lines[k].split()
            if len(parts) != 2:
                fail(k, "expected 'B beta'")
            try:
                b, beta = float(parts[0]), float(parts[1])
            except ValueError:
                fail(k, "B and beta must be numbers")
            if not (math.isfinite(b) and math.isfinite(beta)) or beta <= 0.0:
                fail(k, "B must be finite and beta positive")
            if b != 0.0:  # GMPFeaturizer skips B == 0 entries
                entries.append((b, beta))
        gaussians[z] = entries
        symbols[z] = symbol
        k += 1
    if not gaussians:
        raise ValueError(f"GMP: density file {path} defines no element")
    return DensityModel(gaussians, f"file {str(path)!r}", symbols)


def _valence_electrons(z: int) -> int:
    """Valence count from the periodic-table position: the group number for s/d blocks (1-12), group-10
    for p block (13-18, He gives 2), 3 for lanthanides and actinides."""
    if z <= 2:
        return z
    period_starts = [3, 11, 19, 37, 55, 87, 119]
    for p in range(6):
        if period_starts[p] <= z < period_starts[p + 1]:
            start, period = period_starts[p], p + 2
            break
    pos = z - start  # 0-based position in the period
    if period <= 3:  # 8-element periods: groups 1, 2, 13..18
        return pos + 1
    if period >= 6:  # remove the 14 f-block elements (valence 3) after group 2
        if 2 <= pos < 16:
            return 3
        if pos >= 16:
            pos -= 14
    group = pos + 1  # 18-element period
    return group if group <= 12 else group - 10


def default_density() -> DensityModel:
    """Built-in density model needing no file: for every element Z (1..118), two normalised Gaussians,
    each carrying half of the valence electron count n_v(Z) (group-based, see _valence_electrons),
    of standard deviations r_cov/2 and r_cov (r_cov = ase.data.covalent_radii[Z], Angstrom):

        rho_Z(r) = sum_{s in (r_cov/2, r_cov)} (n_v/2) (2 pi s^2)^(-3/2) exp(-r^2 / (2 s^2))

    so that its integral is n_v. It is a smooth, element-resolved stand-in for a fitted pseudo-density.
    """
    gaussians = {}
    for z in range(1, 119):
        nv = _valence_electrons(z)
        rc = float(covalent_radii[z])
        entries = []
        for s in (0.5 * rc, rc):
            b = 0.5 * nv * (2.0 * math.pi * s * s) ** -1.5
            entries.append((b, 1.0 / (2.0 * s * s)))
        gaussians[z] = entries
    return DensityModel(
        gaussians, "built-in default (valence-normalised Gaussians)", {z: chemical_symbols[z] for z in gaussians}
    )


__all__ = ["DensityModel", "read_gpsp", "default_density", "atomic_numbers"]
