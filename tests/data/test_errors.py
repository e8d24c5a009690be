import numpy as np
import pytest

from fpcore.data import load_dataset

from .helpers import make_structures, write_extxyz, write_matbench


def _load(path, **kw):
    return load_dataset(path, cache_dir=False, progress=False, **kw)


def test_missing_file_and_unmatched_glob(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope.extxyz' does not exist"):
        _load(tmp_path / "nope.extxyz")
    with pytest.raises(FileNotFoundError, match=r"no file matches .*part\*.xyz"):
        _load(str(tmp_path / "part*.xyz"))
    with pytest.raises(ValueError, match=r"no input given"):
        _load([])


def test_unsupported_suffix_and_format(tmp_path):
    (tmp_path / "s.pdb").write_text("x")
    with pytest.raises(ValueError, match=r"unsupported input .*s.pdb.*\.extxyz"):
        _load(tmp_path / "s.pdb")
    with pytest.raises(ValueError, match=r"unknown format 'pdb'"):
        _load(tmp_path / "s.pdb", format="pdb")
    with pytest.raises(ValueError, match=r"unknown built-in dataset 'nope'; available: finetune, pretrain"):
        load_dataset("builtin:nope")


def test_unknown_element_symbol_names_file_and_structure(tmp_path):
    structures = make_structures(3)
    path = write_extxyz(tmp_path / "bad.extxyz", structures)
    text = path.read_text().splitlines()
    # Structure s-1 starts after frame 0 (natoms + 2 lines); its first atom line is 2 lines further.
    line = len(structures[0]) + 2 + 2
    text[line] = "Xq" + text[line][2:]
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(
        ValueError, match=rf"unknown element symbol 'Xq' in .*bad.extxyz \(frame 1 \(id 's-1'\), line {line + 1}\)"
    ):
        _load(path)


def test_atomic_number_zero_names_structure(tmp_path):
    structures = make_structures(3)
    structures[2].numbers[0] = 0  # ase writes it as the placeholder symbol X
    path = write_extxyz(tmp_path / "x.extxyz", structures)
    with pytest.raises(ValueError, match=r"structure 's-2' \(#2\) of .*x.extxyz has atomic number 0 at atom 0"):
        _load(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_label_and_position(tmp_path, bad):
    structures = make_structures(4)
    structures[3].info["gap"] = bad
    path = write_extxyz(tmp_path / "nan.extxyz", structures)
    _load(path, targets=["e_form"])  # the bad label is not requested
    with pytest.raises(ValueError, match=r"label 'gap' of structure 's-3' \(#3\) of .*nan.extxyz is (nan|inf)"):
        _load(path, targets=["gap"])
    structures = make_structures(4)
    structures[1].positions[-1, 2] = bad
    path = write_extxyz(tmp_path / "nanpos.extxyz", structures)
    with pytest.raises(
        ValueError, match=r"structure 's-1' \(#1\) of .*nanpos.extxyz has a non-finite position .* at atom 1"
    ):
        _load(path)


def test_missing_target_lists_available_keys(tmp_path):
    path = write_extxyz(tmp_path / "s.extxyz", make_structures(2))
    with pytest.raises(
        KeyError, match=r"target 'band_gap' is missing from structure 's-0' .*s.extxyz; available keys: e_form, gap, id"
    ):
        _load(path, targets=["band_gap"])
    with pytest.raises(ValueError, match=r"label 'id' of structure 's-0'.* is not a number: 's-0'"):
        _load(path, targets=["id"])
    with pytest.raises(ValueError, match=r"duplicate target names"):
        _load(path, targets=["gap", "gap"])


def test_empty_dataset(tmp_path):
    (tmp_path / "empty.extxyz").write_text("")
    with pytest.raises(ValueError, match=r"the dataset .*empty.extxyz is empty"):
        _load(tmp_path / "empty.extxyz")
    write_matbench(tmp_path / "matbench_empty.json", [])
    with pytest.raises(ValueError, match=r"is empty"):
        _load(tmp_path / "matbench_empty.json", targets=["gap"])


def test_unparsable_file(tmp_path):
    (tmp_path / "junk.xyz").write_text("3\ncomment\nCu 0 0\n")
    with pytest.raises(ValueError, match=r"cannot parse .*junk.xyz as extended XYZ"):
        _load(tmp_path / "junk.xyz")
    (tmp_path / "matbench_junk.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"cannot read .*matbench_junk.json as MatBench JSON"):
        _load(tmp_path / "matbench_junk.json")


def test_invalid_errors_are_not_cached(tmp_path):
    structures = make_structures(2)
    structures[0].info["gap"] = np.nan
    path = write_extxyz(tmp_path / "s.extxyz", structures)
    with pytest.raises(ValueError, match="NaN or inf"):
        load_dataset(path, targets=["gap"], cache_dir=tmp_path / "cache", progress=False)
    assert not list((tmp_path / "cache").glob("datasets/*"))
