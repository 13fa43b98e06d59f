"""`import lmforge` and the light CLI verbs work with the core dependencies only."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import REPO

from lmforge.rundir import RunDir

BLOCK = ("torch", "transformers", "peft", "pandas", "pyarrow", "matplotlib", "accelerate", "tokenizers",
         "safetensors", "tensorboard", "sklearn", "tqdm", "onnx", "onnxruntime", "cryptography", "fastapi",
         "starlette", "uvicorn", "sqlalchemy", "prometheus_client", "httpx", "ray", "mlflow", "optuna")


def test_import_and_light_verbs_without_extras() -> None:
    code = textwrap.dedent(f"""
        import sys
        BLOCK = {BLOCK!r}

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCK:
                    raise ImportError(f"blocked for this test: {{name}}")
                return None

        sys.meta_path.insert(0, Blocker())
        import lmforge, lmforge.config, lmforge.catalog, lmforge.train, lmforge.evaluate, lmforge.data
        import lmforge.pipeline, lmforge.compress, lmforge.guard, lmforge.serve, lmforge.monitor, lmforge.client
        import lmforge.predict, lmforge.rundir, lmforge.metrics, lmforge.tune
        from lmforge.cli.__main__ import main
        assert main(["validate", "recipes/airline-lora.yaml"]) == 0
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCK)
        print("LOADED", loaded)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "spec is well-formed" in proc.stdout
    assert "LOADED []" in proc.stdout


def test_missing_extra_names_the_pip_command(tmp_path: Path) -> None:
    # A run whose fp32 model needs torch, in a process where torch cannot be imported.
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "lmforge_model.json").write_text('{"labels": ["a", "b"], "max_length": 8}', encoding="utf-8")
    RunDir(run).update_manifest()
    code = textwrap.dedent(f"""
        import sys

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "torch":
                    raise ImportError("blocked")
                return None

        sys.meta_path.insert(0, Blocker())
        from lmforge.cli.__main__ import main
        sys.exit(main(["predict", {str(run)!r}, "--allow-unsigned", "--text", "hi"]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'lmforge[train]'" in proc.stderr
