"""Tests of the citation-checking guardrail on real records from ../shared/data/citations/ir_anthology.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "citations" / "ir_anthology.jsonl"
pytestmark = pytest.mark.skipif(not DATA.is_file(), reason=f"shared citation data not found at {DATA}")

from guardrails.base import Decision, Direction  # noqa: E402
from guardrails.citations import CitationGuardrail, CitationGuardrailConfig  # noqa: E402
from guardrails.citations.cli import app  # noqa: E402
from guardrails.citations.extract import extract_citations  # noqa: E402
from guardrails.citations.records import (  # noqa: E402
    load_bibtex_string,
    load_json_records,
    surname_key,
)

N_SLICE = 400


def _rows() -> list[dict]:
    rows = []
    with DATA.open(encoding="utf-8") as fh:
        for line in fh:
            rows.append(json.loads(line))
            if len(rows) == N_SLICE:
                break
    return rows


def _pick(rows: list[dict], n_authors: int = 2) -> dict:
    """A record with a DOI, a year, >= n_authors authors and a title of >= 6 words."""
    return next(
        r for r in rows if r["doi"] and r["year"] and len(r["authors"]) >= n_authors and len(r["title"].split()) >= 6
    )


def _apa(rec: dict, year: int | None = None, authors: list[str] | None = None) -> str:
    names = []
    for a in authors or rec["authors"]:
        *given, family = a.split()
        names.append(f"{family}, {' '.join(g[0] + '.' for g in given)}")
    joined = ", ".join(names[:-1]) + ", & " + names[-1] if len(names) > 1 else names[0]
    return f"{joined} ({year or rec['year']}). {rec['title']}. {rec['venue']}."


FABRICATED_TITLE = "Quantum Annealing of Sparse Retrieval Graphs for Multilingual Podcast Summaries"


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A GREENLIST_HOME with the first 400 ir_anthology records loaded through the CLI as database 'ir'."""
    from typer.testing import CliRunner

    home = tmp_path_factory.mktemp("greenlist_home")
    src = home / "slice.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in _rows()), encoding="utf-8")
    result = CliRunner().invoke(app, ["load", str(src), "--name", "ir", "--home", str(home), "--no-progress"])
    assert result.exit_code == 0, result.output
    return home


@pytest.fixture(scope="module")
def guard(home) -> CitationGuardrail:
    return CitationGuardrail(CitationGuardrailConfig(home=str(home)))


def _only(guard: CitationGuardrail, text: str) -> dict:
    cits = guard.scan(text, Direction.OUTPUT).details["citations"]
    assert len(cits) == 1, cits
    return cits[0]


# ------------------------------------------------------------------ records


def test_bibtex_loading_decodes_latex_and_name_order():
    bib = r"""
    @article{mueller2019,
      title = {{\"U}ber {Relevanz}: a study of ranking},
      author = {M{\"u}ller, J{\"o}rg and van der Berg, Anna and John Smith},
      year = {2019}, journal = {J. Test}, doi = {https://doi.org/10.1234/ABC.5}
    }
    @misc{doe2021, title = "An arXiv paper on retrieval", author = "Jane Doe",
      eprint = {2101.00001v2}, archivePrefix = {arXiv}, year = 2021}
    """
    recs = load_bibtex_string(bib, source="t.bib")
    assert [r.id for r in recs] == ["mueller2019", "doe2021"]
    a, b = recs
    assert a.title == "Über Relevanz: a study of ranking"
    assert a.authors == ["Jörg Müller", "Anna van der Berg", "John Smith"]
    assert a.year == 2019 and a.doi == "10.1234/abc.5" and a.venue == "J. Test"
    assert b.arxiv == "2101.00001" and b.authors == ["Jane Doe"]


def test_bibtex_garbage_raises_with_hint():
    with pytest.raises(ValueError, match="BibTeX"):
        load_bibtex_string("@article{broken, title = {unterminated")


def test_csl_json_and_name_normalisation():
    csl = json.dumps(
        [
            {
                "id": "x",
                "type": "article-journal",
                "title": "Copy theory",
                "author": [{"family": "de Fremery", "given": "Wayne"}],
                "issued": {"date-parts": [[2022, 3]]},
                "DOI": "10.1002/ASI.24558",
            }
        ]
    )
    (rec,) = load_json_records(csl)
    assert rec.authors == ["Wayne de Fremery"] and rec.year == 2022 and rec.doi == "10.1002/asi.24558"
    assert surname_key("de Fremery, W.") == surname_key("Wayne de Fremery") == "fremery"
    assert surname_key('M{\\"u}ller, J.') == surname_key("Jörg Müller") == "muller"


# ------------------------------------------------------------------ extraction


