"""Where pseudo-STIR comes from: a synthesizer (checkpoint or any callable), a folder, or a cache.

:class:`PseudoStirSource` hands out one pseudo-STIR :class:`~synthseq.io.Volume` per subject, on the T2w's grid.
Resolution order for subject ``s``: the in-memory cache, ``folder/**/s_pseudoSTIR.nii.gz`` (e.g. written by
``synthseq synthesize`` in folder mode, or by an earlier benchmark run), then ``synthesizer(t2w)``. Volumes it
synthesizes are written to ``cache_dir`` (atomically) when one is given, so a benchmark synthesizes each
subject once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import InputError
from ..io import Volume, load_volume, save_volume

Synth = Callable[[Volume], Volume]


def synthesizer_from_checkpoint(checkpoint: str | Path, device: str = "auto") -> Synth:
    """``synthseq.synthesis.Synthesizer.from_checkpoint(checkpoint, device)`` as a Volume -> Volume callable."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise InputError(f"{checkpoint}: no such checkpoint file")
    from ..synthesis import Synthesizer

    return Synthesizer.from_checkpoint(checkpoint, device=device)


class PseudoStirSource:
    """Pseudo-STIR per subject (see the module docstring).

    Args:
        synthesizer: any callable ``Volume (T2w) -> Volume (pseudo-STIR, same grid)``, or None.
        folder: a folder searched (recursively) for ``<subject>_pseudoSTIR.nii.gz``, or None.
        cache_dir: where synthesized volumes are written, or None (memory only).
    """

    def __init__(self, synthesizer: Synth | None = None, folder: str | Path | None = None,
                 cache_dir: str | Path | None = None) -> None:
        if synthesizer is None and folder is None:
            raise InputError("pseudo-STIR needs a synthesis checkpoint or a folder of *_pseudoSTIR.nii.gz")
        self.synthesizer = synthesizer
        self.folder = Path(folder) if folder is not None else None
        if self.folder is not None and not self.folder.is_dir():
            raise InputError(f"{self.folder}: pseudo-STIR folder not found")
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._memory: dict[str, Volume] = {}
        self._transform = None
        if synthesizer is not None and hasattr(synthesizer, "input_keys"):
            # a real Synthesizer: fill the sample's "stir" key through the MONAI transform, as pipelines do
            from ..synthesis import SynthesizeSequenced

            self._transform = SynthesizeSequenced(keys_in=["t2w"], key_out="stir", synthesizer=synthesizer,
                                                  only_if_missing=True)

    @classmethod
    def create(cls, checkpoint=None, folder=None, synthesizer: Synth | None = None, cache_dir=None,
               device: str = "auto") -> PseudoStirSource | None:
        """A source from whichever of ``synthesizer`` / ``checkpoint`` / ``folder`` is given (None if none is)."""
        if synthesizer is None and checkpoint is not None:
            synthesizer = synthesizer_from_checkpoint(checkpoint, device)
        if synthesizer is None and folder is None:
            return None
        return cls(synthesizer, folder, cache_dir)

    def _find(self, subject: str) -> Path | None:
        name = f"{subject}_pseudoSTIR.nii.gz"
        for root in (self.cache_dir, self.folder):
            if root is not None and root.is_dir():
                hits = sorted(root.rglob(name))
                if hits:
                    return hits[0]
        return None

    def get(self, subject: str, t2w: Volume) -> Volume:
        """Pseudo-STIR of ``subject`` on ``t2w``'s grid."""
        if subject in self._memory:
            return self._memory[subject]
        path = self._find(subject)
        if path is not None:
            vol = load_volume(path)
            if vol.shape != t2w.shape:
                raise InputError(f"{path}: grid {vol.shape} differs from the T2w grid {t2w.shape}")
        elif self.synthesizer is not None:
            vol = self._transform({"t2w": t2w})["stir"] if self._transform else self.synthesizer(t2w)
            if tuple(vol.shape) != tuple(t2w.shape):
                raise InputError(f"{subject}: synthesizer returned grid {vol.shape}, T2w is {t2w.shape}")
            if self.cache_dir is not None:
                save_volume(vol.with_data(vol.data), self.cache_dir / f"{subject}_pseudoSTIR.nii.gz",
                            dtype="float32", overwrite=True)
        else:
            raise InputError(f"{self.folder}: no {subject}_pseudoSTIR.nii.gz and no synthesis checkpoint given")
        self._memory[subject] = vol
        return vol
