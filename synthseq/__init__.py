"""synthseq: GAN-based MRI sequence synthesis (T2w -> pseudo-STIR) for spine imaging.

Public API (kept small):

>>> from synthseq import load_volume, save_volume, Synthesizer
>>> # vol = load_volume("sub-01_T2w.nii.gz")
>>> # stir = Synthesizer.from_checkpoint("runs/pix2pix/best.pt")(vol)
>>> # save_volume(stir, "sub-01_pseudoSTIR.nii.gz", dtype="float32")
"""

from ._version import __version__
from .config import Config, load_config
from .errors import ConfigError, InputError, SynthseqError
from .io import Volume, load_volume, save_volume


def __getattr__(name: str):
    # Synthesizer pulls in torch and the models: import it only when asked for.
    if name == "Synthesizer":
        from .synthesis import Synthesizer

        return Synthesizer
    raise AttributeError(f"module 'synthseq' has no attribute {name!r}")


__all__ = [
    "Config", "ConfigError", "InputError", "Synthesizer", "SynthseqError", "Volume", "__version__",
    "load_config", "load_volume", "save_volume",
]