def test_extraction_spans():
    text = (
        "Tagging was studied before (Bar-Ilan et al., 2010; Wu and Tseng, 1993). "
        "Koppel and Akiva (2006) wrote about style. See doi:10.1002/asi.21306 and arXiv:2101.00001v2, "
        "or the paper \u201cChinese Text Segmentation for Text Retrieval\u201d.\n\n"
        "References\n"
        "[1] Prathap, G. (2015). Measures for bibliometric size, impact, and concentration. JASIST, 66.\n"
    )
    cits = extract_citations(text)
    got = {(c.kind, text[c.start : c.end]) for c in cits}
    assert got == {
        ("author_year", "Bar-Ilan et al., 2010"),
        ("author_year", "Wu and Tseng, 1993"),
        ("author_year", "Koppel and Akiva (2006)"),
        ("doi", "doi:10.1002/asi.21306"),
        ("arxiv", "arXiv:2101.00001v2"),
        ("title", "\u201cChinese Text Segmentation for Text Retrieval\u201d"),
        ("reference", "Prathap, G. (2015). Measures for bibliometric size, impact, and concentration. JASIST, 66."),
    }
    entry = next(c for c in cits if c.kind == "reference")
    assert entry.year == 2015 and entry.title == "Measures for bibliometric size, impact, and concentration"


def test_dialogue_is_not_a_citation():
    text = '"I hope it is he," said she. "Do you regret it, William?" He wrote no more in 1850.'
    assert extract_citations(text) == []


# ------------------------------------------------------------------ verification


def test_real_citation_verified(guard):
    rec = _pick(_rows())
    c = _only(guard, "References\n" + _apa(rec) + "\n")
    assert c["verdict"] == "verified"
    assert c["match"]["id"] == rec["id"]


def test_wrong_year_is_mismatch_naming_year(guard):
    rec = _pick(_rows())
    c = _only(guard, "References\n" + _apa(rec, year=rec["year"] - 3) + "\n")
    assert c["verdict"] == "mismatch" and c["fields"] == ["year"]
    assert c["match"]["id"] == rec["id"]


def test_wrong_author_is_mismatch_naming_authors(guard):
    rec = _pick(_rows())
    authors = list(rec["authors"])
    authors[-1] = "Zebulon Quarrington"
    c = _only(guard, "References\n" + _apa(rec, authors=authors) + "\n")
    assert c["verdict"] == "mismatch" and c["fields"] == ["authors"]


def test_fabricated_citation_not_found_with_nearest(guard):
    rec = _pick(_rows())
    fake = dict(rec, title=FABRICATED_TITLE)
    c = _only(guard, "References\n" + _apa(fake) + "\n")
    assert c["verdict"] == "not_found" and c["match"] is None
    assert len(c["nearest"]) >= 1 and all("title" in n for n in c["nearest"])


def test_doi_exact_hit(guard):
    rec = _pick(_rows())
    text = f"The dataset is described at https://doi.org/{rec['doi'].upper()}."
    c = _only(guard, text)
    assert c["kind"] == "doi" and c["verdict"] == "verified" and c["match"]["id"] == rec["id"]
    assert text[c["span"][0] : c["span"][1]] == f"https://doi.org/{rec['doi'].upper()}"


def test_running_text_author_year_with_title(guard):
    rec = _pick(_rows())
    family = rec["authors"][0].split()[-1]
    text = f"As {family} et al. ({rec['year']}) argue in \u201c{rec['title']}\u201d, tags help."
    c = _only(guard, text)
    assert c["kind"] == "author_year_title" and c["verdict"] == "verified"
    assert text[c["span"][0] : c["span"][1]].startswith(f"{family} et al.")


def test_score_is_share_of_bad_citations(guard):
    rows = _rows()
    rec = _pick(rows)
    text = "References\n[1] " + _apa(rec) + "\n[2] " + _apa(dict(rec, title=FABRICATED_TITLE)) + "\n"
    res = guard.scan(text, Direction.OUTPUT)
    assert [c["verdict"] for c in res.details["citations"]] == ["verified", "not_found"]
    assert res.score == pytest.approx(0.5)
    assert res.decision is Decision.ALLOW and res.action == "annotate" and res.sanitized_text is None


# ------------------------------------------------------------------ actions


def _mixed_text(rec: dict) -> tuple[str, str, str]:
    real = _apa(rec)
    fake = _apa(dict(rec, title=FABRICATED_TITLE))
    return f"Two sources matter here.\n\nReferences\n[1] {real}\n[2] {fake}\n", real, fake


def test_strip_removes_only_fabricated(home, guard):
    rec = _pick(_rows())
    text, real, fake = _mixed_text(rec)
    g = CitationGuardrail(CitationGuardrailConfig(action="strip", home=str(home)), database=guard.db)
    res = g.scan(text, Direction.OUTPUT)
    assert res.decision is Decision.REDACT
    assert res.sanitized_text == f"Two sources matter here.\n\nReferences\n[1] {real}\n"


