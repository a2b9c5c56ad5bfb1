"""ROAD's linear imputation against the reference's per-image sparse direct solve (scipy
``spsolve``), through both solvers (the exact row sweep and conjugate gradients) and the
dispatch between them; and the benchmark section that times it."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import Tensor

import sgt.imputation as imputation
from experiments.bench import road
from experiments.bench.measure import Context
from sgt.imputation import linear_imputation, twelve_neighbour_sum
from tests.test_road import reference_imputation

pytest.importorskip("scipy")
CPU = torch.device("cpu")


def spsolve(images: Tensor, missing: Tensor) -> Tensor:
    """Per image: the reference's sparse system solved by ``scipy.sparse.linalg.spsolve``."""
    return torch.from_numpy(road.spsolve_all(images, missing))


def square(batch: int, size: tuple[int, int], top: int, left: int, side: int) -> Tensor:
    missing = torch.zeros(batch, *size, dtype=torch.bool)
    missing[:, top:top + side, left:left + side] = True
    return missing


def solver(name: str, images: Tensor, missing: Tensor, tol: float = 1e-10) -> Tensor:
    """One solver on the whole batch, bypassing the dispatch."""
    if name == "direct":
        return imputation._direct(images.double(), missing)
    return imputation._conjugate_gradients(images.double(), missing, tol, None)


