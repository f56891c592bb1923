"""The Markdown page of the harness report (``harness.md``), from the payload ``harness_report`` builds.
Rendering only: every number comes from the payload; figures are linked by the file names
``harness_report`` writes them under (beside ``harness.md``)."""

from __future__ import annotations

from typing import Any

from ..harness.attacks._common import CONVENTIONS
from ..harness.detection import FPR_AT_TPR_CONVENTION
from .tables import markdown_table, nan_flags

#: Calibration columns whose NaN / inf fails the row's gate.
CALIBRATION_KEYS = ("accuracy", "ece", "ece_mass", "mce", "nll", "brier")


def _figure(file_name: str, alt: str) -> list[str]:
    """Markdown lines linking the figure ``file_name`` (beside ``harness.md``) with ``alt`` text."""
    return [f"![{alt}]({file_name})", ""]


def _calibration_flags(record: dict[str, Any]) -> str:
    """The gates cell of a calibration row: the record's flags plus any non-finite metric, or "ok"."""
    return "; ".join(list(record["flags"]) + nan_flags(record, CALIBRATION_KEYS)) or "ok"


def harness_markdown(payload: dict[str, Any], transfer: Any) -> str:
    """The report's Markdown: one section per part of ``payload`` that is present; ``transfer`` is the
    ``TransferMatrix`` (rendered with its own ``to_markdown``)."""
    records = list(payload["models"].values())
    settings = payload["settings"]
    calibration = [{**r, "flags": _calibration_flags(r)} for r in records]
    lines = [
        f"# {payload['title']}",
        "",
        f"{payload['num_test_points']} test points; decision: {CONVENTIONS['decision_rule']}.",
        "",
        "## Calibration",
        "",
        markdown_table(calibration, [("method", "method"), ("s_eval", "S_eval"), ("accuracy", "acc"),
                                     ("ece", "ECE (width)"), ("ece_mass", "ECE (mass)"), ("mce", "MCE"),
                                     ("nll", "NLL"), ("brier", "Brier"), ("flags", "gates")]),
        *_figure("reliability.png", "Reliability diagrams"),
        f"## Robustness: PGD ({settings['norm']}, {settings['steps']} steps, "
        f"{payload['num_attack_points']} points)",
        "",
        f"Robust accuracy: {CONVENTIONS['robust_accuracy']}.",
        "",
    ]
    eps_columns = [(f"eps={e:g}", f"eps={e:g}") for e in settings["eps_values"]]
    rows = [{"method": r["method"], **{f"eps={p['eps']:g}": p["robust_accuracy"] for p in r["robustness"]}}
            for r in records]
    ood = bool(settings["ood_points"])
    lines += [markdown_table(rows, [("method", "method"), *eps_columns]),
              *_figure("robustness_curves.png", "Robust accuracy against eps"), "## AUROC", "",
              "Misclassification: positives = wrong predictions. " + ("OOD: positives = OOD inputs. " if ood else "")
              + f"Adversarial (balanced, Däubener & Fischer): clean-correct attacked points vs successful "
              f"{settings['detection_attack']} examples, subsampled to the smaller count. Scores are oriented by "
              "each measure's meaning (higher = more uncertain, except max_probability).", ""]
    auroc_rows = []
    for r in records:
        for measure, values in r["auroc"].items():
            auroc_rows.append({"method": r["method"], "measure": measure, **values})
    columns = [("method", "method"), ("measure", "measure"), ("misclassification", "misclassification")]
    if ood:
        columns += [("ood", "OOD"), ("ood_fpr_at_95_tpr", "OOD FPR@95%TPR")]
    columns += [("adversarial_balanced", "adversarial (balanced)"), ("adversarial_num_used", "n per class")]
    lines += [markdown_table(auroc_rows, columns)]
    if ood:
        lines += [f"FPR@95%TPR (OOD = positive): {FPR_AT_TPR_CONVENTION}", ""]
    lines += [*_figure("uncertainty_histograms.png", "Uncertainty measures, correct vs wrong predictions"),
              f"## Transfer ({settings['detection_attack']}): error rate of each model (columns) on "
              "examples made against each model (rows); noise rows add Gaussian noise of the same sd", "",
              transfer.to_markdown(), "", *_figure("transfer_heatmap.png", "Transfer error rate (%)")]
    distorted = [r for r in records if "min_distortion" in r]
    if distorted:
        rows = [{"method": r["method"], "attack": attack, **values}
                for r in distorted for attack, values in r["min_distortion"].items()]
        lines += ["## Minimum distortion (over successful points; rms = sqrt(sum (x' - x)^2 / n))", "",
                  markdown_table(rows, [("method", "method"), ("attack", "attack"), ("success_rate", "success"),
                                        ("mean_l2_successful", "mean L2"), ("mean_rms_successful", "mean rms"),
                                        ("num_points", "points")]),
                  "Failures (Subramanya et al.): successful DeepFool examples whose confidence is higher than on the clean "
                  "input, by max softmax probability and by density confidence of the predicted class.", "",
                  markdown_table([{"method": r["method"], **r["deepfool_failures"]} for r in distorted],
                                 [("method", "method"), ("num_successful", "successful"),
                                  ("max_probability", "softmax failures"), ("density_confidence", "density failures")])]
    checked = [r for r in records if "sanity" in r]
    if checked:
        rows = []
        for r in checked:
            check = r["sanity"]
            curve = ", ".join(f"{p['n_grad_samples']}: {p['robust_accuracy']:.3f}" for p in check["n_grad_samples"]["curve"])
            rows.append({"method": r["method"], "eps0": check["eps_zero_identity"]["passed"],
                         "unbounded": check["unbounded"]["robust_accuracy"],
                         "fgsm": check["iterative_vs_single_step"]["fgsm_robust_accuracy"],
                         "pgd": check["iterative_vs_single_step"]["pgd_robust_accuracy"],
                         "curve": curve, "over": check["n_grad_samples"]["overstatement"],
                         "failed": ", ".join(check["failed"]) or "none"})
        lines += ["## Sanity checks (robust accuracy)", "",
                  markdown_table(rows, [("method", "method"), ("eps0", "eps=0 identity"),
                                        ("unbounded", "unbounded attack"), ("fgsm", "FGSM"), ("pgd", "PGD"),
                                        ("curve", "vs n_grad_samples"), ("over", "overstatement"),
                                        ("failed", "failed")]),
                  "overstatement: how much higher robust accuracy is under the weakest number of gradient draws "
                  "than under the strongest (an evaluation with one gradient sample can overstate robustness "
                  "by this much); the check fails only if the all-draws attack reported above is the weaker.", ""]
    scaled = [r for r in records if "softmax_scaling" in r]
    if scaled:
        alphas = scaled[0]["softmax_scaling"]["alphas"]
        rows = []
        for r in scaled:
            demo = r["softmax_scaling"]
            for label, key in (("max softmax", "mean_max_softmax"), ("density conf. (predicted)",
                                                                       "mean_density_confidence_predicted")):
                rows.append({"method": r["method"], "measure": label, **{str(i): v for i, v in enumerate(demo[key])}})
        lines += ["## Softmax scaling pathology (Lemma 3.1): test logits scaled by alpha", "",
                  "Max softmax can only rise with alpha (checked per point: "
                  + ", ".join(f"{r['method']} {r['softmax_scaling']['softmax_non_decreasing']}" for r in scaled)
                  + "); the density confidence of the same decision need not.", "",
                  markdown_table(rows, [("method", "method"), ("measure", "mean over test points")]
                                 + [(str(i), f"alpha={a:g}") for i, a in enumerate(alphas)])]
    corrupted = [r for r in records if "corruptions" in r]
    if corrupted:
        lines += ["## Corruptions: accuracy, and max-probability confidence normalised to clean = 1", ""]
        for corruption in corrupted[0]["corruptions"]:
            levels = corrupted[0]["corruptions"][corruption]["levels"]
            columns = [("method", "method"), ("measure", "measure")] + [(str(i), f"{lv:g}") for i, lv in enumerate(levels)]
            rows = []
            for r in corrupted:
                curve = r["corruptions"][corruption]["measures"]
                rows.append({"method": r["method"], "measure": "accuracy",
                             **{str(i): v for i, v in enumerate(curve["accuracy"]["values"])}})
                rows.append({"method": r["method"], "measure": "norm. max prob.",
                             **{str(i): v for i, v in enumerate(curve["max_probability"]["normalised"])}})
                if "density_confidence_predicted" in curve:
                    rows.append({"method": r["method"], "measure": "norm. density conf.",
                                 **{str(i): v for i, v in enumerate(curve["density_confidence_predicted"]["normalised"])}})
            level_name = corrupted[0]["corruptions"][corruption]["level_name"]
            lines += [f"### {corruption} ({level_name})", "", markdown_table(rows, columns, digits=2),
                      *_figure(f"corruption_{corruption}.png", f"Accuracy under {corruption}")]
    return "\n".join(lines) + "\n"
