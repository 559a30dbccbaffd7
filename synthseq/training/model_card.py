"""A model card per checkpoint: what it was trained on, how well it did, what it is for and where it fails.

Training writes ``MODEL_CARD.md`` beside ``best.pt`` each time ``best.pt`` is written, and stores the same text in
the checkpoint (``ckpt["model_card"]``), so a checkpoint copied alone still carries it; ``synthseq info CKPT``
prints it. The card is built from the checkpoint (config, inputs, plane, pixel spacing, normalization, best
validation metric, the subjects of each split, else the run folder's ``splits.json``; the data root's ``dataset.json``
for a phantom: preset and seed) and, once held-out subjects were evaluated, an evaluation ``summary.json``
(:func:`attach_evaluation`): test metrics with CIs and n, lesion-level contrast recovery per class, and from those
the lesion classes the model under-recovers (contrast recovery below :data:`UNDER_RECOVERY`).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..utils import atomic_write_text

CARD_NAME = "MODEL_CARD.md"
INTENDED_USE = "Research only, not for diagnosis."
#: Contrast recovery (pseudo-STIR lesion contrast / real STIR lesion contrast) below which a class is a known failure.
UNDER_RECOVERY = 0.8
#: Fewer evaluated lesions (subjects with the class) than this: "not conclusive".
MIN_CONCLUSIVE_N = 5
PSEUDO_METHOD = "pseudo_stir"
IMAGE_METRICS = ("ssim", "mae", "psnr", "lpips")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _ci(stat: Mapping[str, Any]) -> str:
    mean = _fmt(stat.get("mean"))
    lo, hi = stat.get("ci_low"), stat.get("ci_high")
    ci = f" (95% CI {_fmt(lo)} to {_fmt(hi)})" if lo is not None and hi is not None else ""
    return f"{mean}{ci}, n={stat.get('n', 'n/a')}"


def _val_metrics_from_log(run_dir: Path, step: Any) -> dict[str, float] | None:
    path = run_dir / "metrics.jsonl"
    if step is None or not path.is_file():
        return None
    found = None
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("step") == step:
            found = {k: v for k, v in row.items() if k not in ("step", "best")}
    return found


def card_facts(ckpt: Mapping[str, Any], run_dir: str | Path | None = None,
               val_metrics: Mapping[str, float] | None = None,
               evaluation: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything the card says, as a plain dict (see :func:`render_model_card`)."""
    cfg = ckpt.get("config") or {}
    data = cfg.get("data") or {}
    model = cfg.get("model") or {}
    run_dir = Path(run_dir) if run_dir is not None else None
    root = data.get("root")
    dataset: dict[str, Any] = {"root": root}
    meta = _read_json(Path(root) / "dataset.json") if root and Path(root).is_dir() else None
    if isinstance(meta, Mapping) and meta.get("generator") == "synthseq.phantom":
        dataset.update(kind="phantom", preset=meta.get("preset"), seed=meta.get("seed"),
                       field_strength_T=meta.get("field_strength_T"), n_subjects=len(meta.get("subjects") or {}))
    elif root:
        dataset["kind"] = "manifest" if str(root).endswith(".csv") else "folder"
    splits = ckpt.get("splits")
    if not isinstance(splits, Mapping) and run_dir is not None:
        splits = _read_json(run_dir / "splits.json")
    splits = {k: list(v) for k, v in splits.items()} if isinstance(splits, Mapping) else None
    best = dict(ckpt.get("best") or {})
    if val_metrics is None and run_dir is not None:
        val_metrics = _val_metrics_from_log(run_dir, best.get("step"))
    spacing = ckpt.get("pixel_spacing_mm")
    return {
        "kind": ckpt.get("kind"),
        "synthseq_version": ckpt.get("synthseq_version"),
        "step": ckpt.get("step"),
        "generator": model.get("generator"),
        "generator_kwargs": model.get("generator_kwargs") or {},
        "dataset": dataset,
        "split": {"val_fraction": data.get("val_fraction"), "test_fraction": data.get("test_fraction"),
                  "split_seed": data.get("split_seed"), "subjects": splits},
        "inputs": list(ckpt.get("input_keys") or data.get("input_keys") or ["T2w"]),
        "target": data.get("target_key", "STIR"),
        "context_slices": ckpt.get("context_slices", data.get("context_slices", 1)),
        "slice_plane": ckpt.get("slice_plane") or data.get("slice_plane") or "sagittal",
        "pixel_spacing_mm": None if spacing is None else [float(s) for s in spacing],
        "image_size": ckpt.get("image_size", data.get("image_size")),
        "normalization": dict(ckpt.get("preprocessing") or ckpt.get("normalization") or {}),
        "paired": data.get("paired", True),
        "best": best,
        "val_metrics": dict(val_metrics) if val_metrics else None,
        "evaluation": dict(evaluation) if evaluation else None,
    }


