"""Readers: each turns one input (file or CIF folder) into a FlatStructures.

Formats: extended XYZ (.extxyz/.xyz, optionally .gz), ASE database (.db), a CIF folder with id_prop.csv (CGCNN
convention) and MatBench task files (matbench_*.json[.gz], pymatgen Structure dicts converted without pymatgen).
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import math
import pathlib
import re
import zlib

import numpy as np

from ._flat import Collector, FlatStructures

# Bump when the output of any reader changes for the same input: it is part of the cache key.
READER_VERSION = 1

EXTXYZ_SUFFIXES = (".extxyz", ".xyz", ".extxyz.gz", ".xyz.gz")
DB_SUFFIXES = (".db",)
MATBENCH_SUFFIXES = (".json", ".json.gz")
FORMATS = ("extxyz", "db", "cif", "matbench")


def detect_format(path: pathlib.Path) -> str:
    name = path.name.lower()
    if path.is_dir():
        return "cif"
    if name.endswith(EXTXYZ_SUFFIXES):
        return "extxyz"
    if name.endswith(DB_SUFFIXES):
        return "db"
    if name.endswith(MATBENCH_SUFFIXES):
        return "matbench"
    raise ValueError(
        f"fpcore.data: unsupported input {str(path)!r}: expected a file ending in "
        f"{', '.join(EXTXYZ_SUFFIXES + DB_SUFFIXES)} or matbench_*{'/'.join(MATBENCH_SUFFIXES)}, or a folder of CIF "
        f"files with id_prop.csv (or pass format= one of {FORMATS})"
    )


def _read_text(path: pathlib.Path) -> str:
    # Decompress into memory: ase's extxyz reader seeks backwards once per frame, which on a gzip stream restarts
    # decompression each time (quadratic in the file size).
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read().decode("utf-8")
        return path.read_text(encoding="utf-8")
    except EOFError:
        raise ValueError(
            f"fpcore.data: {path} is truncated (the gzip stream ends early; re-download or re-copy it)"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(f"fpcore.data: {path} is not a valid gzip file or is corrupt ({e})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"fpcore.data: {path} is not UTF-8 text (byte {e.start}: {e.reason})") from None


def _scalar_label(value, key, where):
    if isinstance(value, (bool, np.bool_, str, bytes)) or value is None:
        raise ValueError(f"fpcore.data: label {key!r} of {where} is not a number: {value!r}")
    arr = np.asarray(value)
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(
            f"fpcore.data: label {key!r} of {where} must be one number, got {arr.dtype} of shape {arr.shape}"
        )
    return float(arr.reshape(()))


class MissingTargetError(KeyError):
    """A requested label is absent; a KeyError whose text is the message itself (KeyError's own str() quotes it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _missing_target(key, where, available):
    return MissingTargetError(
        f"fpcore.data: target {key!r} is missing from {where}; available keys: "
        f"{', '.join(sorted(map(str, available))) or '(none)'}"
    )


def _locate_unknown_symbol(text: str, symbol: str) -> str:
    """Finds the frame holding `symbol` (only on the error path: ase's KeyError does not say where it was)."""
    lines = text.splitlines()
    i = frame = 0
    while i < len(lines):
        try:
            n = int(lines[i].split()[0])
        except (ValueError, IndexError):
            break
        for line in lines[i + 2 : i + 2 + n]:
            if line.split()[:1] == [symbol]:
                comment = lines[i + 1]
                sid = ""
                for token in comment.split():
                    if token.startswith("id="):
                        sid = f" (id {token[3:]!r})"
                return f"frame {frame}{sid}, line {lines.index(line, i) + 1}"
        i += n + 2
        frame += 1
    return "an unlocated frame"


def _atoms_label_source(atoms):
    values = dict(atoms.info)
    if atoms.calc is not None:
        for key, value in atoms.calc.results.items():
            values.setdefault(key, value)
    return values


def _add_atoms(collector: Collector, atoms, sid, where, targets):
    labels = None
    if targets:
        values = _atoms_label_source(atoms)
        labels = []
        for key in targets:
            if key not in values:
                raise _missing_target(key, where, values.keys())
            labels.append(_scalar_label(values[key], key, where))
    collector.add(sid, atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, labels)


_KEY_VALUE = re.compile(r'([A-Za-z_][\w\-]*)=("[^"]*"|\{[^}]*\}|\S+)')
_SIMPLE_PROPERTIES = "species:S:1:pos:R:3"


def _kv_number(value: str, key: str, where: str):
    text = value[1:-1] if value[:1] in '"{' else value
    try:
        numbers = [float(p) for p in text.replace(",", " ").split()]
    except ValueError:
        numbers = []
    if not numbers:
        return _scalar_label(text, key, where)  # raises: not a number
    return _scalar_label(numbers[0] if len(numbers) == 1 else np.array(numbers), key, where)


def _fast_extxyz(text: str, path: pathlib.Path, targets) -> FlatStructures | None:
    """Vectorised reader for the plain layout every shared file uses (Properties=species:S:1:pos:R:3, a Lattice, scalar
    info labels): about 3x faster than ase on large files. Returns None for anything else; ase then reads the file."""
    from ase.data import atomic_numbers

    lines = text.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    heads, i = [], 0
    while i < len(lines):  # one step per structure
        try:
            n = int(lines[i])
        except ValueError:
            return None
        heads.append((i, n))
        i += n + 2
    if i != len(lines):
        return None
    frames = []
    for i, _n in heads:
        info = dict(_KEY_VALUE.findall(lines[i + 1]))
        if info.get("Properties", _SIMPLE_PROPERTIES) != _SIMPLE_PROPERTIES or "Lattice" not in info:
            return None
        if len(_KEY_VALUE.sub("", lines[i + 1]).split()):  # bare flags or anything unparsed: leave it to ase
            return None
        frames.append(info)
    atom_lines = itertools.chain.from_iterable(lines[i + 2 : i + 2 + n] for i, n in heads)
    tokens = " ".join(atom_lines).split()
    n_atoms = sum(n for _, n in heads)
    if len(tokens) != 4 * n_atoms:
        return None
    symbols, inverse = np.unique(np.array(tokens[0::4]), return_inverse=True)
    for symbol in map(str, symbols):
        if symbol not in atomic_numbers:
            raise ValueError(
                f"fpcore.data: unknown element symbol {symbol!r} in {path} ({_locate_unknown_symbol(text, symbol)})"
            )
    numbers = np.array([atomic_numbers[s] for s in symbols], dtype=np.int64)[inverse.reshape(-1)]
    try:
        positions = np.fromiter(
            map(float, itertools.chain.from_iterable(zip(tokens[1::4], tokens[2::4], tokens[3::4]))),
            dtype=np.float64,
            count=3 * n_atoms,
        ).reshape(n_atoms, 3)
        cells = np.array([[float(v) for v in f["Lattice"].strip('"').split()] for f in frames], dtype=np.float64)
        cells = cells.reshape(len(frames), 3, 3)
    except ValueError:
        return None
    pbc = np.empty((len(frames), 3), dtype=bool)
    ids, labels = [], []
    for k, f in enumerate(frames):
        flags = f.get("pbc", '"T T T"').strip('"').split()
        if len(flags) != 3 or not set(flags) <= {"T", "F"}:
            return None
        pbc[k] = [c == "T" for c in flags]
        sid = f["id"].strip('"') if "id" in f else f"{path.name}:{k}"
        ids.append(sid)
        if targets:
            where = f"structure {sid!r} (frame {k}) of {path}"
            row = []
            for key in targets:
                if key not in f:
                    raise _missing_target(key, where, [x for x in f if x not in ("Lattice", "Properties", "pbc")])
                row.append(_kv_number(f[key], key, where))
            labels.append(row)
    counts = np.array([n for _, n in heads], dtype=np.int64)
    offsets = np.zeros(len(heads) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return FlatStructures(
        numbers=numbers,
        positions=positions,
        offsets=offsets,
        cells=cells,
        pbc=pbc,
        y=np.asarray(labels, dtype=np.float64).reshape(len(heads), len(targets)) if targets else None,
        ids=ids,
        target_names=list(targets or []),
        origins=[(str(path), 0, len(heads))],
    )


def read_extxyz(path: pathlib.Path, targets, fast: bool = True) -> FlatStructures:
    import ase.io

    text = _read_text(path)
    if fast:
        flat = _fast_extxyz(text, path, targets)
        if flat is not None:
            return flat
    try:
        frames = ase.io.read(io.StringIO(text), index=":", format="extxyz")
    except KeyError as e:
        symbol = str(e.args[0]) if e.args else "?"
        raise ValueError(
            f"fpcore.data: unknown element symbol {symbol!r} in {path} ({_locate_unknown_symbol(text, symbol)})"
        ) from e
    except Exception as e:
        raise ValueError(f"fpcore.data: cannot parse {path} as extended XYZ: {type(e).__name__}: {e}") from e
    del text
    collector = Collector(targets)
    for k, atoms in enumerate(frames):
        sid = atoms.info.get("id", f"{path.name}:{k}")
        _add_atoms(collector, atoms, sid, f"structure {str(sid)!r} (frame {k}) of {path}", targets)
    collector.end_source(str(path))
    return collector.finish()


def read_db(path: pathlib.Path, targets) -> FlatStructures:
    import ase.db

    collector = Collector(targets)
    try:
        db = ase.db.connect(str(path), type="db", create_indices=False, use_lock_file=False)
        rows = db.select()
        for row in rows:
            atoms = row.toatoms()
            sid = str(row.key_value_pairs.get("name", row.id))
            where = f"row {row.id} of {path}"
            labels = None
            if targets:
                values = {}
                for key in ("energy", "free_energy", "charge", "magmom"):
                    if row.get(key) is not None:
                        values[key] = row.get(key)
                values.update(row.get("data", {}) or {})
                values.update(row.key_value_pairs)
                labels = []
                for key in targets:
                    if key not in values:
                        raise _missing_target(key, where, values.keys())
                    labels.append(_scalar_label(values[key], key, where))
            collector.add(sid, atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, labels)
    except (KeyError, ValueError):
        raise
    except Exception as e:
        raise ValueError(f"fpcore.data: cannot read {path} as an ASE database: {type(e).__name__}: {e}") from e
    collector.end_source(str(path))
    return collector.finish()


def _read_id_prop(folder: pathlib.Path):
    csv_path = folder / "id_prop.csv"
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = [[c.strip() for c in r] for r in csv.reader(fh) if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"fpcore.data: {csv_path} is empty")

    def numeric(cells):
        try:
            [float(c) for c in cells]
            return True
        except ValueError:
            return False

    header = None
    if not numeric(rows[0][1:]):
        header, rows = rows[0], rows[1:]
    width = len(rows[0]) if rows else len(header)
    for k, r in enumerate(rows):
        if len(r) != width:
            raise ValueError(
                f"fpcore.data: row {k + 1 + (header is not None)} of {csv_path} has {len(r)} columns, expected {width}"
            )
    n_labels = width - 1
    if header is not None:
        names = header[1:]
    else:
        names = ["target"] if n_labels == 1 else [f"target{c + 1}" for c in range(n_labels)]
    return csv_path, header is not None, names, rows


def read_cif_folder(folder: pathlib.Path, targets) -> FlatStructures:
    """CGCNN layout: <folder>/id_prop.csv rows "id,value[,value...]" (header optional) and <folder>/<id>.cif.

    Without a header the label columns are called target (or target1, target2, ...); `targets` may also name them
    positionally: as many names as label columns.
    """
    import ase.io

    if not (folder / "id_prop.csv").exists():
        if targets:
            raise FileNotFoundError(
                f"fpcore.data: {folder / 'id_prop.csv'} is missing: the labels of a CIF folder come from it"
            )
        ids = sorted(p.stem for p in folder.glob("*.cif"))
        rows, columns = [[i] for i in ids], []
        csv_path = folder
    else:
        csv_path, has_header, names, rows = _read_id_prop(folder)
        columns = []
        if targets:
            if all(t in names for t in targets):
                columns = [names.index(t) for t in targets]
            elif not has_header and len(targets) == len(names):
                columns = list(range(len(names)))
            else:
                raise MissingTargetError(
                    f"fpcore.data: targets {list(targets)} not found in {csv_path}; its label columns are {names}"
                    + ("" if has_header else f" (no header: you may also give {len(names)} name(s), one per column)")
                )
    collector = Collector(targets)
    for k, row in enumerate(rows):
        sid = row[0]
        cif = folder / f"{sid}.cif"
        if not cif.exists():
            raise FileNotFoundError(f"fpcore.data: {cif} (listed in {csv_path}, row {k + 1}) does not exist")
        try:
            atoms = ase.io.read(cif, format="cif")
        except KeyError as e:
            raise ValueError(f"fpcore.data: unknown element symbol {e.args[0]!r} in structure {sid!r} ({cif})") from e
        except Exception as e:
            raise ValueError(f"fpcore.data: cannot parse {cif}: {type(e).__name__}: {e}") from e
        occupancy = atoms.info.get("occupancy") or {}
        if any(abs(o - 1.0) > 1e-6 for site in occupancy.values() for o in site.values()):
            raise ValueError(f"fpcore.data: structure {sid!r} ({cif}) has partial occupancies, which are not supported")
        labels = None
        if targets:
            labels = []
            for name, c in zip(targets, columns):
                labels.append(_scalar_label(float(row[1 + c]), name, f"structure {sid!r} in {csv_path}"))
        collector.add(sid, atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, labels)
    collector.end_source(str(folder))
    return collector.finish()


def structure_from_pymatgen_dict(d: dict, where: str):
    """(numbers, positions, cell, pbc) of a pymatgen Structure (or Molecule) as_dict(), without pymatgen."""
    from ase.data import atomic_numbers

    if not isinstance(d, dict) or "sites" not in d:
        raise ValueError(f"fpcore.data: {where} is not a pymatgen Structure dict (no 'sites')")
    lattice = d.get("lattice")
    if lattice is not None:
        cell = np.asarray(lattice["matrix"], dtype=np.float64).reshape(3, 3)
        pbc = np.asarray(lattice.get("pbc", (True, True, True)), dtype=bool)
    else:
        cell, pbc = np.zeros((3, 3)), np.zeros(3, bool)
    sites = d["sites"]
    symbols, positions = [], []
    for k, site in enumerate(sites):
        species = site["species"]
        if len(species) != 1 or abs(float(species[0].get("occu", 1.0)) - 1.0) > 1e-6:
            raise ValueError(
                f"fpcore.data: {where} has a partially occupied site {k} ({species}); partial occupancies are not supported"
            )
        symbols.append(species[0]["element"])
        if "xyz" in site:
            positions.append(site["xyz"])
        elif lattice is not None:
            positions.append(np.asarray(site["abc"], dtype=np.float64) @ cell)
        else:
            raise ValueError(f"fpcore.data: site {k} of {where} has no Cartesian 'xyz' coordinates")
    unknown = sorted({s for s in symbols if s not in atomic_numbers})
    if unknown:
        raise ValueError(f"fpcore.data: unknown element symbol(s) {unknown} in {where}")
    numbers = np.fromiter((atomic_numbers[s] for s in symbols), dtype=np.int64, count=len(symbols))
    return numbers, np.asarray(positions, dtype=np.float64).reshape(-1, 3), cell, pbc


def read_matbench(path: pathlib.Path, targets) -> FlatStructures:
    """MatBench task file: {"index": [...ids], "columns": ["structure", "<target>"], "data": [[structure, target]]}."""
    try:
        text = _read_text(path)
        doc = json.loads(text)
    except Exception as e:
        raise ValueError(f"fpcore.data: cannot read {path} as MatBench JSON: {type(e).__name__}: {e}") from e
    if not isinstance(doc, dict) or not {"columns", "data"} <= doc.keys():
        raise ValueError(f"fpcore.data: {path} is not a MatBench task file (expected keys 'index', 'columns', 'data')")
    columns = list(doc["columns"])
    data = doc["data"]
    index = doc.get("index") or list(range(len(data)))
    s_col = columns.index("structure") if "structure" in columns else 0
    label_cols = [c for c in range(len(columns)) if c != s_col]
    t_cols = []
    for key in targets or []:
        if key not in columns or columns.index(key) == s_col:
            raise _missing_target(key, f"{path}", [columns[c] for c in label_cols])
        t_cols.append(columns.index(key))
    collector = Collector(targets)
    for k, row in enumerate(data):
        sid = str(index[k])
        where = f"structure {sid!r} (row {k}) of {path}"
        numbers, positions, cell, pbc = structure_from_pymatgen_dict(row[s_col], where)
        labels = [_scalar_label(row[c], columns[c], where) if row[c] is not None else math.nan for c in t_cols]
        collector.add(sid, numbers, positions, cell, pbc, labels if targets else None)
    collector.end_source(str(path))
    return collector.finish()


READERS = {"extxyz": read_extxyz, "db": read_db, "cif": read_cif_folder, "matbench": read_matbench}
