"""Evaluation of a finished run: every generation's single model and ensemble against the baselines.

``evaluate_run(workdir)`` measures, on the validation split, the methods
  gen<g>_single         member 0 of generation g
  gen<g>_ensemble       the mean of all members of generation g
  temperature_scaling   generation-0 member 0, temperatures fit on the fit half of validation
  mc_dropout            generation-0 member 0 with its head dropout active, ``mc_passes`` passes
  dirichlet_single      the Dirichlet student (``gen<G>/dirichlet``, when the run has one): its mean
                        prediction alpha / alpha_0; OOD score its epistemic uncertainty (closed form)
  dirichlet_density     the same predictions; OOD score its feature density (``emenet_tf.density``)
Design (one split for every row): the predicted validation frames are cut at random (seeded, by
frame) into a fit half, used only to fit the temperatures, and an evaluation half on which EVERY
method is measured (``metrics.json``). The same figures over all predicted validation frames
(temperature_scaling left out: half of them fit it) go to ``metrics_full.json``.

Per task: recognition (ABAW2) and uncertainty (NLL, ECE with 10 bins, Brier, AURC). The AURC
ranks frames by the normalised entropy of the method's (mean) prediction - for an ensemble or MC
Dropout that is the total uncertainty - with errors: EXPR 0/1 misclassification, AU the mean
decision error over the frame's labelled AUs, VA the mean absolute error of the expectation over
the labelled dimensions. VA NLL / ECE / Brier treat valence and arousal as 20-bin categoricals
whose label is the bin of the annotated value.
Out of domain (validation faces negative, OOD images positive) by one score per image: for
ensembles, MC Dropout and the Dirichlet student the epistemic uncertainty (mutual information),
else the predictive normalised entropy; both averaged over the three tasks (EXPR; the mean over
the 12 AUs; the mean over V and A); for dirichlet_density the negative log feature density. On the synthetic benchmark also ``kl_true`` (KL(true || predicted), per frame,
averaged; AU per decision; VA over the bin distributions) and the Bayes limits.
"""

from __future__ import annotations

import gc
import math
import os
import tempfile

import numpy as np
from absl import logging

from edge.images import IMAGE_EXTENSIONS
from emenet_tf import locks, metrics, plots
from emenet_tf._keras import keras
from emenet_tf.baselines import TemperatureScaler, mc_predict
from emenet_tf.calibration import SPLIT_SEED, split_halves
from emenet_tf.config import TrainConfig
from emenet_tf.data import affwild2, label_model, synthetic
from emenet_tf.data.index import FrameIndex
from emenet_tf.density import GaussianDensity, predict_features
from emenet_tf.distributions import dirichlet_log_concentrations
from emenet_tf.errors import ConfigError, DataError, RunError
from emenet_tf.io import atomic_write_json, atomic_write_text, read_json
from emenet_tf.labels import NUM_AU, NUM_EXPR, TASKS, va_bin_centres, va_to_bin
from emenet_tf.rundir import DIRICHLET, METRICS, RunDir
from emenet_tf.temporal_inference import frame_source, predict_frames
from emenet_tf.uncertainty import (
    bernoulli_entropy,
    dirichlet_uncertainty,
    ensemble_uncertainty,
    normalised_entropy,
    va_expectation,
)

# ---------------------------------------------------------------- inputs


def evaluable_generations(run: RunDir, cfg: TrainConfig) -> int:
    """Generations 0..G-1 whose every member has finished (done.json); the first unfinished one stops it."""
    generations = run.finished_generations(cfg)
    if generations == 0:
        raise RunError(f"generation 0 is not finished: {run.unfinished_members(cfg, 0)[0]} has no done.json")
    if generations < cfg.generations:
        logging.warning(
            "generation %d is unfinished (%s); evaluating generations < %d",
            generations,
            run.unfinished_members(cfg, generations)[0],
            generations,
        )
    return generations


def default_ood_dir(data_dir: str) -> str | None:
    """``<data_dir>/ood`` (the synthetic benchmark's out-of-domain images) when it exists, else None."""
    folder = os.path.join(data_dir, "ood")
    return folder if os.path.isdir(folder) else None