def lesion_results(evaluation: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per lesion class of an evaluation summary: the pseudo-STIR's contrast recovery (``cr``), step recovery
    (``sr``, None in summaries that predate it) and CNR (``cnr``) stats (``{"mean", "ci_low", "ci_high", "n"}``),
    and each baseline's contrast recovery (``baselines``)."""
    methods = evaluation.get("methods") or {}
    ours = methods.get(PSEUDO_METHOD) or {}
    out: dict[str, dict[str, Any]] = {}
    for col, stat in ours.items():
        if not col.startswith("cr_"):
            continue
        name = col[3:]
        out[name] = {"cr": stat, "sr": ours.get(f"sr_{name}"), "cnr": ours.get(f"cnr_{name}"),
                     "baselines": {m: v[col] for m, v in methods.items() if m != PSEUDO_METHOD and col in v}}
    return out


def held_out_check(evaluation: Mapping[str, Any], splits: Mapping[str, Any] | None) -> list[str]:
    """Evaluated subjects that the checkpoint's split put in train or val (empty when none, or no split known)."""
    if not splits:
        return []
    seen = set(splits.get("train") or []) | set(splits.get("val") or [])
    return [s for s in evaluation.get("subjects") or [] if s in seen]


def failure_modes(facts: Mapping[str, Any]) -> list[str]:
    """Known failure modes: measured ones (under-recovered lesion classes) first, then those by design."""
    out = []
    evaluation = facts.get("evaluation")
    if evaluation:
        for name, r in lesion_results(evaluation).items():
            cr, n = r["cr"].get("mean"), r["cr"].get("n") or 0
            if cr is None:
                continue
            caveat = f"; n < {MIN_CONCLUSIVE_N}: not conclusive" if n < MIN_CONCLUSIVE_N else ""
            if cr < UNDER_RECOVERY:
                out.append(f"Under-recovers **{name.replace('_', ' ')}**: contrast recovery {_ci(r['cr'])} "
                           f"(below {UNDER_RECOVERY}){caveat}. A lesion of this class may be faint or absent on the "
                           f"pseudo-STIR.")
        if not out:
            out.append(f"No evaluated lesion class fell below contrast recovery {UNDER_RECOVERY}.")
    else:
        out.append("Not evaluated on held-out test subjects yet: lesion-level recovery is unknown (run "
                   "`synthseq evaluate` and attach its summary.json to this card).")
    ds = facts.get("dataset") or {}
    if ds.get("kind") == "phantom":
        out.append("Trained on a synthetic phantom: on real scans (other scanners, protocols, anatomy, artefacts) "
                   "its behaviour is not measured.")
    out.append("May erase focal findings that the input shows, or paint bright foci that no input supports; always "
               "read it next to the acquired images.")
    out.append(f"Slice-wise ({facts.get('slice_plane')}, {facts.get('context_slices')} context slice(s)): "
               "intensities can be inconsistent between neighbouring slices.")
    return out


def render_model_card(facts: Mapping[str, Any], date: _dt.datetime | None = None) -> str:
    """Markdown text of the card."""
    ds, split = facts.get("dataset") or {}, facts.get("split") or {}
    lines = [f"# Model card: synthseq {facts.get('kind')} ({' + '.join(facts['inputs'])} -> pseudo-{facts['target']})",
             "",
             f"Written {(date or _dt.datetime.now(_dt.timezone.utc)).isoformat(timespec='seconds')} by synthseq "
             f"{facts.get('synthseq_version')}; checkpoint at optimizer step {facts.get('step')}.",
             "", "## Intended use", "", f"**{INTENDED_USE}** Its outputs are SYNTHETIC images (pseudo-STIR), not "
             "acquired ones; they must never replace an acquired STIR or be read without the acquired images.",
             "", "## Model", "",
             f"- GAN: {facts.get('kind')} ({'paired' if facts.get('paired') else 'unpaired'}), generator "
             f"{facts.get('generator')} {json.dumps(facts.get('generator_kwargs') or {}, sort_keys=True)}",
             "", "## Training data", ""]
    if ds.get("kind") == "phantom":
        lines.append(f"- Phantom (synthseq.phantom) preset **{ds.get('preset')}**, seed {ds.get('seed')}, "
                     f"{ds.get('field_strength_T')} T, {ds.get('n_subjects')} subjects, at `{ds.get('root')}`")
    else:
        lines.append(f"- Dataset: `{ds.get('root')}` ({ds.get('kind', 'unknown')})")
    subjects = split.get("subjects")
    if subjects:
        for part in ("train", "val", "test"):
            ids = subjects.get(part) or []
            shown = ", ".join(ids[:12]) + (f", ... ({len(ids) - 12} more)" if len(ids) > 12 else "")
            lines.append(f"- {part}: {len(ids)} subject(s){': ' + shown if ids else ''}")
    else:
        lines.append("- split: not recorded (no splits.json beside the checkpoint)")
    lines.append(f"- split by subject: val_fraction {split.get('val_fraction')}, test_fraction "
                 f"{split.get('test_fraction')}, split_seed {split.get('split_seed')}")
    spacing = facts.get("pixel_spacing_mm")
    norm = facts.get("normalization") or {}
    lines += ["", "## Inputs and preprocessing", "",
              f"- inputs: {', '.join(facts['inputs'])}; target: {facts['target']}",
              f"- slice plane: {facts.get('slice_plane')}; context slices: {facts.get('context_slices')}",
              f"- pixel spacing: {' x '.join(f'{s:g}' for s in spacing) + ' mm' if spacing else 'native'}; "
              f"training crop {facts.get('image_size')} px",
              f"- normalization: {norm.get('method', 'n/a')} {norm.get('percentiles', '')}"
              + (f", mask {norm['mask']}" if norm.get("mask") else ""),
              "", "## Validation", ""]
    best, val = facts.get("best") or {}, facts.get("val_metrics")
    n_val = len((subjects or {}).get("val") or []) if subjects else None
    n_val_text = f"validation subjects: {n_val if n_val is not None else 'n/a'}"
    if best.get("rule") == "final":  # train.best_checkpoint: final
        lines.append(f"- the final step, {best.get('step')} (validation {best.get('metric', 'ssim')} "
                     f"{_fmt(best.get('value'))}; {n_val_text})")
    else:
        lines.append(f"- best {best.get('metric', 'ssim')}: {_fmt(best.get('value'))} at step {best.get('step')}"
                     f" ({n_val_text})")
    if val:
        lines.append("- at that step: " + ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(val.items())))
    lines += ["", "## Test (held-out subjects)", ""]
    ev = facts.get("evaluation")
    if ev:
        ours = (ev.get("methods") or {}).get(PSEUDO_METHOD) or {}
        lines.append(f"{ev.get('n_subjects', 'n/a')} subject(s): {', '.join(ev.get('subjects') or [])}")
        seen = held_out_check(ev, subjects)
        if seen:
            lines += ["", f"**WARNING: {len(seen)} evaluated subject(s) were used in training or validation "
                      f"({', '.join(seen)}): these are not held-out test results.**"]
        lines.append("")
        for m in IMAGE_METRICS:
            if m in ours and ours[m].get("mean") is not None:
                lines.append(f"- {m}: {_ci(ours[m])}")
        results = lesion_results(ev)
        if results:
            baselines = sorted({b for r in results.values() for b in r["baselines"]})
            lines += ["", "Lesion level (contrast recovery = lesion contrast in pseudo-STIR / in real STIR; step "
                      "recovery = lesion-minus-reference intensity step in pseudo-STIR / in real STIR; n = "
                      "subjects with the class):", "",
                      "| lesion class | contrast recovery | step recovery | CNR pseudo-STIR | " + " | ".join(
                          f"recovery {b}" for b in baselines) + " |",
                      "|---|---|---|---|" + "---|" * len(baselines)]
            for name, r in results.items():
                cnr = _ci(r["cnr"]) if r.get("cnr") else "n/a"
                sr = _ci(r["sr"]) if r.get("sr") else "n/a"
                base = " | ".join(_fmt(r["baselines"].get(b, {}).get("mean")) for b in baselines)
                lines.append(f"| {name.replace('_', ' ')} | {_ci(r['cr'])} | {sr} | {cnr} | {base} |")
    else:
        lines.append("Not evaluated yet.")
    lines += ["", "## Known failure modes", "", *[f"- {f}" for f in failure_modes(facts)], ""]
    return "\n".join(lines)