def masks(kind: str, batch: int, size: tuple[int, int], g: torch.Generator) -> Tensor:
    if kind.startswith("scattered"):
        return torch.rand(batch, *size, generator=g) < float(kind.split()[1])
    if kind == "block":  # a square in the middle, away from the edge
        return square(batch, size, size[0] // 4, size[1] // 4, min(size) // 2)
    if kind == "corner":  # touches two edges
        return square(batch, size, 0, 0, min(size) // 2 + 1)
    if kind == "strip":  # a band along the top edge: wider than tall (the sweep turns)
        missing = torch.zeros(batch, *size, dtype=torch.bool)
        missing[:, :3, 1:] = True
        return missing
    raise ValueError(kind)


KINDS = ["scattered 0.5", "scattered 0.9", "block", "corner", "strip"]


def test_the_spsolve_baseline_is_the_references_system() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 2, 6, 7, generator=g, dtype=torch.float64)
    missing = torch.rand(3, 6, 7, generator=g) < 0.6
    missing[:, 0, 0] = False
    expected = torch.stack([reference_imputation(i, m) for i, m in zip(images, missing,
                                                                        strict=True)])
    assert torch.allclose(spsolve(images, missing), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_the_fill_equals_the_per_image_sparse_solve(kind: str, channels: int,
                                                    dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(1)
    images = torch.rand(6, channels, 16, 16, generator=g).to(dtype)
    missing = masks(kind, 6, (16, 16), g)
    out = linear_imputation(images, missing)
    assert out.dtype == torch.float64
    assert (out - spsolve(images, missing)).abs().max() < 1e-6
    assert torch.equal(out[~missing[:, None].expand_as(out)],
                       images.double()[~missing[:, None].expand_as(out)])


@pytest.mark.parametrize("name", ["direct", "iterative"])
@pytest.mark.parametrize("kind", KINDS)
def test_each_solver_alone_equals_the_sparse_solve(name: str, kind: str) -> None:
    g = torch.Generator().manual_seed(2)
    images = torch.randn(4, 3, 9, 13, generator=g, dtype=torch.float64)  # not square
    missing = masks(kind, 4, (9, 13), g)
    missing[:, 4, 6] = False  # a kept pixel in every image
    assert (solver(name, images, missing) - spsolve(images, missing)).abs().max() < 1e-8


def test_hole_depth_is_the_distance_to_the_nearest_kept_pixel_or_edge() -> None:
    holes = torch.cat([square(1, (32, 32), 9, 9, 5), square(1, (32, 32), 9, 9, 6),
                       square(1, (32, 32), 0, 0, 4), torch.zeros(1, 32, 32, dtype=torch.bool)])
    holes[3, 20, 7] = True
    assert imputation._hole_depth(holes, 16).tolist() == [3, 3, 2, 1]
    assert imputation._hole_depth(holes, 2).tolist() == [2, 2, 2, 1]  # counted up to limit


def test_the_sweep_takes_small_windows_and_deep_holes_conjugate_gradients_the_rest() -> None:
    def centre_square(side: int) -> Tensor:  # a square hole, and two corner pixels that
        holes = square(1, (32, 32), 9, 9, side)  # stretch the window to the whole image
        holes[0, 0, 0] = holes[0, 31, 31] = True
        return holes

    g = torch.Generator().manual_seed(3)
    scattered = torch.rand(1, 32, 32, generator=g) < 0.5
    nothing, everything = torch.zeros(1, 32, 32, dtype=torch.bool), torch.ones(1, 32, 32,
                                                                              dtype=torch.bool)
    quarter = square(1, (32, 32), 5, 9, 16)  # a window of a quarter of the image
    holes = torch.cat([scattered, centre_square(12), centre_square(13), quarter, nothing,
                       everything])
    # whole-image window, 3 channels: the sweep wins from depth 0.6 * 32^3 / (3 * 32^2) = 6.4
    assert imputation._hole_depth(holes, 16)[1:3].tolist() == [6, 7]
    assert imputation._prefers_sweep(holes, 3).tolist() == [False, False, True, True, False,
                                                            False]
    # one channel: conjugate gradients costs a third, the depth-7 hole stays with it
    assert imputation._prefers_sweep(holes, 1).tolist() == [False, False, False, True, False,
                                                            False]


def test_a_batch_split_between_the_solvers_is_solved_alike(monkeypatch) -> None:
    g = torch.Generator().manual_seed(4)
    images = torch.rand(6, 3, 20, 20, generator=g)
    missing = torch.cat([masks("scattered 0.5", 3, (20, 20), g),
                         masks("corner", 2, (20, 20), g), masks("block", 1, (20, 20), g)])
    expected = spsolve(images, missing)
    assert imputation._prefers_sweep(missing, 3).tolist() == [False] * 3 + [True] * 3
    assert (linear_imputation(images, missing) - expected).abs().max() < 1e-6
    # the exact solve in chunks of one image (a small memory budget) gives the same
    monkeypatch.setattr(imputation, "DIRECT_BYTES", 1)
    assert (linear_imputation(images, missing) - expected).abs().max() < 1e-6


def test_conjugate_gradients_reaches_float64_accuracy_from_float32_rounds() -> None:
    g = torch.Generator().manual_seed(6)
    images = torch.rand(4, 3, 24, 24, generator=g, dtype=torch.float64)
    missing = masks("scattered 0.9", 4, (24, 24), g)
    expected = spsolve(images, missing)
    rounds: list[int] = []
    real = imputation._cg_round
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(imputation, "_cg_round", lambda *a: rounds.append(1) or real(*a))
        loose = solver("iterative", images, missing, tol=1e-6)
        loose_rounds = len(rounds)
        tight = solver("iterative", images, missing, tol=1e-12)
    # one float32 round reduces the residual by ROUND_TOL = 1e-4 at best: 1e-6 takes two
    # rounds, 1e-12 at least three, each correcting the float64 residual of the last
    assert loose_rounds == 2 and len(rounds) - loose_rounds >= 3
    assert 1e-9 < (loose - expected).abs().max() < 1e-5
    assert (tight - expected).abs().max() < 1e-10
    # the residual of the float64 system itself is within tol of its right-hand side
    m = missing.unsqueeze(1).double()
    rhs = twelve_neighbour_sum(images * (1 - m)) * m
    twelve_s = twelve_neighbour_sum(torch.ones(24, 24, dtype=torch.float64)) - 4
    x = tight * m
    residual = (twelve_s * x - (twelve_neighbour_sum(x) - 4 * x)) * m - rhs
    assert (residual.flatten(2).norm(dim=2) <= 1e-12 * rhs.flatten(2).norm(dim=2)).all()


def test_converged_systems_leave_the_batch_without_changing_the_others(monkeypatch) -> None:
    g = torch.Generator().manual_seed(7)
    images = torch.rand(3, 2, 16, 16, generator=g, dtype=torch.float64)
    # a few scattered pixels converge in a few iterations, a 90 % mask takes many more
    missing = torch.cat([masks("scattered 0.1", 2, (16, 16), g),
                         masks("scattered 0.9", 1, (16, 16), g)])
    sizes: list[int] = []
    real = imputation._Stencil.apply
    monkeypatch.setattr(imputation._Stencil, "apply",
                        lambda self, out: sizes.append(len(out)) or real(self, out))
    monkeypatch.setattr(imputation, "COMPACT_EVERY", 1)
    compacted = solver("iterative", images, missing)
    # (image, channel) systems: 6, then only the slow image's 2 (or the slower channel)
    assert sizes[0] == 6 and min(sizes) in (1, 2)
    compacted_sizes = sizes[:]
    monkeypatch.setattr(imputation, "COMPACT_EVERY", 10**6)
    sizes.clear()
    whole = solver("iterative", images, missing)
    # without dropping, every system iterates until the slowest of its round is done
    assert sizes.count(6) > compacted_sizes.count(6) + 10
    expected = spsolve(images, missing)
    assert (compacted - expected).abs().max() < 1e-8 and (whole - expected).abs().max() < 1e-8


def rectangle_masks() -> Tensor:
    """Solid rectangles in 20 × 24 images, and shapes that are not (or touch all sides)."""
    missing = torch.zeros(10, 20, 24, dtype=torch.bool)
    missing[0, 3:9, 2:10] = True  # inside
    missing[1, 0:5, 4:20] = True  # on the top edge
    missing[2, 15:20, 1:23] = True  # on the bottom edge, one pixel from each side
    missing[3, 0:20, 3:4] = True  # a column from top to bottom
    missing[4, 6:9, 2:10] = True  # another size inside
    missing[5, 4:10, 0:6] = True  # on the left edge: solved transposed
    missing[6, 10:13, 18:24] = True  # on the right edge: solved transposed
    missing[7, 0:7, 0:7] = True  # a corner: touches a side and an end
    missing[8, 3:9, 2:10] = True  # not solid
    missing[8, 5, 5] = False
    return missing  # image 9: nothing missing


def test_solid_rectangles_are_told_apart_by_the_edges_they_touch() -> None:
    across, down = imputation._solid_rectangles(rectangle_masks())
    assert across.tolist() == [True] * 5 + [False] * 5
    assert down.tolist() == [False] * 5 + [True, True] + [False] * 3


@pytest.mark.parametrize("channels", [1, 3])
def test_solid_rectangles_are_solved_exactly_by_the_sine_transform(channels: int,
                                                                  monkeypatch) -> None:
    g = torch.Generator().manual_seed(8)
    images = torch.randn(10, channels, 20, 24, generator=g, dtype=torch.float64)
    missing = rectangle_masks()
    seen: list[int] = []
    real = imputation._rectangles
    monkeypatch.setattr(imputation, "_rectangles",
                        lambda x, m: seen.append(len(x)) or real(x, m))
    out = linear_imputation(images, missing)
    assert seen == [5, 2]  # across (two sizes, one call), then the transposed two
    assert (out - spsolve(images, missing)).abs().max() < 1e-12  # exact, not iterated
    assert torch.equal(out[9], images[9])


def test_nothing_missing_one_pixel_kept_and_no_pixel_kept() -> None:
    g = torch.Generator().manual_seed(5)
    images = torch.rand(3, 3, 12, 12, generator=g)
    missing = torch.ones(3, 12, 12, dtype=torch.bool)
    missing[0] = False  # nothing to impute
    missing[1, 7, 2] = False  # one kept pixel: every removed one takes its value
    out = linear_imputation(images, missing)
    assert torch.equal(out[0], images[0].double())
    assert (out[1] - images[1, :, 7, 2].double()[:, None, None]).abs().max() < 1e-9
    assert (out[1] - spsolve(images[1:2], missing[1:2])[0]).abs().max() < 1e-6
    assert torch.equal(out[2], torch.zeros_like(out[2]))  # no kept pixel: 0, as documented


def test_the_solve_runs_on_one_cpu_thread_and_restores_the_setting(monkeypatch) -> None:
    seen = []
    real = imputation._imputation
    monkeypatch.setattr(imputation, "_imputation",
                        lambda *a: seen.append(torch.get_num_threads()) or real(*a))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        linear_imputation(torch.rand(1, 1, 4, 4), torch.rand(1, 4, 4) < 0.5)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow  # ~9 s; test_benchmark's quick suite runs this section too
def test_the_road_benchmark_section_compares_every_mask_shape() -> None:
    ctx = Context(device=CPU, quick=True, deadline=time.monotonic() + 30)
    figures = {f.name: f for f in road.run(ctx)}
    for shape in road.SHAPES:
        for name in ("ours", "spsolve per image", "ours vs spsolve"):
            assert figures[f"{shape}: {name}"].median > 0
        assert figures[f"{shape}: ours vs spsolve"].unit == "x"
        assert float(figures[f"{shape}: ours vs spsolve"].note.split()[-1]) < 1e-6
    assert any(name.startswith("imputation per 10 000") for name in figures)
    assert all(f.section == "road" and f.n >= 1 for f in figures.values())


def test_the_section_stops_at_its_deadline() -> None:
    ctx = Context(device=CPU, quick=True, deadline=time.monotonic() - 1)
    assert list(road.run(ctx)) == []


def test_spsolve_one_handles_an_image_with_nothing_missing() -> None:
    image = np.random.default_rng(0).random((2, 3, 3))
    assert np.array_equal(road.spsolve_one(image, np.zeros((3, 3), dtype=bool)), image)