def test_strip_inline_tidies_parentheses(home, guard):
    rec = _pick(_rows())
    g = CitationGuardrail(CitationGuardrailConfig(action="strip", home=str(home)), database=guard.db)
    res = g.scan("This is well known (Zyxwvut and Qponm, 1999). Next.", Direction.OUTPUT)
    assert res.sanitized_text == "This is well known. Next."
    del rec


def test_disclaim_appends_notice(home, guard):
    rec = _pick(_rows())
    text, real, fake = _mixed_text(rec)
    g = CitationGuardrail(CitationGuardrailConfig(action="disclaim", home=str(home)), database=guard.db)
    res = g.scan(text, Direction.OUTPUT)
    assert res.decision is Decision.REDACT
    assert res.sanitized_text.startswith(text.rstrip())
    notice = res.sanitized_text[len(text.rstrip()) :]
    assert "1 of 2 references" in notice and "could not be verified" in notice
    assert FABRICATED_TITLE in notice and rec["title"] not in notice


def test_block_and_clean_text(home, guard):
    g = CitationGuardrail(CitationGuardrailConfig(action="block", home=str(home)), database=guard.db)
    rec = _pick(_rows())
    assert g.scan(_mixed_text(rec)[0], Direction.OUTPUT).decision is Decision.BLOCK
    clean = g.scan("References\n" + _apa(rec) + "\n", Direction.OUTPUT)
    assert clean.decision is Decision.ALLOW and clean.score == 0.0
    assert CitationGuardrail.streaming is False


def test_missing_database_error_says_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="greenlist citations load"):
        CitationGuardrail(CitationGuardrailConfig(databases=["nope"], home=str(tmp_path)))
    # default policy on a fresh install: no database yet -> starts, finds nothing, says why
    g = CitationGuardrail(CitationGuardrailConfig(home=str(tmp_path)))
    res = g.scan("References\n[1] Doe, J. (2020). A title that is long enough. Venue.\n", Direction.OUTPUT)
    assert res.score == 0.0 and res.details["citations"] == [] and "citations load" in res.details["note"]


# ------------------------------------------------------------------ CLI


def test_cli_list_and_check(home, tmp_path):
    from typer.testing import CliRunner

    runner = CliRunner()
    listed = runner.invoke(app, ["list", "--home", str(home)])
    assert listed.exit_code == 0 and "ir" in listed.output and str(N_SLICE) in listed.output
    rec = _pick(_rows())
    good = tmp_path / "good.txt"
    good.write_text("References\n" + _apa(rec) + "\n", encoding="utf-8")
    ok = runner.invoke(app, ["check", str(good), "--home", str(home), "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["citations"][0]["verdict"] == "verified"
    bad = tmp_path / "bad.txt"
    bad.write_text(_mixed_text(rec)[0], encoding="utf-8")
    flagged = runner.invoke(app, ["check", str(bad), "--home", str(home)])
    assert flagged.exit_code == 1 and "not_found" in flagged.output


def test_cli_loads_bibtex(tmp_path):
    from typer.testing import CliRunner

    bib = tmp_path / "mine.bib"
    bib.write_text(
        "@inproceedings{k, title={Sparse Lexical Retrieval Revisited}, author={Doe, Jane}, year={2020}}\n",
        encoding="utf-8",
    )
    res = CliRunner().invoke(app, ["load", str(bib), "--home", str(tmp_path), "--no-progress"])
    assert res.exit_code == 0, res.output
    g = CitationGuardrail(CitationGuardrailConfig(databases=["mine"], home=str(tmp_path)))
    c = _only(g, "References\n[1] J. Doe, \u201cSparse Lexical Retrieval Revisited,\u201d in Proc. X, 2020.\n")
    assert c["verdict"] == "verified" and c["match"]["id"] == "k"


def test_default_policy_disclaims_fabricated_citations(home, guard):
    """The shipped default policy appends the notice when an output cites a work not found in a loaded database."""
    from gateway.policy.schema import DEFAULT_POLICY_PATH, load_policy

    entry = next(e for e in load_policy(DEFAULT_POLICY_PATH).policy.output if e.type == "citations")
    assert entry.action == "disclaim"
    g = CitationGuardrail(entry.model_copy(update={"home": str(home)}), database=guard.db)
    text, _, _ = _mixed_text(_pick(_rows()))
    res = g.scan(text, Direction.OUTPUT)
    assert res.decision is Decision.REDACT and FABRICATED_TITLE in res.sanitized_text[len(text.rstrip()) :]
    assert "could not be verified" in res.sanitized_text
