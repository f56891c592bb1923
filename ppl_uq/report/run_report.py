"""Reports of run directories, rendered from the records on disk only (``ppl-uq report RUN_DIR``).

An experiment declares its report in its manifest (``run.json``'s ``report`` entry, plain JSON):

- ``title``, ``intro`` (Markdown paragraphs shown under the title);
- ``tables``: ``[{"name", "title", "caption", "cells": [...], "columns": [[key, header], ...],
  "csv_keys": [...], "gate_keys": [...]}]``: one row per cell, read from its record; the ``gate`` column
  joins the record's ``flags`` and a "NaN in KEY" flag for each non-finite value among ``gate_keys``;
- ``distributions``: ``[{"file", "key", "xlabel", "title", "cells": [...]}]``: a box-and-strip figure of
  the list ``record[key]`` of each cell;
- ``harness``: ``{"title", "cells": [...], "transfer_cell": NAME}``: the common harness report of the
  cells' ``record["harness"]`` evaluations (arrays ``harness/...``), written to ``harness/``;
- ``sections``: ``[{"kind", "title", "caption", "cell", ...}]``, rendered in order after the tables:
  ``"matrices"`` shows each ``record["tables"][name]`` of the cell (a ``TransferMatrix.to_dict``) as a
  table of error rates; ``"image_rows"`` (with ``"file"``) draws the cell's arrays ``images/ROW`` (K, H*W)
  as labelled rows of images of ``record["image_shape"]``, rows in ``record["rows"]`` order; ``"curves"``
  (with ``"file"``, ``"cells"``, ``"levels_path"``, ``"value_path"``, ``"xlabel"``, ``"ylabel"``) draws one
  line per cell (labelled by its ``method``) of the list at ``value_path`` (keys into the record) against
  the list at ``levels_path``, leaving out cells whose values are missing (None).

``render_run`` writes ``NAME.md`` / ``NAME.csv`` per table, ``results.json``, the figures, ``harness/``,
``report.md`` and the self-contained ``report.html``. ``render_runs`` combines several run directories
of the same experiment (e.g. seeds) into tables of mean ± sd per cell.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..runs.store import RunStore, StoredCell
from .figures import plot_distributions, plot_image_rows
from .harness_figures import plot_robustness_curves
from .harness_report import render_harness, store_harness
from .html import write_html_page
from .io import atomic_write_json, atomic_write_text
from .tables import csv_table, markdown_table, nan_flags


def load_run(run_dir: str | Path) -> tuple[dict[str, Any], dict[str, StoredCell]]:
    """``(manifest, name -> StoredCell)`` of a run directory; every cell of the manifest must be on disk
    with the manifest's fingerprint (``FileNotFoundError`` names the missing ones)."""
    store = RunStore(run_dir)
    manifest = store.read_manifest()
    cells, missing = {}, []
    for entry in manifest["cells"]:
        stored = store.load(entry["name"], entry["fingerprint"])
        if stored is None:
            missing.append(entry["name"])
        else:
            cells[entry["name"]] = stored
    if missing:
        raise FileNotFoundError(f"{run_dir}: cells {missing} of run.json are not complete on disk "
                                f"(status {manifest.get('status')!r}); rerun the experiment to finish them")
    return manifest, cells


def table_rows(table: Mapping[str, Any], cells: Mapping[str, StoredCell]) -> list[dict[str, Any]]:
    """One row per cell of ``table``: its record, with ``gate`` ("ok" or the failed gates joined by "; ")."""
    rows = []
    for name in table["cells"]:
        record = dict(cells[name].record)
        flags = list(record.get("flags", [])) + nan_flags(record, table.get("gate_keys", ()))
        record["gate"] = "; ".join(flags) if flags else "ok"
        rows.append(record)
    return rows


