"""A step's log ends with its traceback; every reader of a result file names the file (and how to rebuild it) when
the file is missing, truncated or malformed, and checks structured files for completeness, not only that they parse."""

import json

import numpy as np
import pytest

from act24.data import read_documents, write_documents, Document
from act24.io import InputFileError, log_to, read_json
from act24.report import results


def test_a_failing_block_leaves_its_traceback_in_the_log(tmp_path):
    log = tmp_path / "logs" / "step.log"
    with pytest.raises(ZeroDivisionError):
        with log_to(log):
            print("working")
            1 / 0
    text = log.read_text()
    assert text.startswith("working\n") and "Traceback" in text
    assert text.rstrip().endswith("ZeroDivisionError: division by zero")


def truncate(path, keep: float = 0.6):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_truncated_documents_name_the_file_and_line(tmp_path):
    path = tmp_path / "documents.jsonl"
    write_documents(path, [Document("a", "x" * 200), Document("b", "y" * 200)], [Document("c", "z" * 200)])
    truncate(path)
    with pytest.raises(InputFileError, match=r"documents\.jsonl, line 2: not a document record .*snakemake --force"):
        read_documents(path)


def test_documents_cut_at_a_line_end_are_incomplete(tmp_path):
    path = tmp_path / "documents.jsonl"
    write_documents(path, [Document("a", "x"), Document("b", "y")], [Document("c", "z")])
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))  # the validation document is gone
    with pytest.raises(InputFileError, match=r"documents\.jsonl: truncated: 2 train and 0 validation"):
        read_documents(path)


@pytest.fixture
def run_folder(tmp_path):
    """A finished 2-layer run's summary, statistics (steps 0, 10, 20, 30) and densities."""
    run = tmp_path / "runs" / "sqrelu" / "seed0"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"name": "sqrelu/seed0", "final_val_loss": 3.0, "steps": 30,
                                                  "diverged_at_step": None}))
    rows = ["step,tokens,layer,zero_frac,drop24_features"]
    rows += [f"{s},{s * 64},{layer},0.9,0.01" for s in (0, 10, 20, 30) for layer in (0, 1)]
    (run / "activation_stats.csv").write_text("\n".join(rows) + "\n")
    np.savez_compressed(run / "feature_density.npz", steps=np.arange(2), density=np.ones((2, 2, 8)))
    metrics = [{"split": "train", "step": s, "loss": 3.0} for s in range(30)]
    metrics += [{"split": "val", "step": s, "loss": 3.0} for s in (0, 10, 20, 30)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in sorted(metrics, key=lambda m: m["step"])))
    return run


def test_complete_results_read_back(run_folder):
    assert results.read_stats([run_folder])["step"].max() == 30
    assert results.read_summaries([run_folder])["final_val_loss"].tolist() == [3.0]
    assert results.read_density(run_folder)[1].shape == (2, 2, 8)
    assert results.read_metrics([run_folder])["step"].max() == 30


def test_a_truncated_summary_names_the_file(run_folder):
    truncate(run_folder / "summary.json")
    with pytest.raises(InputFileError, match=r"seed0/summary\.json: not a readable run summary \(JSONDecodeError"):
        results.read_summaries([run_folder])


def test_a_corrupt_density_archive_names_the_file(run_folder):
    truncate(run_folder / "feature_density.npz", 0.5)
    with pytest.raises(InputFileError, match=r"feature_density\.npz: not a readable feature-density archive"):
        results.read_density(run_folder)


def lines(keep: slice):
    return lambda text: "".join(text.splitlines(keepends=True)[keep])


@pytest.mark.parametrize("log, cut, problem", [
    ("metrics.jsonl", lambda text: text[:-20], r"not a readable metrics log \(JSON lines\) \(ValueError"),
    ("metrics.jsonl", lines(slice(-3)), "truncated: ends at step 27, the run at step 30"),
    # mid-line: the last row lacks values
    ("activation_stats.csv", lambda text: text[: text.rindex(",")], "truncated or incomplete: incomplete rows"),
    ("activation_stats.csv", lines(slice(-1)), r"truncated or incomplete: steps with fewer layers than others \(\[30"),
    ("activation_stats.csv", lines(slice(-4)), "truncated or incomplete: ends at step 10, the run at step 30"),
])
def test_truncated_logs_are_an_error_not_a_shorter_table(run_folder, log, cut, problem):
    path = run_folder / log
    path.write_text(cut(path.read_text()))
    read = results.read_metrics if log == "metrics.jsonl" else results.read_stats
    with pytest.raises(InputFileError, match=rf"{log.replace('.', '[.]')}: {problem}"):
        read([run_folder])


def test_a_missing_file_says_missing_and_how_to_rebuild(tmp_path):
    with pytest.raises(InputFileError, match=r"nothing\.json: missing; rebuild it: snakemake --force .*nothing\.json"):
        read_json(tmp_path / "nothing.json")
