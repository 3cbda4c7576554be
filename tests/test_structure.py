"""The package's shape: one definition of each setting, imports in layers without cycles, a workflow that parses
without torch."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from act24 import schema
from act24.config import BACKEND_NAMES, RunConfig
from act24.settings import ConfigError

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "act24"
# Lower layers never import higher ones (a module may import its own layer).
LAYERS = [
    {"settings", "layout", "sparsity.recipe", "config", "experiment", "intervals", "wheels"},
    {"sparsity.pattern", "sparsity.stats", "io", "data", "corpus", "offline", "distributed", "progress"},
    {"report"},  # tables, figures and claims read files: no model, no kernels
    {"kernels"},
    {"ffn"},
    {"model"},
    {"train", "evaluate", "bench", "gpubench", "sweep"},
    {"schema", "cli", "__main__"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The act24 modules `path` imports, at module level or inside functions."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("act24"):
                target = node.module.removeprefix("act24").lstrip(".")
            else:
                continue
            for alias in node.names:  # `from . import fused` imports a module
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if (PACKAGE / sub.replace(".", "/")).exists()
                          or (PACKAGE / (sub.replace(".", "/") + ".py")).exists() else target)
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("act24.") for a in node.names if a.name.startswith("act24.")}
    return {m for m in found if m and m != name}


GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def layer_of(module: str) -> int:
    for i, layer in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in layer):
            return i
    raise AssertionError(f"module act24.{module} is in no layer of tests/test_structure.py")


def test_the_import_graph_has_no_cycles():
    state: dict[str, str] = {}

    def visit(module, path):
        if state.get(module) == "open":
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if state.get(module) == "done":
            return
        state[module] = "open"
        for dep in GRAPH.get(module, ()):
            visit(dep, path + [module])
        state[module] = "done"

    for module in GRAPH:
        visit(module, [])


def test_imports_point_down_the_layers():
    upward = [f"act24.{m} imports act24.{d}" for m, deps in GRAPH.items() if m
              for d in deps if layer_of(d) > layer_of(m)]
    assert not upward


def test_the_cycle_check_sees_a_cycle(monkeypatch):
    monkeypatch.setitem(GRAPH, "settings", GRAPH["settings"] | {"config"})
    with pytest.raises(AssertionError, match="import cycle: .*settings"):
        test_the_import_graph_has_no_cycles()


def test_the_committed_schema_is_the_declared_one():
    assert schema.main(["--check"]) == 0


def test_every_backend_name_passes_the_schema_and_builds():
    from act24.kernels.backends import BACKENDS, select_backend

    assert set(BACKENDS) == set(BACKEND_NAMES)
    workflow_schema = yaml.safe_load(schema.SCHEMA.read_text())
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for name in ("auto", *BACKEND_NAMES):
        config["sparse"]["backend"] = name
        jsonschema.validate(config, workflow_schema)
        assert RunConfig.from_dict({"sparse": {"backend": name}}).sparse.backend == name
    for name in BACKEND_NAMES:
        assert BACKENDS[name]().name == name
    config["sparse"]["backend"] = "magic"
    with pytest.raises(jsonschema.ValidationError, match="magic"):
        jsonschema.validate(config, workflow_schema)
    with pytest.raises(ConfigError, match="sparse.backend"):
        RunConfig.from_dict({"sparse": {"backend": "magic"}})
    with pytest.raises(ValueError, match="magic"):
        select_backend("magic", "cpu")


def test_the_schema_and_the_dataclasses_enforce_the_same_bounds():
    workflow_schema = yaml.safe_load(schema.SCHEMA.read_text())
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    for section, key, bad in (("sparse", "dense_fraction", 1.0), ("train", "steps", 0), ("model", "ffn_multiple_of", 6),
                              ("sparse", "backward", "dense")):
        broken = {**config, section: {**config[section], key: bad}}
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, workflow_schema)
        with pytest.raises(ConfigError, match=f"'{section}.{key}'"):
            RunConfig.from_dict({section: {key: bad}})


def test_derived_keys_are_not_config_keys_and_defaults_reach_the_schema():
    workflow_schema = yaml.safe_load(schema.SCHEMA.read_text())
    model = workflow_schema["properties"]["model"]["properties"]
    assert "vocab_size" not in model and "ffn" not in model  # from data.vocab_size and the variant
    assert "seed" not in workflow_schema["properties"]["train"]["properties"]
    assert "permutation_seed" not in workflow_schema["properties"]["sparse"]["properties"]
    assert workflow_schema["properties"]["sparse"]["properties"]["dense_fraction"] == {
        "type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0.05,
        "description": "densest features kept dense in BW2 / BW4 (0: the naive backward, token-wise 2:4 on every "
                       "feature)"}
    variant_sparse = workflow_schema["properties"]["variants"]["additionalProperties"]["properties"]["sparse"]
    assert "default" not in variant_sparse["properties"]["dense_fraction"]  # a variant overrides only what it sets
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    with pytest.raises(jsonschema.ValidationError, match="vocab_size"):
        jsonschema.validate({**config, "model": {**config["model"], "vocab_size": 300}}, workflow_schema)


def test_run_configs_round_trip_with_integers_read_as_floats():
    cfg = RunConfig.from_dict({"model": {"ffn": "sqrelu"}, "train": {"lr": 1, "seed": 3},
                               "sparse": {"enabled": True, "dense_fraction": 0}})
    assert isinstance(cfg.train.lr, float) and isinstance(cfg.sparse.recipe.dense_fraction, float)
    assert cfg.sparse.seeded_recipe(cfg.train.seed).permutation_seed == 3
    flat = cfg.to_dict()["sparse"]
    assert "recipe" not in flat and flat["dense_fraction"] == 0.0 and "permutation_seed" not in flat
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


DRY_RUN = """
import runpy, sys
sys.argv = ["snakemake", "-n", "--cores", "1", "--quiet", "rules"]
try:
    runpy.run_module("snakemake", run_name="__main__")
