"""Mutation testing of the science core, one module at a time, with mutmut (run by hand, never in CI).

mutmut 3 copies ``src/`` and ``tests/`` into ``mutants/`` and mutates every file that
``[tool.mutmut] only_mutate`` in pyproject.toml names, then runs the tests that cover each
mutated function. On a 2-core machine the whole core at once is too slow (the first step
runs every selected test file under tracing), so this script gives each module its own
working copy, ``mutants/modules/<name>/``, with a pyproject.toml whose ``[tool.mutmut]``
keeps the shared settings but mutates only that module and runs only its test files.
Each copy keeps mutmut's cache, so a rerun after adding a test retests only what changed.

Usage (from the repository root)::

    python benchmarks/mutation.py geometry metrics      # run, then print the scores
    python benchmarks/mutation.py --list                 # the module names
    python benchmarks/mutation.py --score geometry       # scores from the cached results
    python benchmarks/mutation.py --survivors geometry   # the surviving mutants' diffs

Needs mutmut (``pip install mutmut``; the scores in docs/mutation.md come from 3.8.1).
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]

# module name -> (files to mutate, test files that exercise them). A test file that does
# not exist yet (a module still on its owner's branch) is skipped.
MODULES: dict[str, tuple[list[str], list[str]]] = {
    "geometry": (["src/flarelens/geometry.py"], ["tests/test_geometry.py"]),
    "metrics": (["src/flarelens/metrics.py"], ["tests/test_metrics.py"]),
    "baselines": (["src/flarelens/baselines.py"], ["tests/test_baselines.py"]),
    "bootstrap": (["src/flarelens/bootstrap.py"], ["tests/test_bootstrap.py"]),
    "locations": (["src/flarelens/locations.py"], ["tests/test_locations.py"]),
    "labels": (["src/flarelens/labels.py"], ["tests/test_labels.py"]),
    "catalog": (["src/flarelens/catalog.py"], ["tests/test_catalog.py"]),
    "images": (["src/flarelens/images.py"], ["tests/test_images.py"]),
    "convert": (["src/flarelens/convert.py"], ["tests/test_convert.py"]),
    "data": (["src/flarelens/data.py"], ["tests/test_data.py"]),
    "train": (["src/flarelens/train.py"], ["tests/test_train.py"]),
    "evaluate": (["src/flarelens/evaluate.py"], ["tests/test_evaluate.py"]),
    "explain": (
        ["src/flarelens/explain/scores.py", "src/flarelens/explain/attributions.py"],
        ["tests/test_explain_scores.py", "tests/test_explain_attributions.py"],
    ),
}

# mutmut's exit-code classes, as `mutmut results` names them.
KILLED = {"killed", "caught by type check", "timeout"}
# ... and the exit codes mutmut stores for them (mutmut/stats.py).
KILLED_CODES = {1, 3, 36, 37, -24}


def module_tests(name: str) -> list[str]:
    """The module's test files that exist, plus every tests/test_mutants_<name>*.py."""
    _, tests = MODULES[name]
    found = [t for t in tests if (ROOT / t).is_file()]
    found += sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob(f"test_mutants_{name}*.py"))
    return found


def workdir(name: str) -> Path:
    return ROOT / "mutants" / "modules" / name


def toml_value(value) -> str:
    return json.dumps(value)  # lists of strings, numbers, booleans: JSON is valid TOML there


def prepare(name: str) -> Path:
    """Copy src/ and tests/ into the module's working copy, with a narrowed [tool.mutmut]."""
    work = workdir(name)
    work.mkdir(parents=True, exist_ok=True)
    for part in ("src", "tests"):
        # copy2 keeps modification times, by which mutmut tells an unchanged file.
        shutil.copytree(ROOT / part, work / part, dirs_exist_ok=True, copy_function=copy_if_changed,
                        ignore=shutil.ignore_patterns("__pycache__"))
    text = (ROOT / "pyproject.toml").read_text()
    settings = dict(tomllib.loads(text)["tool"]["mutmut"])
    settings["only_mutate"] = MODULES[name][0]
    settings["pytest_add_cli_args_test_selection"] = module_tests(name)
    lines = [f"{key} = {toml_value(value)}" for key, value in settings.items()]
    # Everything but the [tool.mutmut] table is kept, so pytest's settings still apply.
    text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text)
    (work / "pyproject.toml").write_text(text.rstrip() + "\n\n[tool.mutmut]\n" + "\n".join(lines) + "\n")
    return work


