"""Evasion: obfuscated variants of toxic prompts score like the plain text; normalisation and de-obfuscation units."""

from __future__ import annotations

import asyncio

import pytest

from greenlist.normalize import deobfuscate, normalize
from guardrails import Decision, Direction

PLAIN = "you are an idiot and a stupid loser"
VARIANTS = [
    "you are an i d i o t and a s t u p i d loser",  # spacing
    "you are an 1d10t and a stup1d l0s3r",  # leetspeak
    "you are an i.d.i.o.t and a s-t-u-p-i-d loser",  # punctuation spacing
    "you are an id\u200biot and a stu\u200dpid loser",  # zero-width characters
    "you are an \u0456d\u0456ot and a stup\u0456d loser",  # Cyrillic homoglyphs
    "ｙｏｕ ａｒｅ ａｎ ｉｄｉｏｔ and a stupid loser",  # full-width forms (NFKC)
    "you are an \u202eidiot\u202c and a stupid loser",  # bidi controls
]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("i d i o t", "idiot"),
        ("1d10t", "idiot"),
        ("@$$hole", "asshole"),
        ("sh!t happens", "shit happens"),
        ("s.t.u.p.i.d", "stupid"),
        ("k1ll y0urs3lf", "kill yourself"),
        ("idiot!", "idiot!"),
        ("in 2023 I had 5 cats", "in 2023 I had 5 cats"),
        ("Plan A or B", "Plan A or B"),
        ("x = 10", "x = 10"),
        ("and a s-t-u-p-i-d loser", "and a stupid loser"),
        # news text: quantities, names with numbers and mixed separators are not leetspeak (each change would cost
        # a second scan of the whole text)
        ("a U.S. court gave a 3-2 ruling on 8 1/3 acres", "a U.S. court gave a 3-2 ruling on 8 1/3 acres"),
        (
            "raised $50M for F-15E jets, A$378m and 100M in COVID19 aid",
            "raised $50M for F-15E jets, A$378m and 100M in COVID19 aid",
        ),
    ],
)
def test_deobfuscate(text, expected):
    assert deobfuscate(text) == expected


@pytest.mark.parametrize("variant", VARIANTS[3:])
def test_normalize_undoes_unicode_tricks(variant):
    assert deobfuscate(normalize(variant)) == PLAIN


def test_toxicity_scores_obfuscated_variants_like_plain(fast_gateway):
    """Through the pipeline (which adds the de-obfuscated scan for lexical guardrails), every variant is blocked
    and its score is within 0.15 of the plain text's."""
    pipeline = getattr(getattr(fast_gateway, "store", None), "default", None) or fast_gateway.serving.pipeline

    def score(text: str) -> tuple[float, Decision]:
        verdict = asyncio.run(pipeline.check(text, Direction.INPUT))
        tox = next(r for r in verdict.results if r.name == "toxicity")
        return tox.score, verdict.decision

    plain_score, plain_decision = score(PLAIN)
    assert plain_decision is Decision.BLOCK
    for variant in VARIANTS:
        s, decision = score(variant)
        assert decision is Decision.BLOCK, (variant, s)
        assert s >= plain_score - 0.15, (variant, s, plain_score)


def test_benign_text_with_digits_is_not_deobfuscated_into_a_block(fast_gateway):
    pipeline = getattr(getattr(fast_gateway, "store", None), "default", None) or fast_gateway.serving.pipeline
    verdict = asyncio.run(pipeline.check("Order 4 items by 10:30, room B-2-3, code a1b2c3.", Direction.INPUT))
    assert verdict.decision is Decision.ALLOW
