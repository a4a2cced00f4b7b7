"""Features of the default toxicity heads: MiniLM layer embeddings and negation / reporting cues.

A sentence embedding sees topic and tone, not who says what about whom: "I
don't hate gay people" and "I hate gay people" are neighbours. Recipes v3
and v5 (see ``docs/toxicity.md``) give the logistic heads what a single pooled
last layer lacks:

* mean-pooled embeddings of intermediate layers beside the top one read
  (v3: 6, 2 and 4; v5: 3 and 2), which keep more of the lexical signal
  (5-fold CV on OLID: AUROC 0.781 -> 0.820 for the v3 toxicity head);
* two binary cues, *negation* (``not``, ``never``, ``don't``, ``nobody`` ...)
  and *reporting* (quotation marks, ``said``, ``called me``, ``claims`` ...),
  each also multiplied with the first layer listed, so the head can learn a
  separate direction for negated and for reported statements (held-out
  functional tests, negation accuracy 0.13 -> 0.33).

A feature spec is ``(layers, cues)``; weights files store it (``layers``,
``cues`` = cue version, 0 = none, in the ``.npz``), and files without one
(v1, v2) mean ``((6,), 0)``: the last layer alone, no cues.
"""

from __future__ import annotations

import re

import numpy as np

LAST_LAYER = 6
DEFAULT_LAYERS = (LAST_LAYER, 2, 4)

NEGATION = re.compile(
    r"\b(?:not|no|never|nobody|none|nothing|neither|nor|\w+n['’]t|cannot|dont|doesnt|isnt|arent|"
    r"wont|cant|shouldnt|wasnt|werent)\b",
    re.IGNORECASE,
)
# Cue version 2: the same words, minus constructions in which they do not negate
# the predicate but affirm or intensify it ("X are nothing but parasites", "no
# better than animals", "none other than", "not only ... but"). Version 1 fired
# on these, which pushed dehumanising comparisons toward "negated, non-toxic".
NEGATION_V2 = re.compile(
    r"\b(?:not(?!\s+only\b)|no(?!\s+(?:more|less|better|different|other)\s+than\b)|never|nobody|"
    r"none(?!\s+other\s+than\b)|nothing(?!\s+(?:but|more\s+than|less\s+than|short\s+of|else\s+but)\b)|"
    r"neither|nor|\w+n['’]t|cannot|dont|doesnt|isnt|arent|wont|cant|shouldnt|wasnt|werent)\b",
    re.IGNORECASE,
)
REPORTING = re.compile(
    r"[\"“”«»]|\b(?:said|says|saying|say|called|calls|calling|claims?|claimed|wrote|writes|posted|"
    r"told|tells|shouted|yelled|quote|quoted|quoting|heard|repeats?|repeated)\b",
    re.IGNORECASE,
)


def cue_features(texts: list[str], version: int = 1, parts: list[list[str]] | None = None) -> np.ndarray:
    """Binary negation and reporting cues.

    Args:
        texts: N prepared texts (:func:`guardrails.toxicity.text.prepare`).
        version: 1 (:data:`NEGATION`, recipe v3) or 2 (:data:`NEGATION_V2`,
            recipe v5: skips "nothing but", "no better than" ...).
        parts: Optional, for each text, prepared pieces it is made of (e.g. the sentences of a context window).
            A text equal to its pieces joined by single spaces has no cue that none of its pieces has (every
            match lies inside one piece: the patterns match words and quotation marks, and more text after a
            piece only helps their negative look-aheads fail), so such a text is searched only when a piece
            has the cue. Same result as without ``parts``, with fewer regex passes.

    Returns:
        float32 array (N, 2): column 0 = a negation word occurs, column 1 = a
        quotation mark or a reporting verb occurs.

    Raises:
        ValueError: for another version.
    """
    if version not in (1, 2):
        raise ValueError(f"cue version must be 1 or 2, got {version}")
    negation = NEGATION if version == 1 else NEGATION_V2
    found: dict[str, tuple[bool, bool]] = {}

    def cues(t: str, pieces: list[str] | None = None) -> tuple[bool, bool]:
        if t not in found:
            if pieces and len(pieces) > 1 and " ".join(pieces) == t:
                own = [cues(p) for p in pieces]
                neg, rep = any(c[0] for c in own), any(c[1] for c in own)
                found[t] = (neg and negation.search(t) is not None, rep and REPORTING.search(t) is not None)
            else:
                found[t] = (negation.search(t) is not None, REPORTING.search(t) is not None)
        return found[t]

    return np.asarray([cues(t, parts[i] if parts else None) for i, t in enumerate(texts)], dtype=np.float32).reshape(
        len(texts), 2
    )


def head_inputs(layer_emb: np.ndarray, texts: list[str], cues: int, parts: list[list[str]] | None = None) -> np.ndarray:
    """Assemble the head's input matrix.

    Args:
        layer_emb: (N, 384 * L) concatenated unit-norm layer embeddings, the
            top layer read first (as :meth:`guardrails.toxicity.onnx_encoder.OnnxEncoder.encode`
            returns them).
        texts: The N prepared texts the embeddings came from.
        cues: Cue version (:func:`cue_features`); 0 = no cue block.
        parts: Optional pieces of each text, passed to :func:`cue_features` (same result, fewer regex passes).

    Returns:
        ``layer_emb`` when ``cues`` is false, else (N, 384 * L + 2 * 384 + 2):
        ``[layer_emb, neg * top, rep * top, neg, rep]``.
    """
    if not cues:
        return layer_emb
    c = cue_features(texts, int(cues), parts)
    top = layer_emb[:, :384]
    return np.hstack([layer_emb, c[:, :1] * top, c[:, 1:] * top, c]).astype(np.float32)