def previous_tests_unchanged(name: str) -> bool:
    """Whether every test file of the module's last run is still there, unchanged or only
    appended to (new files may be added).

    mutmut forgets every verdict when the test selection changes, also when a test file is
    only added. A mutant killed by files that are all still there, unchanged, is still killed
    by them, so then the kills are kept (:func:`restore_kills`) instead of rerun for hours.
    """
    work = workdir(name)
    toml = work / "pyproject.toml"
    if not toml.is_file():
        return False
    before = tomllib.loads(toml.read_text())["tool"]["mutmut"]["pytest_add_cli_args_test_selection"]
    # Appending tests keeps every earlier test as it was, so the file may have grown at its end.
    return all((work / t).is_file() and (ROOT / t).is_file()
               and (ROOT / t).read_bytes().startswith((work / t).read_bytes()) for t in before)


def _metas(name: str) -> list[Path]:
    return sorted((workdir(name) / "mutants").rglob("*.meta"))


def kills_to_keep(name: str, unchanged: bool) -> dict[str, int]:
    """mutant -> exit code of the module's killed mutants, when its earlier tests are unchanged."""
    if not unchanged:
        return {}
    codes = {}
    for meta in _metas(name):
        for key, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if code in KILLED_CODES:
                codes[key] = code
    return codes


def restore_kills(name: str, kept: dict[str, int]) -> int:
    """Put back the kept kills that mutmut reset to "not checked"; how many."""
    restored = 0
    for meta in _metas(name):
        data = json.loads(meta.read_text())
        codes = data["exit_code_by_key"]
        for key, code in kept.items():
            if key in codes and codes[key] is None:
                codes[key] = code
                restored += 1
        meta.write_text(json.dumps(data))
    return restored


def copy_if_changed(src: str, dst: str) -> None:
    s, d = Path(src), Path(dst)
    if d.exists() and d.stat().st_mtime == s.stat().st_mtime and d.stat().st_size == s.stat().st_size:
        return
    shutil.copy2(s, d)


def mutmut(work: Path, *args: str, capture: bool = False) -> subprocess.CompletedProcess:
    exe = shutil.which("mutmut") or str(Path(sys.executable).with_name("mutmut"))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH="")
    return subprocess.run([exe, *args], cwd=work, env=env, text=True,
                          capture_output=capture, check=False)


