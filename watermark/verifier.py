"""Verification as a service: normalise, tokenize, test every key, optionally window, detail and sign.

This is what ``POST /v1/watermark/verify`` and ``greenlist verify`` run.

* Normalisation before scoring (Kirchenbauer et al.'s reference normalisers):
  Unicode NFC, zero-width and bidi controls removed, homoglyphs folded.
* Several keys (rotation): each non-retired key is tried; the best result is
  reported (smallest exact binomial p-value) with a Bonferroni-corrected
  p-value ``min(1, k · p)`` for k keys, and the verdict compares that with the
  single-key level ``P(Z >= z_threshold)``.
* Windowed detection (WinMax, :mod:`watermark.windowed`) finds watermarked
  spans inside mixed text, with character offsets.
* Token-level detail (green / red / ignored per token with offsets into the
  normalised text) and Ed25519 certificates (:mod:`watermark.certificate`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from greenlist.normalize import normalize
from watermark.certificate import TEXT_NORMALIZATION, Signer, text_sha256
from watermark.detector import Detection, WatermarkDetector, normal_sf, skipped_token_ids
from watermark.keys import KeyRing, WatermarkKey
from watermark.windowed import WINMAX_FPR, watermarked_spans, winmax_threshold, winmax_z


class Verifier:
    """Verifies texts against every non-retired watermark key.

    Args:
        keyring: The watermark keys.
        tokenizer: The tokenizer the watermark is defined over (a fast
            Hugging Face tokenizer, for offsets).
        tokenizer_name: Reported in results.
        gamma: γ. seeding_scheme: ``selfhash``, ``lefthash`` or ``robust``: the server's scheme, used for
            keys that record none (a key bound to a scheme is scored with its own, see :mod:`watermark.keys`).
        z_threshold: Single-key z threshold (4.0).
        min_tokens: Fewer scored tokens gives ``too_short``.
        delta: δ used at generation (reported only; detection does not need it).
        signer: Signs certificates, or None.
    """

    def __init__(
        self,
        keyring: KeyRing,
        tokenizer: Any,
        tokenizer_name: str,
        gamma: float,
        seeding_scheme: str,
        z_threshold: float = 4.0,
        min_tokens: int = 16,
        delta: float = 2.0,
        signer: Signer | None = None,
    ) -> None:
        self.keyring, self.tokenizer, self.tokenizer_name = keyring, tokenizer, tokenizer_name
        self.gamma, self.z_threshold, self.min_tokens, self.delta = gamma, z_threshold, min_tokens, delta
        self.signer = signer
        self.seeding_scheme = seeding_scheme
        self._skip_ids = skipped_token_ids(tokenizer) if tokenizer is not None else frozenset()
        self.detectors = [self._detector(k) for k in keyring.verifying]

    def _detector(self, key: WatermarkKey) -> WatermarkDetector:
        """The detector of one key: its scheme's; ``robust`` skips :data:`~watermark.detector.ROBUST_SKIPPED_TOKENS`."""
        scheme = key.scheme(self.gamma, self.seeding_scheme)
        skip = self._skip_ids if scheme.seeding_scheme == "robust" else ()
        return WatermarkDetector(scheme, self.z_threshold, self.min_tokens, skip_ids=skip)

    def set_keyring(self, keyring: KeyRing) -> None:
        """Verify with ``keyring`` from now on (a rotated shared key set); detectors are rebuilt first."""
        detectors = [self._detector(k) for k in keyring.verifying]
        self.keyring, self.detectors = keyring, detectors

    def scheme_info(self, detector: WatermarkDetector) -> dict[str, Any]:
        """The scheme parameters reported with a result."""
        return {
            "gamma": self.gamma,
            "delta": self.delta,
            "seeding_scheme": detector.scheme.seeding_scheme,
            "context_width": detector.scheme.context_width,
            "tokenizer": self.tokenizer_name,
            "min_tokens": self.min_tokens,
        }

    def verify(
        self, text: str, *, windowed: bool = False, detail: bool = False, certificate: bool = False
    ) -> dict[str, Any]:
        """Verify ``text``.

        Args:
            text: The text to check (any Unicode).
            windowed: Add WinMax results and watermarked ``spans``.
            detail: Add per-token colours (``tokens``) and ``normalized_text``.
            certificate: Add a signed ``certificate``.

        Returns:
            The verify endpoint's JSON body (see README).

        Raises:
            RuntimeError: ``certificate=True`` without a signer.
        """
        normalized = normalize(text, "NFC")
        enc = self.tokenizer(normalized, add_special_tokens=False, return_offsets_mapping=True)
        ids = np.asarray(enc["input_ids"], dtype=np.int64)
        detectors = self.detectors  # read once: a key reload may swap the list meanwhile
        detections = [d.detect(ids) for d in detectors]
        best_i = int(np.argmin([d.p_value for d in detections]))
        best, detector = detections[best_i], detectors[best_i]
        keys = len(detections)
        corrected = min(1.0, best.p_value * keys)
        too_short = best.num_tokens_scored < self.min_tokens
        watermarked = None if too_short else corrected <= normal_sf(self.z_threshold)
        result: dict[str, Any] = {
            **best.to_dict(),
            "watermarked": watermarked,
            "verdict": "too_short" if too_short else ("watermarked" if watermarked else "not_watermarked"),
            "p_value": corrected,
            "p_value_uncorrected": best.p_value,
            "key_id": detector.scheme.key_id,
            "keys_tried": keys,
            "scheme": self.scheme_info(detector),
        }
        if windowed:
            result["windowed"] = self._windowed(detections, detectors, enc["offset_mapping"], ids)
            result["spans"] = result["windowed"]["spans"]
        if detail:
            result["normalized_text"] = normalized
            result["tokens"] = [
                {"text": normalized[s:e], "start": s, "end": e, "status": status}
                for (s, e), status in zip(enc["offset_mapping"], best.statuses, strict=True)
            ]
        if certificate:
            if self.signer is None:
                raise RuntimeError("no signing key configured")
            result["certificate"] = self.signer.sign(
                {
                    "issuer": "greenlist",
                    "version": 1,
                    **{
                        k: result[k]
                        for k in (
                            "verdict",
                            "watermarked",
                            "z_score",
                            "p_value",
                            "num_tokens_scored",
                            "num_green_tokens",
                            "z_threshold",
                            "key_id",
                            "keys_tried",
                            "scheme",
                        )
                    },
                    "text_sha256": text_sha256(text),
                    "text_normalization": TEXT_NORMALIZATION,
                }
            )
        return result

    def _windowed(
        self,
        detections: list[Detection],
        detectors: list[WatermarkDetector],
        offsets: list[tuple[int, int]],
        ids: np.ndarray,
    ) -> dict[str, Any]:
        """WinMax over each key's scored tokens; spans of the best key, in character offsets.

        WinMax's thresholds assume independent colours, so where a detector counts repeats (``robust``) only the
        first occurrence of each token takes part here.
        """
        best: tuple[float, int, np.ndarray, np.ndarray] | None = None
        for i, det in enumerate(detections):
            statuses = np.array(det.statuses)
            positions = np.flatnonzero((statuses == "green") | (statuses == "red"))
            if detectors[i].repeat_cap > 1:
                positions = positions[np.sort(np.unique(ids[positions], return_index=True)[1])]
            green = statuses[positions] == "green"
            z = float(winmax_z(green, self.gamma)) if green.size else float("-inf")
            if best is None or z > best[0]:
                best = (z, i, positions, green)
        assert best is not None
        z, best_i, positions, green = best
        threshold = winmax_threshold(max(int(green.size), 1))
        fpr = WINMAX_FPR * len(detections)  # Bonferroni over keys
        spans = []
        if green.size >= self.min_tokens and z >= threshold:
            for span in watermarked_spans(green, self.gamma, threshold):
                first, last = positions[span.first], positions[span.last]
                # a scored token's colour depends on its left context: the span starts at its seeding window
                first = max(0, first - (detectors[best_i].scheme.ngram_len - 1))
                spans.append(
                    {
                        "start": int(offsets[first][0]),
                        "end": int(offsets[last][1]),
                        "z_score": span.z_score,
                        "num_tokens": int(span.last - span.first + 1),
                    }
                )
        return {
            "winmax_z": z if np.isfinite(z) else None,
            "z_threshold": threshold,
            "fpr": fpr,
            "watermarked": bool(spans),
            "spans": spans,
        }
