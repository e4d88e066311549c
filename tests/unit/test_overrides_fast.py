"""The Hydra-free override parser (daemon/schema/overrides_fast.py) gives exactly Hydra's answer, or none.

Why: candidate overrides of model specs and `-o` overrides are parsed by it first; a text where it
answered differently from Hydra would train another candidate than the spec says. Real candidates,
hand-picked edge cases and random texts from the grammar's alphabet go to both parsers; where the fast
one answers, key, value and types must equal Hydra's; the repository's candidates must be answered.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.schema import overrides_fast
from tests.bench.repo_gen import layout

ROOT = Path(__file__).resolve().parents[2]


def hydra(text: str):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        (override,) = OverridesParser.create().parse_overrides([text])
    except Exception as exc:  # any refusal counts as "not a value"
        return ("error", type(exc).__name__)
    return (override.key_or_group, override.value())


def typed(value):
    """The value with every type spelled out (True != 1, 1.0 != 1 here)."""
    if isinstance(value, dict):
        return ("dict", [(typed(k), typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    return (type(value).__name__, value)


def check(text: str) -> bool:
    """True when the fast parser answered (and then equal to Hydra)."""
    fast = overrides_fast.parse(text)
    if fast is None:
        return False
    expected = hydra(text)
    assert expected[0] != "error", (text, expected)
    assert typed(fast) == typed(expected), (text, fast, expected)
    return True


def _candidates() -> list[str]:
    import yaml

    texts = []
    sources = [p.read_text() for p in (ROOT / "specs" / "models").glob("*.yaml")] + [t for p, t in layout(50).items() if p.startswith("models/")]
    for text in sources:
        for overrides in (yaml.safe_load(text).get("candidates") or {}).values():
            texts.extend(overrides)
    return texts


def test_the_repository_candidates_are_answered_and_equal():
    candidates = _candidates()
    assert candidates
    for text in candidates:
        assert check(text), text


EDGES = [
    "a=1", "a=-1", "a=+1", "a=0", "a=-0", "a=007", "a=1_000", "a=1.5", "a=-1.50", "a=.5", "a=5.", "a=1e3", "a=1.5e-3",
    "a=inf", "a=-inf", "a=nan", "a=Inf", "a=NaN", "a=true", "a=True", "a=TRUE", "a=false", "a=null", "a=NULL", "a=None",
    "a=x", "a=_x_", "a=x.y.z", "a=x-y", "a=x.1", "a=x.inf", "a=x.true", "a=nullable", "a=infinity", "a=x1e5", "a=truex",
    "a.b.c=1", "a.0=1", "a-b=1", "+a=1", "++a=1", "~a", "~a=1", "a/b=1", "a@b=1", "a=", "=1", "a", "a==1", "a=b=c",
    "a= 1", "a=1 ", " a=1", "a =1", "a=\t1", "a=x y", "a=x  y", "a=[]", "a={}", "a=[1]", "a=[1,2]", "a=[1, 2]", "a=[ 1 , 2 ]",
    "a=[1 2]", "a=[1,]", "a=[,1]", "a=[[1,2],[3]]", "a=[x, y.z, true, null, 1.5]", "a={b: 1}", "a={b:1}", "a={ b : 1 }",
    "a={b: 1, c: [1, 2], d: {e: x.y}}", "a={b: 1, b: 2}", "a={1: x}", "a={true: x}", "a={null: x}", "a={inf: x}",
    "a={b.c: 1}", "a={b: c:d}", "a={b}", "a={b:}", "a={:1}", "a=[a:1]", "a=x:y", "a=1,2", "a=choice(1,2)", "a=range(1,3)",
    "a=${b}", "a='x'", 'a="x"', "a=x\\,y", "a=[1]]", "a=[[1]", "a={b: 1}}", "a=" + "[" * 12 + "]" * 12,
    "a=" + "9" * 60, "a=" + "9" * 5000, "model={_target_: flows.training.models.LogisticBaseline}",
    "model.hidden=[64,32]", "optim.lr=0.003", "trainer.epochs=10", "optim.name=sgd",
]


@pytest.mark.parametrize("text", EDGES)
def test_edge_cases_are_hydras_or_declined(text):
    check(text)


def test_random_texts_are_hydras_or_declined():
    rng = random.Random(14)
    atoms = ["1", "0", "-2", "+3", "1.5", "0.25", "true", "false", "null", "x", "y.z", "_t_", "inf", "Nan", "1e3",
             "a-b", "1_0", "'q'", "${e}", "", " "]
    answered = 0

    def element(depth: int) -> str:
        roll = rng.random()
        if depth < 3 and roll < 0.2:
            return "[" + rng.choice([",", ", ", " ,", ","]).join(element(depth + 1) for _ in range(rng.randint(0, 3))) + "]"
        if depth < 3 and roll < 0.35:
            keys = rng.sample(["k", "v", "_w", "true", "1", "k"], rng.randint(0, 3))
            return "{" + ", ".join(f"{k}{rng.choice([': ', ':', ' : '])}{element(depth + 1)}" for k in keys) + "}"
        return rng.choice(atoms)

    for _ in range(400):
        key = rng.choice(["a", "a.b", "a.b.c", "_a", "a1.b2", "+a", "a-b"])
        answered += check(f"{key}={element(0)}")
    assert answered > 150  # most random plain texts are answered without Hydra


def test_validating_a_model_spec_imports_no_hydra():
    code = (
        "import sys\n"
        "from daemon.core.compose import compose\n"
        f"compose({str(ROOT)!r}, 'dev')\n"
        "assert 'hydra' not in sys.modules, [m for m in sys.modules if m.startswith('hydra')][:5]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
