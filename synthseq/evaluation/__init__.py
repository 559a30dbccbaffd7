"""Evaluation of pseudo-STIR against real STIR: metric tables, bootstrap CIs, baselines, an HTML report.

:func:`evaluate_paths` takes files or phantom-layout folders (subjects paired by their ``sub-XXXX`` id), and writes

* ``metrics.csv``: one row per subject and method (``pseudo_stir`` and, when T2w inputs are given, the baselines of
  :mod:`synthseq.baselines`): ``mae``, ``psnr`` (dB), ``ssim`` (masked), ``lpips`` (NaN when unavailable, with
  ``lpips_available``), and per lesion class ``cr_<class>`` (contrast recovery), ``sr_<class>`` (step recovery: the
  lesion-to-reference intensity step over real STIR's, offset-free), ``rb_<class>`` (reference bias: the lesion's
  normal reference tissue in the method's image minus in real STIR, normalized units), ``cnr_<class>`` (lesion CNR in the
  method's image) and ``cnr_target_<class>`` (in real STIR) and, when the T2w is given, ``cnr_input_<class>`` (in the T2w: a lesion
  iso-intense on T2w, such as edema in fatty marrow, cannot be recovered by any T2w-only mapping);
* ``summary.json``: per method and metric the mean over subjects with a seeded 95 % percentile bootstrap CI
  (subjects resampled with replacement), plus the conventions used;
* ``report.html`` with ``montages/<subject>.png``: T2w | pseudo-STIR | STIR | |difference| | uncertainty (when an
  ``*_uncertainty.nii.gz`` lies beside the prediction) at the sagittal slices with the most lesion voxels,
  fixed display windows ([-1, 1] for images, [0, 1] for |difference|, [0, 0.25] for uncertainty, all in
  normalized units).

Conventions (see :mod:`synthseq.metrics`): each volume is normalized to [-1, 1] by its own 0.5 / 99.5 percentiles
inside the body mask, ``data_range = 2.0``; metrics are pooled over all body voxels of the volume's sagittal slices.
``pred_norm="input"`` instead maps each prediction with its T2w's NormParams -- the scale synthseq writes
pseudo-STIR and baselines in -- so their model-space output is scored as is: own-percentile renormalization
re-stretches a prediction whose range is compressed (e.g. an undertrained model), which can move its numbers a lot
(and makes any positive-slope linear baseline score exactly like the T2w itself).
The body mask comes from phantom tissue labels (``labels > 0`` and not airway), else from a ``--mask`` file, else is
estimated from the T2w (or the target) by :func:`synthseq.data.datasets.body_mask_from_intensity`.
The fair baselines are fit on ``train_subjects`` when given (the demo passes the training split), otherwise
leave-one-subject-out over the evaluated subjects; ``linear_oracle`` uses each subject's own STIR and is labelled
as an oracle.

The package: :mod:`.scoring` (metric rows and summary), :mod:`.figures` (montages), :mod:`.report` (HTML) and
:mod:`.files` (finding files, :func:`evaluate_paths`).
"""

from .figures import write_montage
from .files import evaluate_paths, parse_train_subjects
from .report import write_report
from .scoring import SubjectData, bootstrap_ci, evaluate_volumes, input_params, summarize

__all__ = ["SubjectData", "bootstrap_ci", "evaluate_paths", "evaluate_volumes", "input_params",
           "parse_train_subjects", "summarize", "write_montage", "write_report"]
