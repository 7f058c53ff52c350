"""push_to_hub of SPACL-trained models through the real huggingface_hub upload code, against a loopback server."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import HubStandIn

pytest.importorskip("sentence_transformers")

WORKER = Path(__file__).with_name("push_worker.py")


@pytest.mark.parametrize("mode", ["model", "trainer"])
def test_push_to_hub_uploads_weights_config_and_spacl_card(mode, tiny_encoder_dir, tmp_path):
    repo_id = f"user/spacl-tiny-{mode}"
    with HubStandIn() as hub:
        env = {
            **os.environ,
            "HF_ENDPOINT": hub.url,
            "HF_HUB_OFFLINE": "0",
            "HF_HOME": str(tmp_path / "hf_home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        result = subprocess.run(
            [sys.executable, str(WORKER), tiny_encoder_dir, str(tmp_path / "out"), mode, repo_id],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-4000:] + "\nunknown endpoints: " + str(hub.unknown)
        files = hub.repos.get(repo_id, {})
    assert hub.commits, f"no commit arrived; unknown endpoints: {hub.unknown}"
    assert hub.validated_cards, "the model card's metadata was never validated"
    weights = [name for name in files if name.endswith(".safetensors")]
    assert weights and all(len(files[name]) > 1000 for name in weights)
    assert "config.json" in files and json.loads(files["config.json"])["model_type"] == "bert"
    assert "modules.json" in files
    card = files["README.md"].decode()
    assert "SPACLLoss" in card and "SnaPhArd Contrast Learning" in card and '"screening_mass": 0.95' in card