def _table_markdown(table: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [f"## {table['title']}", "", table.get("caption", ""), "",
             markdown_table(rows, [tuple(c) for c in table["columns"]])]
    flagged = [r for r in rows if r["gate"] != "ok"]
    if flagged:
        lines += ["**Gate failures**: " + "; ".join(f"{r.get('method', '?')} ({r['gate']})" for r in flagged), ""]
    return lines


def render_run(run_dir: str | Path) -> Path:
    """Render the report of one run directory from its records (nothing is computed); returns the path of
    ``report.html``."""
    run_dir = Path(run_dir)
    manifest, cells = load_run(run_dir)
    report = manifest.get("report", {})
    title = report.get("title", manifest.get("experiment", "run"))
    lines = [f"# {title}", "", report.get("intro", ""), ""]
    all_rows: dict[str, dict[str, Any]] = {}  # each cell once, however many tables show it
    for table in report.get("tables", []):
        rows = table_rows(table, cells)
        all_rows.update({name: row for name, row in zip(table["cells"], rows, strict=True) if name not in all_rows})
        table_lines = _table_markdown(table, rows)
        atomic_write_text(run_dir / f"{table['name']}.md", "\n".join([f"# {title}", "", report.get("intro", ""), "",
                                                                      *table_lines]) + "\n")
        atomic_write_text(run_dir / f"{table['name']}.csv", csv_table(rows, table.get("csv_keys") or
                                                                      [c[0] for c in table["columns"]]))
        lines += table_lines
    atomic_write_json(run_dir / "results.json", {"meta": manifest.get("meta", {}), "records": list(all_rows.values())})
    for figure in report.get("distributions", []):
        values = {cells[n].record.get("method", n): cells[n].record[figure["key"]] for n in figure["cells"]}
        plot_distributions(run_dir / figure["file"], values, xlabel=figure["xlabel"], title=figure["title"])
        lines += [f"![{figure['title']}]({figure['file']})", ""]
    for section in report.get("sections", []):
        lines += _render_section(run_dir, section, cells)
    harness = report.get("harness")
    if harness:
        lines += _render_harness_section(run_dir, harness, cells)
    text = "\n".join(lines) + "\n"
    atomic_write_text(run_dir / "report.md", text)
    return write_html_page(run_dir / "report.html", text, base_dir=run_dir, title=title)


def _at(record: Mapping[str, Any], path: Sequence[str]) -> Any:
    for key in path:
        record = record[key]
    return record


def _render_section(run_dir: Path, section: Mapping[str, Any], cells: Mapping[str, StoredCell]) -> list[str]:
    """Markdown lines of one declared section (see the module docstring); figures are written to ``run_dir``."""
    from ..harness.attacks.transfer import TransferMatrix

    lines = [f"## {section['title']}", "", section.get("caption", ""), ""]
    if section["kind"] == "curves":
        curves = {}
        for name in section["cells"]:
            record = cells[name].record
            values = _at(record, section["value_path"])
            if values is not None and all(v is not None for v in values):
                curves[record.get("method", name)] = {"x": _at(record, section["levels_path"]), "y": values}
        plot_robustness_curves(run_dir / section["file"], curves, xlabel=section["xlabel"], ylabel=section["ylabel"],
                               title=section["title"], ylim=None)
        return lines + [f"![{section['title']}]({section['file']})", ""]
    cell = cells[section["cell"]]
    if section["kind"] == "matrices":
        for name, data in cell.record["tables"].items():
            lines += [f"**{name}**", "", TransferMatrix.from_dict(data).to_markdown(), ""]
    elif section["kind"] == "image_rows":
        rows = {row: cell.arrays[f"images/{row}"] for row in cell.record["rows"]}
        plot_image_rows(run_dir / section["file"], rows, image_shape=tuple(cell.record["image_shape"]), title=section["title"])
        lines += [f"![{section['title']}]({section['file']})", ""]
    else:
        raise ValueError(f"section kind must be 'curves', 'matrices' or 'image_rows', got {section['kind']!r}")
    return lines


def _render_harness_section(run_dir: Path, harness: Mapping[str, Any], cells: Mapping[str, StoredCell]) -> list[str]:
    """Assemble the harness payload from the cells' records, render ``harness/``, and return its Markdown
    for the run's page (headings one level down, figure links into ``harness/``)."""
    records, arrays = {}, {}
    for name in harness["cells"]:
        cell = cells[name]
        label = cell.record.get("method", name)
        records[label] = {"method": label, **cell.record["harness"]}
        for key, value in cell.arrays.items():
            if key.startswith("harness/measure/") or key == "harness/correct":
                arrays[f"{label}/{key[len('harness/'):]}"] = value
    first = next(iter(records.values()))
    payload = {**cells[harness["transfer_cell"]].record["payload"], "models": records,
               "transfer": cells[harness["transfer_cell"]].record["transfer"],
               "num_test_points": first["num_test_points"], "num_attack_points": first["num_attack_points"]}
    out = run_dir / "harness"
    store_harness(out, payload, arrays)
    text = render_harness(out)
    text = re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", text, flags=re.MULTILINE)
    text = re.sub(r"\]\(([^)#:]+\.png)\)", r"](harness/\1)", text)
    return [text]


def _mean_sd(values: Sequence[Any]) -> Any:
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if len(numbers) != len(values) or not numbers:
        return values[0] if len(set(map(str, values))) == 1 else " / ".join(map(str, values))
    array = np.asarray(numbers, float)
    if not np.all(np.isfinite(array)):
        return "NaN"
    sd = float(np.std(array, ddof=1)) if len(array) > 1 else 0.0
    return f"{array.mean():.3f} ± {sd:.3f}"


def render_runs(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Combine run directories of one experiment (e.g. several seeds) into tables of mean ± sd (sample sd)
    per cell and column, written to ``out`` (``NAME.md``, ``NAME.csv``, ``report.html``); returns the page."""
    if len(run_dirs) < 2:
        raise ValueError("render_runs combines two or more run directories; use render_run for one")
    loaded = [load_run(d) for d in run_dirs]
    experiments = {m.get("experiment") for m, _ in loaded}
    if len(experiments) != 1:
        raise ValueError(f"the run directories hold different experiments: {sorted(map(str, experiments))}")
    out = Path(out)
    report = loaded[0][0].get("report", {})
    title = f"{report.get('title', 'runs')} — {len(loaded)} runs combined (mean ± sd)"
    lines = [f"# {title}", "", "Runs: " + ", ".join(f"`{d}`" for d in run_dirs), ""]
    for table in report.get("tables", []):
        per_run = [dict(zip(table["cells"], table_rows(table, cells), strict=True))
                   for _, cells in loaded]
        names = [n for n in per_run[0] if all(n in rows for rows in per_run)]
        combined = []
        for name in names:
            row = {}
            for key, _ in table["columns"]:
                row[key] = _mean_sd([rows[name].get(key) for rows in per_run])
            row["gate"] = "; ".join(sorted({rows[name]["gate"] for rows in per_run} - {"ok"})) or "ok"
            combined.append(row)
        lines += [f"## {table['title']}", "", table.get("caption", ""), "",
                  markdown_table(combined, [tuple(c) for c in table["columns"]])]
        atomic_write_text(out / f"{table['name']}.csv", csv_table(combined, [c[0] for c in table["columns"]]))
    text = "\n".join(lines) + "\n"
    atomic_write_text(out / "report.md", text)
    return write_html_page(out / "report.html", text, base_dir=out, title=title)

