"""Tests of the protected-content guardrail on real data (../shared/data) and the stdlib."""

from __future__ import annotations

import ast
import json
import random
import shutil
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from guardrails import guardrail_class
from guardrails.base import Decision, Direction
from guardrails.protected import REDACTION_MARKER, ProtectedContentConfig, ProtectedContentGuardrail
from guardrails.protected.index import Corpus, CorpusParams, list_corpora
from guardrails.protected.matcher import Matcher
from guardrails.protected.shingling import code_tokens, prose_tokens, shingle_hashes
from guardrails.protected.signatures import MinHasher
from tests.cluster_fixtures import redis_server
from tests.conftest import SHARED

DATA = SHARED
ALICE = DATA / "protected_prose" / "carroll-alice.txt"
HAMLET = DATA / "protected_prose" / "shakespeare-hamlet.txt"
NOVELS = DATA / "human_text" / "british_novels.jsonl"
STDLIB = Path(sysconfig.get_paths()["stdlib"])

pytestmark = pytest.mark.skipif(not ALICE.exists(), reason=f"shared data not found at {DATA}")


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A GREENLIST home with two books (prose) and three stdlib modules (code)."""
    h = tmp_path_factory.mktemp("glhome")
    Corpus.create("books", CorpusParams.default("prose"), home=h).add_paths([ALICE, HAMLET])
    Corpus.create("pycode", CorpusParams.default("code"), home=h).add_paths(
        [STDLIB / "textwrap.py", STDLIB / "shlex.py", STDLIB / "fnmatch.py"]
    )
    return h


@pytest.fixture(scope="module")
def guard(home) -> ProtectedContentGuardrail:
    return ProtectedContentGuardrail(ProtectedContentConfig(home=str(home)))


def _words(path: Path, start: int, n: int) -> list[str]:
    return path.read_text("utf-8").split()[start : start + n]


# ----------------------------------------------------------------- normalisation / signatures


def test_prose_normalisation_defeats_trivial_edits():
    plain = prose_tokens("The fine protected world")
    tricky = prose_tokens("ＴＨＥ ﬁne  pro\u200btеcted, WORLD!")  # full-width, ligature, ZWSP, Cyrillic е
    assert tricky.tokens == plain.tokens
    text = "ＴＨＥ ﬁne"
    assert [text[s:e] for s, e in zip(tricky.starts[:2], tricky.ends[:2], strict=False)] == ["ＴＨＥ", "ﬁne"]


def test_code_normalisation_is_rename_invariant():
    a = code_tokens("def f(x, y):\n    # add\n    return x + y * 2\n")
    b = code_tokens("def total(alpha, beta):\n    return alpha + beta * 7  # other\n")
    assert a.tokens == b.tokens == ["def", "ID", "(", "ID", ",", "ID", ")", ":", "return", "ID", "+", "ID", "*", "LIT"]
    js = code_tokens("function f(a) { return a + 1; } // c", "javascript")
    assert "ID" in js.tokens and "LIT" in js.tokens and "//" not in " ".join(js.tokens)


def test_window_signatures_equal_datasketch_bulk():
    sh = shingle_hashes(prose_tokens(ALICE.read_text("utf-8")[:5000]).tokens, 5)
    hasher = MinHasher(128)
    starts, ends = np.array([0, 10, 37]), np.array([46, 56, 200])
    fast = hasher.windows(sh, starts, ends)
    ref = hasher.bulk([sh[s:e] for s, e in zip(starts, ends, strict=False)])
    for i, m in enumerate(ref):
        assert np.array_equal(m.hashvalues, fast[i])


# ----------------------------------------------------------------- prose matching


def test_verbatim_excerpt_found_with_offsets(guard):
    text = ALICE.read_text("utf-8")
    start = text.index("Alice was beginning to get very tired")
    quote = text[start : start + 600]
    prefix = "Here is something I wrote: "
    res = guard.scan(prefix + quote + " That's all.", Direction.OUTPUT)
    assert res.decision is Decision.BLOCK and res.score == 1.0
    m = res.details["matches"][0]
    assert m["corpus"] == "books" and m["document"].endswith("carroll-alice.txt")
    ds, de = m["doc_span"]
    assert abs(ds - start) <= 5 and abs(de - (start + 600)) <= 20
    ((qs, qe),) = m["query_spans"]
    assert abs(qs - len(prefix)) <= 2 and qe >= len(prefix) + 580
    ps, pe = m["passage_chars"]
    assert start - 200 <= ps and pe <= start + 800


def test_edited_excerpts_found(tmp_path):
    """100-word excerpts with 10 words substituted or deleted are still matched."""
    rng = random.Random(3)
    vocab = "the a house river morning quickly green silent letter".split()
    corpus = Corpus.create("alice", CorpusParams.default("prose"), home=tmp_path)
    corpus.add_paths([ALICE])
    matcher = Matcher(corpus)
    words = ALICE.read_text("utf-8").split()
    trials, found = 20, 0
    for _ in range(trials):
        start = rng.randrange(len(words) - 100)
        edited = words[start : start + 100]
        for i in rng.sample(range(100), 10):
            edited[i] = rng.choice(vocab) if rng.random() < 0.5 else ""
        matches, _ = matcher.match(" ".join(w for w in edited if w), 0.3)
        found += any(m.document == str(ALICE) for m in matches)
    assert found >= trials - 1


def test_human_paragraphs_not_flagged(guard):
    rows = [json.loads(line) for line in NOVELS.read_text("utf-8").splitlines()[:300]]
    flagged = [r["id"] for r in rows if guard.scan(r["text"], Direction.OUTPUT).decision is not Decision.ALLOW]
    assert flagged == []


def test_prompts_skipped_unless_enabled(home):
    quote = " ".join(_words(HAMLET, 5000, 120))
    off = ProtectedContentGuardrail(ProtectedContentConfig(home=str(home), corpora=["books"]))
    assert off.scan(quote, Direction.INPUT).decision is Decision.ALLOW
    on = ProtectedContentGuardrail(
        ProtectedContentConfig(
            home=str(home), corpora=["books"], overrides={"books": {"apply_to_prompts": True, "action": "cite"}}
        )
    )
    res = on.scan(quote, Direction.INPUT)
    assert res.decision is Decision.FLAG and res.action == "cite"
    assert any("shakespeare-hamlet" in c for c in res.details["citations"])


def test_redact_replaces_only_the_copied_span(home):
    g = ProtectedContentGuardrail(ProtectedContentConfig(home=str(home), corpora=["books"], action="redact"))
    quote = " ".join(_words(ALICE, 3000, 120))
    before, after = "My own opening sentence stays here.", "And my own closing remark stays too."
    res = g.scan(f"{before} {quote} {after}", Direction.OUTPUT)
    assert res.decision is Decision.REDACT
    assert res.sanitized_text == f"{before} {REDACTION_MARKER} {after}"


# ----------------------------------------------------------------- code matching


def _renamed_function(path: Path, name: str) -> tuple[str, str]:
    src = path.read_text("utf-8")
    node = next(n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.FunctionDef) and n.name == name)
    original = ast.get_source_segment(src, node)
    names: dict[str, str] = {}

    class R(ast.NodeTransformer):
        def visit_Name(self, n):
            n.id = names.setdefault(n.id, f"q{len(names)}")
            return n

        def visit_arg(self, n):
            n.arg = names.setdefault(n.arg, f"q{len(names)}")
            return n

        def visit_Attribute(self, n):
            self.generic_visit(n)
            n.attr = names.setdefault(n.attr, f"q{len(names)}")
            return n

    node.name = "renamed_fn"
    if isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant):
        node.body = node.body[1:]  # drop the docstring too
    return original, ast.unparse(R().visit(node))


def test_renamed_stdlib_function_found(guard):
    original, renamed = _renamed_function(STDLIB / "textwrap.py", "_wrap_chunks")
    assert "self" not in renamed and "chunks" not in renamed and "lines" not in renamed
    res = guard.scan(f"Here is an implementation:\n\n{renamed}\n", Direction.OUTPUT)
    assert res.decision is Decision.BLOCK
    assert any(m["corpus"] == "pycode" and m["document"].endswith("textwrap.py") for m in res.details["matches"])


def test_unrelated_stdlib_function_not_flagged(guard):
    src = (STDLIB / "heapq.py").read_text("utf-8")
    node = next(n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.FunctionDef) and n.name == "merge")
    res = guard.scan(ast.get_source_segment(src, node), Direction.OUTPUT)
    assert res.decision is Decision.ALLOW


# ----------------------------------------------------------------- registry, config


def test_registry_and_config_errors(home):
    assert guardrail_class("protected_content") is ProtectedContentGuardrail
    with pytest.raises(FileNotFoundError, match="greenlist corpus add"):
        ProtectedContentGuardrail(ProtectedContentConfig(home=str(home), corpora=["nope"]))
    with pytest.raises(ValueError):  # pydantic.ValidationError
        ProtectedContentConfig(action="shout")


# ----------------------------------------------------------------- CLI and incremental index


def test_cli_add_list_remove_stats(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from guardrails.protected.cli import app

    monkeypatch.setenv("GREENLIST_HOME", str(tmp_path))
    runner = CliRunner()
    r = runner.invoke(app, ["add", "alice", str(ALICE), "--kind", "prose"])
    assert r.exit_code == 0, r.output
    assert "added 1" in r.output
    n_passages = Corpus.open("alice", tmp_path).stats()["passages"]
    assert n_passages > 1000
    # re-adding the unchanged file is a no-op
    mtime = (tmp_path / "corpora" / "alice" / "lsh.npz").stat().st_mtime_ns
    r = runner.invoke(app, ["add", "alice", str(ALICE), "--kind", "prose"])
    assert r.exit_code == 0 and "unchanged 1" in r.output and "0 new passages" in r.output
    assert Corpus.open("alice", tmp_path).stats()["passages"] == n_passages
    assert Corpus.open("alice", tmp_path).stats()["lsh_entries"] == n_passages
    del mtime
    # incremental add of a second file
    r = runner.invoke(app, ["add", "alice", str(HAMLET)])
    assert r.exit_code == 0 and "added 1" in r.output and "unchanged 0" in r.output
    r = runner.invoke(app, ["list"])
    assert r.exit_code == 0 and "alice" in r.output and "prose" in r.output
    r = runner.invoke(app, ["stats", "alice", "--json"])
    s = json.loads(r.output)[0]
    assert s["documents"] == 2 and s["passages"] == s["lsh_entries"] > n_passages
    r = runner.invoke(app, ["add", "alice", str(ALICE), "--kind", "code"])
    assert r.exit_code != 0
    # removing one document removes its passages from the LSH store
    r = runner.invoke(app, ["remove", "alice", "--document", str(HAMLET)])
    assert r.exit_code == 0
    c = Corpus.open("alice", tmp_path)
    assert c.stats()["lsh_entries"] == n_passages
    quote = " ".join(_words(HAMLET, 4000, 100))
    assert Matcher(c).match(quote, 0.3)[0] == []
    r = runner.invoke(app, ["remove", "alice"])
    assert r.exit_code == 0 and list_corpora(tmp_path) == []
    assert runner.invoke(app, ["remove", "alice"]).exit_code == 1


def test_changed_file_replaces_old_passages(tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text(" ".join(_words(ALICE, 0, 400)), "utf-8")
    c = Corpus.create("c", CorpusParams.default("prose"), home=tmp_path / "h")
    first = c.add_paths([doc])
    doc.write_text(" ".join(_words(HAMLET, 0, 400)), "utf-8")
    second = c.add_paths([doc])
    assert first.added == [str(doc)] and second.replaced == [str(doc)]
    c2 = Corpus.open("c", tmp_path / "h")
    assert c2.stats()["documents"] == 1 and c2.stats()["lsh_entries"] == second.passages
    assert Matcher(c2).match(" ".join(_words(ALICE, 100, 100)), 0.3)[0] == []
    assert Matcher(c2).match(" ".join(_words(HAMLET, 100, 100)), 0.3)[0]


# ----------------------------------------------------------------- datasketch + Redis backend


def test_datasketch_dict_backend_persists(tmp_path):
    c = Corpus.create("ds", CorpusParams.default("prose"), home=tmp_path, backend="datasketch")
    c.add_paths([ALICE])
    c2 = Corpus.open("ds", tmp_path)
    assert c2.backend == "datasketch" and len(c2.lsh) == c.stats()["passages"]
    matches, _ = Matcher(c2).match(" ".join(_words(ALICE, 9000, 80)), 0.3)
    assert matches and matches[0].document == str(ALICE)


def test_redis_backend_shared_between_replicas(tmp_path):
    with redis_server() as url:  # skips without the redis-server binary or the redis package
        import redis

        client = redis.Redis.from_url(url)
        port = client.connection_pool.connection_kwargs["port"]
        storage = {"type": "redis", "basename": "greenlist:test", "redis": {"host": "127.0.0.1", "port": port}}
        c = Corpus.create(
            "shared",
            CorpusParams.default("prose"),
            home=tmp_path / "replica1",
            backend="datasketch",
            storage_config=storage,
        )
        c.add_paths([ALICE])
        assert not (tmp_path / "replica1" / "corpora" / "shared" / "lsh.pkl").exists()
        assert client.dbsize() > 0
        # A second replica with its own home (docs copied) queries the same Redis index.
        shutil.copytree(tmp_path / "replica1", tmp_path / "replica2")
        g = ProtectedContentGuardrail(ProtectedContentConfig(home=str(tmp_path / "replica2")))
        res = g.scan(" ".join(_words(ALICE, 12000, 90)), Direction.OUTPUT)
        assert res.decision is Decision.BLOCK
        assert res.details["matches"][0]["document"] == str(ALICE)
        assert len(g.matchers["shared"].corpus.lsh) == c.stats()["passages"]


# ----------------------------------------------------------------- corpora changed while the gateway runs


def test_running_guardrail_picks_up_cli_add_and_remove(tmp_path, monkeypatch):
    """Guardrail built first; `greenlist corpus add` afterwards is seen by the next scan (reload: sync)."""
    from typer.testing import CliRunner

    from guardrails.protected.cli import app

    monkeypatch.setenv("GREENLIST_HOME", str(tmp_path))
    runner = CliRunner()
    g = ProtectedContentGuardrail(ProtectedContentConfig(home=str(tmp_path), reload_interval=0))
    alice, hamlet = " ".join(_words(ALICE, 7000, 100)), " ".join(_words(HAMLET, 6000, 100))
    assert g.matchers == {} and g.scan(alice, Direction.OUTPUT).decision is Decision.ALLOW

    assert runner.invoke(app, ["add", "books", str(ALICE), "--kind", "prose"]).exit_code == 0
    res = g.scan(alice, Direction.OUTPUT)
    assert res.decision is Decision.BLOCK and res.details["matches"][0]["corpus"] == "books"
    assert g.scan(hamlet, Direction.OUTPUT).decision is Decision.ALLOW

    before = g.matchers["books"]
    assert g.refresh() == [] and g.matchers["books"] is before  # nothing changed: nothing reloaded
    assert runner.invoke(app, ["add", "books", str(HAMLET)]).exit_code == 0  # incremental add
    assert g.scan(hamlet, Direction.OUTPUT).decision is Decision.BLOCK
    assert g.matchers["books"] is not before

    assert runner.invoke(app, ["remove", "books"]).exit_code == 0
    assert g.scan(alice, Direction.OUTPUT).decision is Decision.ALLOW and g.matchers == {}


def test_reload_interval_and_background_mode(tmp_path):
    quote = " ".join(_words(ALICE, 15000, 100))
    slow = ProtectedContentGuardrail(ProtectedContentConfig(home=str(tmp_path), reload_interval=3600))
    bg = ProtectedContentGuardrail(ProtectedContentConfig(home=str(tmp_path), reload="background", reload_interval=0))
    off = ProtectedContentGuardrail(ProtectedContentConfig(home=str(tmp_path), reload="off", reload_interval=0))
    Corpus.create("alice", CorpusParams.default("prose"), home=tmp_path).add_paths([ALICE])
    # Not checked again within the interval (no per-scan disk access), until refreshed explicitly.
    assert slow.scan(quote, Direction.OUTPUT).decision is Decision.ALLOW
    assert slow.refresh() == ["alice"] and slow.scan(quote, Direction.OUTPUT).decision is Decision.BLOCK
    # Background: the scan that notices the change is served by the old indexes, the load runs in a thread.
    bg.scan(quote, Direction.OUTPUT)
    assert bg.wait_for_reload(timeout=60)
    assert bg.scan(quote, Direction.OUTPUT).decision is Decision.BLOCK
    assert off.scan(quote, Direction.OUTPUT).decision is Decision.ALLOW


def test_corpus_being_written_keeps_previous_index(tmp_path):
    """A corpus whose files are unreadable mid-update keeps its old index and is retried."""
    Corpus.create("alice", CorpusParams.default("prose"), home=tmp_path).add_paths([ALICE])
    g = ProtectedContentGuardrail(ProtectedContentConfig(home=str(tmp_path), reload_interval=0))
    quote = " ".join(_words(ALICE, 4000, 100))
    d = tmp_path / "corpora" / "alice"
    (d / "version").write_text("new-version-being-written", "utf-8")
    (d / "meta.json").rename(d / "meta.json.moved")
    (d / "meta.json").write_text("{truncated", "utf-8")
    assert g.scan(quote, Direction.OUTPUT).decision is Decision.BLOCK  # old index still used
    (d / "meta.json.moved").replace(d / "meta.json")
    assert g.refresh() == ["alice"] and g.scan(quote, Direction.OUTPUT).decision is Decision.BLOCK


# ----------------------------------------------------------------- evasion (issues 4 and 7)

_CYRILLIC = str.maketrans("aceopxyisjACEOPXYHKMTB", "асеорхуіѕјАСЕОРХУНКМТВ")
_INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u034f", "\ufe0f"]


def _evade(words: list[str], how: str, rng: random.Random) -> str:
    out = []
    for w in words:
        if how in ("case_punct", "all"):
            w = "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in w.strip(".,;:!?\"'()-_"))
            w += rng.choice(["", "", ",", ";", " -", "!!", "...", " \u201c"])
        if how in ("homoglyphs", "all"):
            w = w.translate(_CYRILLIC)  # every letter that has a Cyrillic look-alike
        if how in ("zero_width", "all") and len(w) > 1:
            for _ in range(2):
                i = rng.randrange(1, len(w))
                w = w[:i] + rng.choice(_INVISIBLE) + w[i:]
        out.append(w)
    return " ".join(out)


@pytest.mark.parametrize("how", ["homoglyphs", "zero_width", "case_punct", "all"])
def test_evasion_does_not_hide_a_copy(guard, how):
    """Cyrillic look-alikes, zero-width/invisible characters, changed case and punctuation."""
    rng = random.Random(len(how))
    words = _words(ALICE, 5200, 100)
    text = _evade(words, how, rng)
    assert text != " ".join(words)
    assert prose_tokens(text).tokens == prose_tokens(" ".join(words)).tokens
    res = guard.scan(f"As requested: {text} Hope that helps.", Direction.OUTPUT)
    assert res.decision is Decision.BLOCK
    m = res.details["matches"][0]
    assert m["document"].endswith("carroll-alice.txt") and m["similarity"] >= 0.95
    ((qs, qe),) = m["query_spans"]
    assert qs <= len("As requested: ") + 2 and qe >= len("As requested: ") + len(text) - 20


def test_genuine_cyrillic_text_is_not_folded():
    assert prose_tokens("Москва – столица России").tokens == ["москва", "столица", "россии"]
    assert prose_tokens("ТНЕ ІѕLAND, тhe нand").tokens == ["the", "island", "the", "hand"]
