"""fpcore.ops: one typed function per registered operator, whose keywords are the schema's argument names."""

import inspect

import torch

import fpcore
from fpcore import ops

from .test_opcheck import registered_operators


def keyword_names(function) -> list[str]:
    """The function's keywords, with a GMP `tables` argument expanded into the tables' fields."""
    names = []
    for name, parameter in inspect.signature(function).parameters.items():
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, f"{function.__name__}: {name} is not keyword-only"
        names += list(ops.GMPTables._fields) if name == "tables" else [name]
    return names


def test_one_function_per_operator_with_the_schema_names():
    for name in sorted(registered_operators()):
        schema = getattr(torch.ops.fpcore, name).default._schema
        function = getattr(ops, name, None)
        assert function is not None, f"fpcore.ops has no function for fpcore::{name}"
        assert keyword_names(function) == [a.name for a in schema.arguments], name
        assert function.__doc__, name


def test_several_outputs_come_as_named_tuples():
    gmp = fpcore.GMP(orders=[0, 1], sigmas=[0.5])
    positions = torch.tensor([[0.0, 0.0, 0.0], [1.1, 0.2, 0.0]], dtype=torch.float64)
    cells = torch.eye(3, dtype=torch.float64)[None] * 6
    nl = ops.neighbor_list(
        positions=positions, cells=cells, pbc=torch.zeros(1, 3, dtype=torch.bool), ptr=torch.tensor([0, 2]), cutoff=3.0
    )
    assert isinstance(nl, ops.NeighborListResult) and nl.i.tolist() == [0, 1] and nl.vectors.shape == (0, 3)
    geometry = ops.pair_geometry(
        positions=positions, cells=cells, batch=torch.zeros(2, dtype=torch.long), i=nl.i, j=nl.j, shifts=nl.shifts
    )
    torch.testing.assert_close(
        geometry.distances, torch.full((2,), float(torch.tensor([1.1, 0.2]).norm()), dtype=torch.float64)
    )
    row_ptr = torch.tensor([0, 1, 2])
    result = ops.gmp(
        vectors=geometry.vectors,
        row_ptr=row_ptr,
        neighbors_j=nl.j,
        numbers=torch.tensor([8, 1]),
        tables=gmp._tables(torch.float64, torch.device("cpu")),
        n_moments=gmp.n_moments,
        square=False,
    )
    assert isinstance(result, ops.GMPResult) and result.moments.shape == (2, gmp.n_moments)
    expected = gmp.compute(positions, torch.tensor([8, 1]), cells[0] * 0, torch.zeros(3, dtype=torch.bool))
    torch.testing.assert_close(result.features, expected)


def test_one_vocabulary_across_the_schemas():
    """Atomic numbers are `numbers`, output gradients `grad_<output>`, cutoff functions a name."""
    for name in sorted(registered_operators()):
        for argument in getattr(torch.ops.fpcore, name).default._schema.arguments:
            assert argument.name not in {"species", "z", "grad_output"}, f"fpcore::{name}: {argument.name}"
            if argument.name == "cutoff_fn":
                assert str(argument.type) == "str", f"fpcore::{name}: cutoff_fn is {argument.type}"
