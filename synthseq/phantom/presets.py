"""Acquisition grids of the phantom: ``default`` (clinical sagittal protocol) and ``tiny`` (CPU tests/demo)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class Preset:
    """A sagittal acquisition grid and the signal-to-noise range of its voxels.

    Attributes:
        matrix: in-plane voxels ``(anterior-posterior, superior-inferior)``.
        pixel_mm: in-plane voxel size (mm, square pixels).
        n_slices: sagittal slices (left-right), contiguous.
        slice_mm: slice thickness = slice spacing (mm).
        supersample: sub-slices simulated per slice for through-plane partial volume (odd, so the
            label maps can be read at the slice centre).
        dens_from_top_mm: nominal distance of the dens tip below the top edge of the field of view.
        snr_t2w: range of the per-subject T2w SNR (CSF signal / noise sigma).
        snr_stir: range of the STIR SNR (its CSF signal / noise sigma); STIR is usually run with more
            averages, which brings its SNR close to the T2w's.
        snr_t1w: range of the T1w SNR (muscle signal / noise sigma: CSF is dark on T1w).
    """

    name: str
    matrix: tuple[int, int]
    pixel_mm: float
    n_slices: int
    slice_mm: float
    supersample: int
    dens_from_top_mm: float
    snr_t2w: tuple[float, float]
    snr_stir: tuple[float, float]
    snr_t1w: tuple[float, float] = (20.0, 35.0)

    @property
    def fov_mm(self) -> tuple[float, float]:
        return (self.matrix[0] * self.pixel_mm, self.matrix[1] * self.pixel_mm)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, Preset] = {
    # 240 mm FOV, 256x256 (0.94 mm), 16 x 3 mm sagittal slices: a clinical cervical T2w/STIR protocol.
    "default": Preset("default", (256, 256), 0.9375, 16, 3.0, 3, 56.0, (22.0, 40.0), (18.0, 32.0),
                       (20.0, 35.0)),
    # 176 mm FOV, 64x64 (2.75 mm), 10 x 4 mm: C1-T2 in a few milliseconds. Bigger voxels, higher SNR.
    "tiny": Preset("tiny", (64, 64), 2.75, 10, 4.0, 3, 28.0, (35.0, 60.0), (28.0, 48.0),
                    (30.0, 50.0)),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name`` (ConfigError naming the key if unknown)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"preset: unknown phantom preset {name!r} (choose from {', '.join(PRESETS)})") from None
