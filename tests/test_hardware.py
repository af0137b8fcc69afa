"""hardware classes from recorded nvidia-smi and torch reports of real machines."""
import json
from pathlib import Path

import pytest

from supervisor.tracks import get_track
from nanopoor import hardware

FIX = Path(__file__).parent / "fixtures" / "hardware"


@pytest.mark.parametrize("name", ["t4", "a100", "h100", "t4x2", "cpu"])
def test_class_and_label_from_recorded_reports(name):
    fx = json.loads((FIX / f"{name}.json").read_text())
    hw = hardware.describe(fx["smi"], fx["torch"])
    used = fx["nproc"] if fx["torch"]["device"] != "cpu" else 0
    klass, label = hardware.classify(hw, get_track("fineweb-edu").to_dict(), used_gpus=used, device=fx["torch"]["device"])
    assert (klass, label) == (fx["expect_class"], fx["expect_label"])


def test_no_track_makes_a_t4_official():
    fx = json.loads((FIX / "t4.json").read_text())
    hw = hardware.describe(fx["smi"], fx["torch"])
    assert hardware.classify(hw, get_track("docs").to_dict(), used_gpus=1, device="cuda")[0] == "unofficial"


def test_a_t4_with_the_wrong_capability_is_not_official():
    hw = hardware.describe("Tesla T4, 15360, 550.54.15, 8.0\n", None)
    assert hardware.classify(hw, get_track("fineweb-edu").to_dict(), used_gpus=1, device="cuda")[0] == "unofficial"


def test_smi_rows_parse_memory_and_capability():
    gpus = hardware.parse_smi("NVIDIA H100 80GB HBM3, 81559, 580.159.04, 9.0\n")
    assert gpus == [{"name": "NVIDIA H100 80GB HBM3", "memory_bytes": 81559 * 2**20, "driver": "580.159.04", "capability": "9.0"}]


def test_torch_alone_describes_the_gpu_when_smi_is_missing():
    fx = json.loads((FIX / "a100.json").read_text())
    hw = hardware.describe(None, fx["torch"])
    assert hw["gpu_count"] == 1 and hw["gpus"][0]["name"] == "NVIDIA A100-SXM4-40GB"