def ood_index(folder: str, work: str) -> FrameIndex:
    """A label-less FrameIndex over the images of ``folder`` (non-JPEG ones transcoded into ``work``)."""
    if not os.path.isdir(folder):
        raise DataError("OOD folder does not exist", path=folder)
    files = sorted(f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in the OOD folder", path=folder)
    if any(not f.lower().endswith((".jpg", ".jpeg")) for f in files):
        files = [_as_jpeg(folder, f, work) for f in files]
        files = [f for f in files if f is not None]
        folder = work
    n = len(files)
    return FrameIndex(
        data_dir=folder,
        split="ood",
        paths=np.array(files),
        video=np.full(n, "ood"),
        frame=np.arange(1, n + 1, dtype=np.int32),
        au=np.zeros((n, NUM_AU), np.float32),
        au_mask=np.zeros((n, NUM_AU), np.float32),
        expr=np.zeros(n, np.int32),
        expr_mask=np.zeros(n, np.float32),
        va=np.zeros((n, 2), np.float32),
        va_mask=np.zeros((n, 2), np.float32),
    )


def _as_jpeg(folder: str, name: str, work: str) -> str | None:
    """``name`` as a JPEG inside ``work`` (symlink if it is one, else transcoded); None if unreadable."""
    import cv2

    src = os.path.join(folder, name)
    if name.lower().endswith((".jpg", ".jpeg")):
        os.symlink(os.path.abspath(src), os.path.join(work, name))
        return name
    image = cv2.imread(src, cv2.IMREAD_COLOR)
    if image is None:
        logging.warning("Skipping unreadable OOD image: %s", src)
        return None
    out = name + ".jpg"
    cv2.imwrite(os.path.join(work, out), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return out


def aligned_truth(data_dir: str, index: FrameIndex) -> dict | None:
    """The synthetic truth of every index row (rows without truth: nan); None for real data."""
    truth = synthetic.load_truth(data_dir, "validation")
    if truth is None:
        return None
    keys = np.char.add(
        np.char.add(np.asarray(truth["video"]).astype(str), "/"), np.asarray(truth["frame"]).astype(str)
    )
    lookup = dict(zip(keys.tolist(), range(len(keys)), strict=True))
    rows = np.array([lookup.get(k, -1) for k in index.keys().tolist()], np.int64)
    out = {"has": rows >= 0}
    arrays = {
        "expr": truth["expr_probs"],
        "au": truth["au_probs"],
        "va": label_model.va_true_bins(truth["va_mean"], truth["va_std"]),
        "va_mean": truth["va_mean"],
        "va_std": truth["va_std"],
    }
    for key, values in arrays.items():
        values = np.asarray(values, np.float64)[np.maximum(rows, 0)]
        out[key] = np.where(out["has"].reshape((-1,) + (1,) * (values.ndim - 1)), values, np.nan)
    return out


# ---------------------------------------------------------------- predictions


def task_mean(expr: np.ndarray, au: np.ndarray, va: np.ndarray) -> np.ndarray:
    """One score per frame from per-task scores: the mean of EXPR (N,), the mean over the 12 AUs
    (N, 12) and the mean over valence and arousal (N, 2), so each task weighs the same."""
    return np.mean([expr, au.mean(axis=-1), va.mean(axis=-1)], axis=0)


def entropy_score(probs: dict) -> np.ndarray:
    """Predictive uncertainty per frame: normalised entropies averaged over tasks (``task_mean``)."""
    return task_mean(
        normalised_entropy(probs["expr"]), bernoulli_entropy(probs["au"]), normalised_entropy(probs["va"])
    )


def epistemic_score(members: dict) -> np.ndarray:
    """Epistemic uncertainty (mutual information) per frame, averaged over tasks (``task_mean``)."""
    kind = {t: "bernoulli" if t == "au" else "categorical" for t in TASKS}
    return task_mean(**{t: ensemble_uncertainty(members[t], kind[t])["epistemic"] for t in TASKS})


def ensemble_score(members: dict, kind: str = "epistemic") -> np.ndarray:
    """OOD score of an ensemble (or MC Dropout passes) per frame, averaged over tasks (``--ood_score``):
    ``epistemic`` (mutual information) or ``total`` (entropy of the mean prediction)."""
    if kind == "epistemic":
        return epistemic_score(members)
    return entropy_score({t: members[t].mean(axis=0) for t in TASKS})


def dirichlet_predictions(outputs: dict) -> tuple[dict, np.ndarray]:
    """A Dirichlet student's mean probabilities and its epistemic score (averaged by ``task_mean``)
    from its raw outputs (logits and log-precisions)."""
    log_alpha = dirichlet_log_concentrations(outputs)
    parts = {t: dirichlet_uncertainty(np.exp(log_alpha[t].numpy().astype(np.float64))) for t in TASKS}
    probs = {t: parts[t]["mean_probs"] for t in TASKS}
    probs["au"] = probs["au"][..., 0]  # Beta(a, b) per AU: P(1) = a / (a + b)
    return probs, task_mean(**{t: parts[t]["epistemic"] for t in TASKS})


def _aligned(probs: dict, score: np.ndarray, frame_id: np.ndarray, n: int) -> dict:
    """Arrays indexed by index row (nan where the frame was not predicted) plus ``present``."""
    out = {"present": np.zeros(n, bool)}
    out["present"][frame_id] = True
    for key, value in {**probs, "score": score}.items():
        full = np.full((n,) + value.shape[1:], np.nan)
        full[frame_id] = value
        out[key] = full
    return out


def _method_pair(pred: dict, n: int, ood_score: str = "epistemic") -> dict:
    """gen single (member 0) and ensemble (mean) predictions from one ``keep_members`` pass."""
    members = {t: pred[f"members_{t}"] for t in TASKS}
    single = {t: members[t][0] for t in TASKS}
    mean = {t: pred[t] for t in TASKS}
    return {
        "single": _aligned(single, entropy_score(single), pred["frame_id"], n),
        "ensemble": _aligned(mean, ensemble_score(members, ood_score), pred["frame_id"], n),
    }


def collect_predictions(
    run: RunDir, cfg, generations: int, indices: dict, mc_passes: int, batch_size: int
) -> dict:
    """{method: {split: aligned arrays}} for every generation and MC Dropout (splits "val", "ood").

    Every model sees each split once; a member's probabilities serve its single row and the
    ensemble mean alike.
    """
    # A temporal run reads whole video segments; the OOD images are unrelated, each a segment alone.
    datasets = {s: frame_source(cfg, ix, batch_size, independent=s == "ood") for s, ix in indices.items()}
    methods: dict[str, dict] = {}
    for g in range(generations):
        models = [run.load_member(cfg, g, k) for k in range(cfg.ensemble_size)]
        for split, ds in datasets.items():
            pred = predict_frames(models, ds, keep_members=True)
            pair = _method_pair(pred, len(indices[split]), cfg.ood_score)
            for kind, arrays in pair.items():
                methods.setdefault(f"gen{g}_{kind}", {})[split] = arrays
        del models
        gc.collect()
    if cfg.dirichlet_student and generations == cfg.generations:  # its teacher is the last generation
        methods.update(dirichlet_methods(run, cfg, datasets, {s: len(ix) for s, ix in indices.items()}))
    if cfg.dropout > 0:
        # Its dropout masks come from the global random state: seeded here, so a run's own evaluation
        # and evaluate.py later (another process history) draw the same masks and the same figures.
        keras.utils.set_random_seed(cfg.seed)
        model = run.load_member(cfg, 0, 0, mc_dropout=True)
        for split, ds in datasets.items():
            pred = mc_predict(model, ds, mc_passes, predict=predict_frames)
            members = {t: pred[f"members_{t}"] for t in TASKS}
            mean = {t: pred[t] for t in TASKS}
            score = ensemble_score(members, cfg.ood_score)
            arrays = _aligned(mean, score, pred["frame_id"], len(indices[split]))
            methods.setdefault("mc_dropout", {})[split] = arrays
    else:
        logging.warning("the run has --dropout 0: no MC Dropout row")
    return methods


def dirichlet_methods(run: RunDir, cfg, datasets: dict, sizes: dict) -> dict:
    """{"dirichlet_single", "dirichlet_density": {split: aligned arrays}} (empty, with a warning,
    when the run's Dirichlet student or its density is missing)."""
    if not run.dirichlet_done(cfg) or not os.path.exists(run.density_path(cfg)):
        logging.warning(
            "%s is unfinished: no dirichlet rows (run train.py to finish it)", run.dirichlet_dir(cfg)
        )
        return {}
    net = run.load_member(cfg, run.dirichlet_generation(cfg), DIRICHLET)
    density = GaussianDensity.load(run.density_path(cfg))
    out: dict[str, dict] = {"dirichlet_single": {}, "dirichlet_density": {}}
    for split, ds in datasets.items():
        pred = predict_features(net, ds, density.layers)
        probs, epistemic = dirichlet_predictions(pred["outputs"])
        out["dirichlet_single"][split] = _aligned(probs, epistemic, pred["frame_id"], sizes[split])
        density_score = density.score(pred["features"])
        out["dirichlet_density"][split] = _aligned(probs, density_score, pred["frame_id"], sizes[split])
    return out


def add_temperature_scaling(methods: dict, index: FrameIndex, fit_rows: np.ndarray) -> TemperatureScaler:
    """Fit temperatures for gen0_single on ``fit_rows`` and add the ``temperature_scaling`` method."""
    base = methods["gen0_single"]
    labels = {
        "label_expr": index.expr,
        "label_expr_mask": index.expr_mask,
        "label_au": index.au,
        "label_au_mask": index.au_mask,
        "label_va": index.va,
        "label_va_mask": index.va_mask,
    }
    scaler = TemperatureScaler.fit({**{t: base["val"][t] for t in TASKS}, **labels}, rows=fit_rows)
    methods["temperature_scaling"] = {}
    for split, arrays in base.items():
        scaled = scaler.apply({t: arrays[t] for t in TASKS})
        methods["temperature_scaling"][split] = {
            **scaled,
            "present": arrays["present"],
            "score": entropy_score(scaled),
        }
    return scaler


# ---------------------------------------------------------------- metrics


def expr_metrics(probs, labels, mask) -> dict:
    """EXPR recognition and uncertainty on the labelled rows."""
    keep = mask > 0
    p, y = probs[keep], labels[keep]
    out = {}
    if keep.any():
        pred = p.argmax(axis=1)
        out = {
            "f1": metrics.macro_f1(y, pred, NUM_EXPR),
            "acc": metrics.accuracy(y, pred),
            "score": metrics.expr_score(y, pred),
            "nll": metrics.nll_categorical(p, y),
            "ece": metrics.ece_categorical(p, y),
            "brier": metrics.brier_categorical(p, y),
            "aurc": metrics.aurc(normalised_entropy(p), pred != y),
        }
    return out


def au_metrics(probs, labels, mask) -> dict:
    """AU recognition and uncertainty over the labelled decisions (flattened for NLL, ECE, Brier)."""
    rows = mask.sum(axis=1) > 0
    out = {}
    if rows.any():
        p, y, m = probs[rows], labels[rows], mask[rows]
        scores = metrics.au_scores(y, p, mask=m)
        wrong = ((p >= 0.5) != (y > 0.5)) * m
        out = {
            "f1": scores["f1"],
            "acc": scores["acc"],
            "score": scores["score"],
            "nll": metrics.nll_bernoulli(p, y, m),
            "ece": metrics.ece_bernoulli(p, y, m),
            "brier": metrics.brier_bernoulli(p, y, m),
            "aurc": metrics.aurc(bernoulli_entropy(p).mean(axis=1), wrong.sum(axis=1) / m.sum(axis=1)),
        }
    return out


def va_metrics(probs, values, mask) -> dict:
    """VA CCC of the bin expectations; NLL / ECE / Brier of the bins as 20-class categoricals."""
    rows = mask.sum(axis=1) > 0
    out = {}
    if rows.sum() > 1:
        p, v, m = probs[rows], values[rows], mask[rows]
        expect = va_expectation(p, va_bin_centres(p.shape[-1]))
        keep = m.reshape(-1) > 0
        flat_p = p.reshape(-1, p.shape[-1])[keep]
        flat_y = va_to_bin(v.reshape(-1)[keep], p.shape[-1])
        error = (np.abs(expect - v) * m).sum(axis=1) / m.sum(axis=1)
        out = {
            **metrics.va_scores(v, expect, mask=m),
            "nll": metrics.nll_va_bins(p, v, m),
            "ece": metrics.ece_categorical(flat_p, flat_y),
            "brier": metrics.brier_categorical(flat_p, flat_y),
            "aurc": metrics.aurc(normalised_entropy(p).mean(axis=1), error),
        }
    return out


def _kl_bernoulli(q, p) -> float:
    """Mean over entries of KL(Bernoulli(q) || Bernoulli(p))."""
    q, p = q.reshape(-1), p.reshape(-1)
    return metrics.kl_categorical(np.stack([q, 1 - q], -1), np.stack([p, 1 - p], -1))


def measure(arrays: dict, index: FrameIndex, rows: np.ndarray, truth: dict | None) -> dict:
    """{"expr", "au", "va"} metric dicts of one method's aligned ``arrays`` on index ``rows``.

    With ``truth``: ``kl_true`` per task over the rows that have a truth.
    """
    out = {
        "expr": expr_metrics(arrays["expr"][rows], index.expr[rows], index.expr_mask[rows]),
        "au": au_metrics(arrays["au"][rows], index.au[rows], index.au_mask[rows]),
        "va": va_metrics(arrays["va"][rows], index.va[rows], index.va_mask[rows]),
    }
    if truth is not None:
        has = rows[truth["has"][rows]]
        if len(has):
            out["expr"]["kl_true"] = metrics.kl_categorical(truth["expr"][has], arrays["expr"][has])
            out["au"]["kl_true"] = _kl_bernoulli(truth["au"][has], arrays["au"][has])
            out["va"]["kl_true"] = _kl_bins(truth["va"][has], arrays["va"][has])
    return out


def _kl_bins(q, p) -> float:
    """Mean over frames and the two VA dimensions of KL(q || p) over the bins."""
    return metrics.kl_categorical(q.reshape(-1, q.shape[-1]), p.reshape(-1, p.shape[-1]))


def ood_metrics(arrays: dict, rows: np.ndarray) -> dict:
    """AUROC / AUPR of the method's score: validation ``rows`` negative, every OOD image positive."""
    s_in = arrays["val"]["score"][rows]
    s_out = arrays["ood"]["score"][arrays["ood"]["present"]]
    return {"auroc": metrics.auroc(s_in, s_out), "aupr": metrics.aupr(s_in, s_out)}


def bayes_limits(truth: dict, index: FrameIndex, rows: np.ndarray, data_dir: str) -> dict:
    """Bayes limits: expected on the evaluation rows (``label_model.bayes_limits``), the truth measured
    as a predictor on their sampled labels (``oracle``), and synthetic_meta.json's for all validation."""
    has = rows[truth["has"][rows]]
    raw = {"expr_probs": truth["expr"][has], "au_probs": truth["au"][has]}
    raw.update(va_mean=truth["va_mean"][has], va_std=truth["va_std"][has])
    out = {"expected": label_model.bayes_limits(raw), "oracle": measure(truth, index, has, truth)}
    meta_path = os.path.join(data_dir, "synthetic_meta.json")
    if os.path.exists(meta_path):
        meta = read_json(meta_path).get("bayes_limits", {})
        out["meta_validation"] = meta.get("validation", meta)
    return out


# ---------------------------------------------------------------- the run


def evaluate_run(
    workdir: str,
    ood_dir: str | None = None,
    out_dir: str | None = None,
    mc_passes: int = 10,
    seed: int = SPLIT_SEED,
    batch_size: int | None = None,
) -> dict:
    """Evaluate every method of the run in ``workdir``; write metrics.json, report.md and plots.

    ood_dir: images for the OOD columns (default: ``<data_dir>/ood`` when it exists, else none).
    out_dir: where the results go (default ``<workdir>/eval``). seed: the fit / evaluation split.
    Returns the content of metrics.json.
    """
    if mc_passes < 2:
        raise ConfigError(f"--mc_passes must be >= 2, got {mc_passes}")
    run = RunDir(workdir)
    with locks.hold(run.eval_lock_path, f"{run.root} (evaluation)"):
        cfg = run.load_config()
        out_dir = out_dir or run.eval_dir
        generations = evaluable_generations(run, cfg)
        data_dir = run.data_dir(cfg)
        index = affwild2.load_split(data_dir, "validation", skip_bad_labels=cfg.skip_bad_labels)
        ood_dir = ood_dir if ood_dir is not None else default_ood_dir(data_dir)
        with tempfile.TemporaryDirectory(prefix="emenet-ood-") as work:
            indices = {"val": index}
            if ood_dir is not None:
                indices["ood"] = ood_index(ood_dir, work)
            methods = collect_predictions(
                run, cfg, generations, indices, mc_passes, batch_size or cfg.batch_size
            )
        present = np.logical_and.reduce([m["val"]["present"] for m in methods.values()])
        fit_rows, eval_rows = split_halves(present, seed)
        scaler = add_temperature_scaling(methods, index, fit_rows)
        truth = aligned_truth(data_dir, index)
        result = {"methods": {}, "limits": {}, "frames": {}}
        full = {"methods": {}}
        for name in method_order(methods):
            result["methods"][name] = measure(methods[name]["val"], index, eval_rows, truth)
            if "ood" in indices:
                result["methods"][name]["ood"] = ood_metrics(methods[name], eval_rows)
            if name != "temperature_scaling":
                full["methods"][name] = measure(methods[name]["val"], index, np.flatnonzero(present), truth)
                if "ood" in indices:
                    full["methods"][name]["ood"] = ood_metrics(methods[name], np.flatnonzero(present))
        if truth is not None:
            result["limits"] = bayes_limits(truth, index, eval_rows, data_dir)
        result["frames"] = frame_counts(index, present, fit_rows, eval_rows, methods, seed, ood_dir)
        result["frames"]["ood_score"] = cfg.ood_score
        full["frames"] = {**result["frames"], "evaluated": int(present.sum())}
        result = _clean(result)
        write_outputs(out_dir, result, _clean(full), methods, index, eval_rows, scaler, generations)
        return result


def method_order(methods: dict) -> list[str]:
    gens = sorted({int(n[3:].split("_")[0]) for n in methods if n.startswith("gen")})
    names = [f"gen{g}_{k}" for g in gens for k in ("single", "ensemble")]
    others = ("dirichlet_single", "dirichlet_density", "temperature_scaling", "mc_dropout")
    return names + [n for n in others if n in methods]


def frame_counts(index, present, fit_rows, eval_rows, methods, seed, ood_dir) -> dict:
    ood = next(iter(methods.values())).get("ood")
    return {
        "validation": len(index),
        "predicted": int(present.sum()),
        "fit": len(fit_rows),
        "evaluated": len(eval_rows),
        "ood": int(ood["present"].sum()) if ood is not None else 0,
        "ood_dir": ood_dir,
        "split_seed": seed,
        "expr_labelled": int(index.expr_mask[eval_rows].sum()),
        "au_labelled": int((index.au_mask[eval_rows].sum(axis=1) > 0).sum()),
        "va_labelled": int((index.va_mask[eval_rows].sum(axis=1) > 0).sum()),
    }


def _clean(obj):
    """Python floats everywhere; nan / inf become None (JSON has no nan)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def write_outputs(out_dir, result, full, methods, index, eval_rows, scaler, generations) -> None:
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_json(os.path.join(out_dir, METRICS), result)
    atomic_write_json(os.path.join(out_dir, "metrics_full.json"), full)
    atomic_write_json(os.path.join(out_dir, "temperatures.json"), scaler.to_dict())
    from emenet_tf import report

    atomic_write_text(os.path.join(out_dir, "report.md"), report.render(result, full, scaler, generations))
    plots.write_all(out_dir, methods, index, eval_rows, generations)