except SystemExit as exc:
    assert not exc.code, exc.code
print("torch" in sys.modules, "triton" in sys.modules)
"""


def test_a_dry_run_parses_the_workflow_without_torch(tmp_path):
    proc = subprocess.run([sys.executable, "-c", DRY_RUN], cwd=REPO, capture_output=True, text=True, check=True)
    assert proc.stdout.split()[-2:] == ["False", "False"], proc.stdout + proc.stderr


def test_functions_outside_triton_kernels_stay_short():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and not any("jit" in ast.unparse(d) for d in node.decorator_list):
                if node.end_lineno - node.lineno + 1 > 60:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    assert not long


RUN_FOLDERS = {"tables", "figures", "runs", "bench", "data", "logs"}


def test_reference_folders_are_laid_out_like_results():
    runs = [p.parent for p in (REPO / "reference").glob("*/*/README.md")]
    assert len(runs) >= 5
    for run in runs:
        extra = {p.name for p in run.iterdir()} - RUN_FOLDERS - {"README.md", "environment.json"}
        assert not extra, f"{run}: not a results/ folder: {sorted(extra)}"
    assert not [p for p in (REPO / "reference").rglob("*") if p.suffix in (".py", ".patch", ".yaml", ".npz")]


def test_the_docs_speak_of_the_project_not_of_its_history():
    tracked = subprocess.run(["git", "ls-files", "README.md", "docs/*.md", "reference/*README.md", "src", "notebooks",
                              "workflow", "config", "resources"], cwd=REPO, capture_output=True, text=True).stdout.split()
    pattern = re.compile(r"\b(issue\s*#?\d+|work period|sessions?)\b", re.IGNORECASE)
    hits = [f"{f}: {m.group(0)}" for f in tracked if (REPO / f).is_file()
            for m in [pattern.search((REPO / f).read_text(errors="ignore"))] if m]
    assert not hits


def test_every_workflow_script_runs_inside_its_log():
    """A script's imports and work all run inside `log_to`, so that any error, an import error too, ends the job's
    log with its traceback."""
    for script in sorted((REPO / "workflow" / "scripts").glob("*.py")):
        body = ast.parse(script.read_text()).body
        statements = body[1:] if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) else body
        assert [ast.unparse(s).splitlines()[0] for s in statements[:2]] == [
            "from act24.io import log_to", "with log_to(snakemake.log[0]):"] and len(statements) == 2, script.name


def _readme_table(header: str) -> list[list[str]]:
    """The rows of the README's Markdown table whose header line starts with `header`."""
    lines = (REPO / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _short(verdict: str) -> str:
    """A verdict without its reason: 'inconclusive: the interval ...' -> 'inconclusive'."""
    return re.split(r":| \(", verdict)[0]


def test_the_readme_claims_summary_is_the_reference_tables():
    """One line per claim, its text from the claims table, a verdict per reference run (whose claims table the
    column links); the speed run's column holds the speed claims only (its quality rows are not its runs')."""
    import pandas as pd

    columns = ["cpu/default", "cpu/ablation", "h200/ablation", "h100/scale", "h200/speed"]
    tables = {c: pd.read_csv(REPO / "reference" / c / "tables" / "claims.csv").set_index("id") for c in columns}
    header = next(line for line in (REPO / "README.md").read_text().splitlines()
                  if line.startswith("| claim | what the paper claims |"))
    assert re.findall(r"\(reference/(\w+/\w+)/tables/claims\.md\)", header) == columns
    rows = _readme_table("| claim | what the paper claims |")
    assert [r[0] for r in rows] == ["C1", "C2", "C3", "C4", "C5", "C6a", "C6b", "C7", "C8", "C9", "C10"]
    speed = {"C7", "C8", "C9", "C10"}
    for claim, text, *cells in rows:
        assert text == tables["h200/speed"].loc[claim, "claim"], claim
        expected = [_short(tables[c].loc[claim, "verdict"]) if c != "h200/speed" or claim in speed else "—"
                    for c in columns]
        assert cells == expected, claim
    gaps = pd.read_csv(REPO / "reference" / "h100" / "scale" / "tables" / "scale_gaps.csv")
    by_size = {(r.size, r.claim): _short(r.verdict) for r in gaps.itertuples()}
    for size, c1, c5 in _readme_table("| size | C1 | C5 |"):
        assert [c1, c5] == [by_size[(size, "C1")], by_size[(size, "C5")]], size


def test_the_intervals_the_readme_status_quotes_are_in_the_reference_tables():
    """Every 'estimate [low, high]' of the README's Status section is read from a committed table: a claims row, or
    a scale gap as the claims rows print it."""
    import pandas as pd

    status = " ".join((REPO / "README.md").read_text().split("## Status", 1)[1].split())
    quoted = re.findall(r"[-+]?\d+\.\d+x? \[[-+]?\d+\.\d+, [-+]?\d+\.\d+\]", status)
    assert len(quoted) >= 4
    sources = [" ".join(pd.read_csv(p)["ours"].fillna("").astype(str))
               for p in REPO.glob("reference/*/*/tables/claims.csv")]
    for p in REPO.glob("reference/*/*/tables/scale_gaps.csv"):
        gaps = pd.read_csv(p).dropna(subset=["estimate"])
        sources += [f"{r.estimate:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]" for r in gaps.itertuples()]
    text = " ".join(sources)
    assert [q for q in quoted if q not in text] == []


def test_the_readme_is_short_and_every_docs_page_is_linked_and_every_link_resolves():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    pages = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md"))
    assert pages and [p for p in pages if f"]({p})" not in readme] == []
    for doc in [REPO / "README.md", *(REPO / "docs").glob("*.md")]:
        links = re.findall(r"\]\(([^)#:]+)\)", doc.read_text())
        assert [link for link in links if not (doc.parent / link).exists()] == [], doc.name


def test_the_executed_notebook_copies_are_the_notebooks_with_outputs():
    """docs/notebooks/ holds each notebook executed (make docs-notebooks): the same code, outputs, no error."""
    import json

    for source in sorted((REPO / "notebooks").glob("*.ipynb")):
        copy = json.loads((REPO / "docs" / "notebooks" / source.name).read_text())
        cells = [c for c in copy["cells"] if c["cell_type"] == "code"]
        code = ["".join(c["source"]) for c in json.loads(source.read_text())["cells"] if c["cell_type"] == "code"]
        assert ["".join(c["source"]) for c in cells] == code, f"{source.name}: rerun make docs-notebooks"
        outputs = [o for c in cells for o in c["outputs"]]
        assert all(c["outputs"] for c in cells), source.name
        assert not [o for o in outputs if o["output_type"] == "error"], source.name


def test_every_speedup_interval_the_readme_quotes_is_a_row_of_a_reference_speed_table():
    """'1.17x [1.14, 1.19]' anywhere in the README is some row's estimate and interval (X, X_lo, X_hi), as rounded
    to two decimals, in a committed benchmark table: no hand-typed speed number."""
    import pandas as pd

    quoted = set(re.findall(r"(\d+\.\d\d)x \[(\d+\.\d\d), (\d+\.\d\d)\]", (REPO / "README.md").read_text()))
    assert len(quoted) >= 3
    rows = set()
    for path in REPO.glob("reference/*/*/bench/**/*.csv"):
        df = pd.read_csv(path)
        for col in [c for c in df.columns if f"{c}_lo" in df.columns and f"{c}_hi" in df.columns]:
            triples = df[[col, f"{col}_lo", f"{col}_hi"]].dropna().to_numpy()
            rows |= {tuple(f"{v:.2f}" for v in t) for t in triples}
    assert sorted(quoted - rows) == []