def readable(text: str) -> str:
    """mutmut's output without its spinner lines."""
    lines = text.replace("\r", "\n").splitlines()
    return "\n".join(ln for ln in lines if ln.strip() and not ln.lstrip()[:1] in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")


_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.utils.file_utils import walk_mutatable_files
from mutmut.mutation.data import SourceFileMutationData as Data
out = {}
wanted = set(json.load(sys.stdin))
for path in walk_mutatable_files():
    m = Data(path=path)
    m.load()
    for key in m.exit_code_by_key:
        if key in wanted:
            out[key] = get_diff_for_mutant(key, path=path)
json.dump(out, sys.stdout)
"""


def diffs(name: str, mutants: list[str]) -> dict[str, str]:
    """mutant name -> unified diff, in one process (``mutmut show`` takes seconds each)."""
    env = dict(os.environ, PYTHONPATH="")
    done = subprocess.run([sys.executable, "-c", _DIFFS], cwd=workdir(name), env=env, text=True,
                          input=json.dumps(mutants), capture_output=True, check=True)
    return json.loads(done.stdout)


def statuses(name: str) -> dict[str, str]:
    """mutant name -> status ("killed", "survived", "no tests", "timeout", ...)."""
    out = mutmut(workdir(name), "results", "--all", "true", capture=True).stdout
    result = {}
    for line in out.splitlines():
        if ":" in line:
            mutant, status = line.rsplit(":", 1)
            result[mutant.strip()] = status.strip()
    return result


def score(name: str, everything: dict[str, str] | None = None) -> tuple[int, int, list[str]]:
    """(killed, total, names of mutants not killed) from the cached results (``everything``:
    :func:`statuses` when the caller has it already); mutants not run (after ``--sample``)
    count in neither."""
    everything = statuses(name) if everything is None else everything
    st = {m: s for m, s in everything.items() if s != "not checked"}
    drawn = sampled(name)
    if drawn is not None:
        st = {m: s for m, s in st.items() if m in drawn}
    alive = sorted(m for m, s in st.items() if s not in KILLED)
    return len(st) - len(alive), len(st), alive


def sample(name: str, n: int, seed: int) -> list[str]:
    """Draw ``n`` of module ``name``'s mutants at random; return those of them not yet run.

    The draw is from all the module's mutants, so that it is a simple random sample even
    after mutmut has run some of them (it runs the fastest first). It is kept in
    ``sample.json``: a later, smaller ``n`` keeps a random subset of it, a larger one adds
    to it. On a first run mutmut is started once with a pattern that names no mutant:
    that generates the mutants and maps tests to functions without testing any.
    """
    work = workdir(name)
    if not (work / "mutants").is_dir():
        mutmut(work, "run", "flarelens.no_such_function_*", capture=True)
    st = statuses(name)
    rng = random.Random(seed)
    drawn = sorted(sampled(name) or [])
    if n < len(drawn):
        drawn = rng.sample(drawn, n)
    elif n > len(drawn):
        rest = sorted(set(st) - set(drawn))
        drawn += rng.sample(rest, min(n - len(drawn), len(rest)))
    (work / "sample.json").write_text(json.dumps(sorted(drawn)))
    return [m for m in drawn if st.get(m) == "not checked"]


def sampled(name: str) -> set[str] | None:
    """The mutants drawn by ``--sample`` for module ``name``, or None for a full run."""
    record = workdir(name) / "sample.json"
    return set(json.loads(record.read_text())) if record.is_file() else None


def wilson(k: int, n: int, z: float = 1.96) -> str:
    """The 95 % Wilson score interval of a proportion k/n, in percent."""
    if n == 0:
        return "undefined"
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{100 * (mid - half):.1f}-{100 * (mid + half):.1f} %"


# Why a surviving mutant is not a missed bug: its class, from the diff. Anything else is "open".
EXPLAINED = {
    "dtype": "equivalent for the numeric input callers pass: only drops a dtype conversion "
             "(float/int64/bool) whose values are already of that kind, or one numpy does anyway",
    "message": "changes only the text of an error or log message (no result changes)",
    "errstate": "changes only which numpy floating-point warnings are silenced",
}
_DTYPE = re.compile(r"(dtype=)?(float|np\.int64|np\.float64|bool|int)")


_STRING = re.compile(r"""[rbfuRBFU]*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")
_LOG = {"debug", "info", "warning", "error", "exception", "critical", "warn"}


def message_lines(source: str) -> set[int]:
    """Line numbers inside a ``raise`` statement or a logging/warnings call of ``source``."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        call_to_log = (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                       and node.func.attr in _LOG and isinstance(node.func.value, ast.Name)
                       and node.func.value.id in {"logger", "log", "logging", "warnings"})
        if isinstance(node, ast.Raise) or call_to_log:
            lines.update(range(node.lineno, node.end_lineno + 1))
    return lines


def classify(diff: str, sources: list[str] = ()) -> str:
    """The class (a key of EXPLAINED, or "open") of one mutant from its unified diff.

    ``sources``: the texts of the mutated files; with them, a change to a string literal on
    a continuation line of a raise or logging call also counts as a message.
    """
    old = [ln[1:] for ln in diff.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    new = [ln[1:] for ln in diff.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    if len(old) != 1 or len(new) != 1:
        return "open"
    a, b = old[0].strip(), new[0].strip()
    if a.startswith("raise ") or re.match(r"(logger|log|warnings)\.\w+\(", a):
        return "message"
    if sources and _STRING.sub('""', a) == _STRING.sub('""', b):
        where = [(i + 1, src) for src in sources for i, ln in enumerate(src.splitlines()) if ln.strip() == a]
        if where and all(n in message_lines(src) for n, src in where):
            return "message"
    if "np.errstate(" in a:
        return "errstate"
    # The old line with one dtype argument replaced by None or dropped gives the new line?
    for m in _DTYPE.finditer(a):
        for repl in ("None", ""):
            if (a[:m.start()] + (m.group(1) or "") + repl + a[m.end():]).replace(" ", "") == b.replace(" ", ""):
                return "dtype"
            if (a[:m.start()] + repl + a[m.end():]).replace(" ", "") == b.replace(" ", ""):
                return "dtype"
    return "open"


def survivors_markdown(names: list[str]) -> str:
    """Markdown list of every mutant not killed, with its class and its changed line."""
    out = []
    for n in names:
        st = statuses(n)
        killed, count, alive = score(n, st)  # for a sampled module: its random draw only
        drawn = sampled(n)
        where = f" (a random sample of {len(drawn)} of its {len(st)} mutants)" if drawn is not None else ""
        out.append(f"\n### {n}: {killed}/{count} killed{where}\n")
        shown = diffs(n, alive)
        sources = [(ROOT / f).read_text() for f in MODULES[n][0]]
        for m in alive:
            diff = shown.get(m, "")
            kind = classify(diff, sources)
            changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
            out.append(f"- `{m}` ({st[m]}): **{kind}**"
                       + "".join(f"\n  `{ln.strip()[:150]}`" for ln in changed))
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", help="module names (default: all)")
    parser.add_argument("--list", action="store_true", help="print the module names and their tests")
    parser.add_argument("--score", action="store_true", help="print scores from cached results only")
    parser.add_argument("--survivors", action="store_true", help="print each surviving mutant's diff")
    parser.add_argument("--retest", action="store_true", help="run the mutants not killed again (after editing tests)")
    parser.add_argument("--markdown", metavar="FILE", help="write every not-killed mutant, classified, to FILE")
    parser.add_argument("--max-children", type=int, default=2, help="parallel test processes (default 2)")
    parser.add_argument("--sample", type=int, metavar="N",
                        help="run only N mutants drawn at random (without replacement) from those not yet run; "
                             "the score is then an estimate, printed with its 95 %% Wilson interval")
    parser.add_argument("--seed", type=int, default=14, help="seed of --sample's draw (default 14)")
    args = parser.parse_args(argv)
    names = args.modules or list(MODULES)
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; --list shows the names")
    if args.list:
        for n in names:
            print(f"{n}: mutates {' '.join(MODULES[n][0])}; tests {' '.join(module_tests(n)) or '(none yet)'}")
        return 0
    if args.markdown:
        names = [n for n in names if (workdir(n) / "mutants").is_dir()]
        Path(args.markdown).write_text(survivors_markdown(names))
        return 0
    if not args.score and not args.survivors:
        for n in names:
            if not module_tests(n):
                print(f"{n}: no test file yet, skipped", file=sys.stderr)
                continue
            previous = previous_tests_unchanged(n)
            work = prepare(n)
            log = work / "run.log"
            print(f"== {n}: mutmut run (output in {log.relative_to(ROOT)})", flush=True)
            # mutmut keeps a verdict until the test selection or its settings change; --retest
            # names the mutants not killed so that an edited test file is tried on them again.
            again = score(n)[2] if args.retest and (work / "mutants").is_dir() else []
            kept = kills_to_keep(n, previous)
            if args.sample:
                again = sample(n, args.sample, args.seed)
                if not again:  # mutmut without names would run every mutant
                    print(f"{n}: every mutant of the sample has a verdict", flush=True)
                    continue
            done = mutmut(work, "run", "--max-children", str(args.max_children), *again, capture=True)
            log.write_text(done.stdout + done.stderr)
            if kept:
                print(f"{n}: {restore_kills(n, kept)} earlier kills kept (their test files are unchanged; "
                      "tests were only added)", flush=True)
            if done.returncode != 0:
                print(f"{n}: mutmut failed (status {done.returncode}); the end of {log}:", file=sys.stderr)
                print(readable(done.stdout + done.stderr)[-3000:], file=sys.stderr)
    # Over the whole core: a sampled module counts with all its mutants, at its sample's rate.
    total_killed = total = 0.0
    any_sampled = False
    for n in names:
        if not (workdir(n) / "mutants").is_dir():
            continue
        everything = statuses(n)
        killed, count, alive = score(n, everything)
        pct = 100 * killed / count if count else float("nan")
        drawn = sampled(n)
        note = ""
        if drawn is not None:
            any_sampled = True
            note = f"  (a random sample of {len(drawn)} of {len(everything)}; 95 % interval {wilson(killed, count)})"
            if count:
                total_killed += killed / count * len(everything)
                total += len(everything)
        else:
            total_killed += killed
            total += count
        print(f"{n:10s} {killed:4d}/{count:<4d} killed ({pct:5.1f} %)  not killed: {len(alive)}{note}", flush=True)
        if args.survivors:
            for m in alive:
                print(mutmut(workdir(n), "show", m, capture=True).stdout)
    if total:
        label = "total (est.)" if any_sampled else "total"
        print(f"{label:10s} {total_killed:4.0f}/{total:<4.0f} killed ({100 * total_killed / total:5.1f} %)"
              + ("  sampled modules counted at their sample's rate" if any_sampled else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