def build_model_card(ckpt: Mapping[str, Any], run_dir: str | Path | None = None,
                     val_metrics: Mapping[str, float] | None = None,
                     evaluation: Mapping[str, Any] | None = None) -> str:
    """Markdown card of a checkpoint dict (see :func:`card_facts`)."""
    return render_model_card(card_facts(ckpt, run_dir, val_metrics, evaluation))


def write_model_card(ckpt: Mapping[str, Any], run_dir: str | Path, val_metrics: Mapping[str, float] | None = None,
                     evaluation: Mapping[str, Any] | None = None) -> str:
    """Write ``run_dir/MODEL_CARD.md`` (atomically) for the checkpoint about to be saved as ``best.pt``; returns
    the text, which the caller stores in the checkpoint as ``"model_card"``."""
    text = build_model_card(ckpt, run_dir, val_metrics, evaluation)
    atomic_write_text(Path(run_dir) / CARD_NAME, text)
    return text


def model_card_of(ckpt: Mapping[str, Any], path: str | Path | None = None) -> str:
    """The card stored in ``ckpt``, or one rendered from it (and the folder of ``path``) for checkpoints written
    before cards existed."""
    card = ckpt.get("model_card")
    if isinstance(card, str) and card.strip():
        return card
    return build_model_card(ckpt, Path(path).parent if path is not None else None)


def attach_evaluation(checkpoint: str | Path, summary: str | Path) -> Path:
    """Re-render the card of ``checkpoint`` with the test results of an evaluation ``summary.json`` and store it
    in the checkpoint (rewritten atomically) and in ``MODEL_CARD.md`` beside it.

    Raises:
        InputError: the checkpoint cannot be read, or ``summary`` is not an evaluation summary.
    """
    from .checkpoint import load_checkpoint, save_checkpoint

    checkpoint, summary = Path(checkpoint), Path(summary)
    ckpt = load_checkpoint(checkpoint)
    ev = _read_json(summary) if summary.is_file() else None
    if not isinstance(ev, Mapping) or not isinstance(ev.get("methods"), Mapping):
        raise InputError(f"{summary}: not an evaluation summary.json (no 'methods')")
    ckpt["model_card"] = write_model_card(ckpt, checkpoint.parent, evaluation=ev)
    save_checkpoint(ckpt, checkpoint)
    return checkpoint.parent / CARD_NAME


__all__ = ["CARD_NAME", "INTENDED_USE", "attach_evaluation", "build_model_card", "card_facts", "failure_modes",
           "held_out_check", "lesion_results", "model_card_of", "render_model_card", "write_model_card"]
