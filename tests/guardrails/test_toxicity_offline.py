"""The shipped toxicity weights load with no network and read no file outside the installed packages and the repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import json, socket, sys
    opened, connects = [], []
    def hook(event, args):
        if event == "open" and isinstance(args[0], (str, bytes)):
            opened.append(str(args[0]))
        elif event == "socket.connect":
            connects.append(repr(args[1]))
    sys.addaudithook(hook)
    import yaml
    from guardrails.base import Direction
    from guardrails.toxicity import ToxicityConfig, ToxicityGuardrail
    entry = next(e for e in yaml.safe_load(open("policies/default.yaml"))["output"] if e["type"] == "toxicity")
    g = ToxicityGuardrail(ToxicityConfig(**entry))
    r1 = g.scan("You are a worthless idiot.", Direction.OUTPUT)
    r2 = g.scan("Du bist ein wertloser Idiot und alle hassen dich.", Direction.OUTPUT)
    print(json.dumps({"opened": opened, "connects": connects, "decisions": [r1.decision.value, r2.decision.value],
                      "routes": [r1.details["language"]["route"], r2.details["language"]["route"]]}))
""")
WEIGHT_SUFFIXES = (".npz", ".npy", ".onnx", ".safetensors", ".bin", ".model", ".pt", ".gguf", ".json", ".txt")


def test_shipped_weights_load_offline_from_packages_and_repo(tmp_path):
    import sysconfig

    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "GREENLIST_HOME": str(tmp_path / "home"),
        "HF_HOME": str(tmp_path / "hf"),
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["connects"] == [], out["connects"]
    assert out["decisions"][0] == "block" and out["routes"] == ["default", "de"]
    allowed = {
        str(ROOT),
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
        sys.prefix,
        sys.base_prefix,
        str(tmp_path / "home"),
    }
    weights = {p for p in out["opened"] if p.endswith(WEIGHT_SUFFIXES) and not p.startswith(("/proc", "/sys", "/dev"))}
    outside = sorted(p for p in weights if not any(os.path.abspath(p).startswith(a) for a in allowed))
    assert not outside, outside
    assert not any(str(tmp_path / "hf") in p for p in weights), "read from a Hugging Face download cache"
    assert any(p.endswith("minilm_head.npz") for p in weights)
