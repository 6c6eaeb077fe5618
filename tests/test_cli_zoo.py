"""`hub3d list` and `hub3d info`."""
import json

from click.testing import CliRunner

import hub3d
from hub3d.cli import main


def invoke(*args):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_list_shows_every_model_with_its_size_and_cost():
    rows = json.loads(invoke("list", "--json"))
    assert [r["model"] for r in rows] == hub3d.list_models()
    r34 = next(r for r in rows if r["model"] == "resnet3d_34")
    assert r34["GFLOPs"] == 25.4 and r34["features"] == 512 and "kinetics400" in r34["tags"]
    table = invoke("list", "resnet3d_*", "--pretrained")
    names = [line.split()[0] for line in table.splitlines()[2:]]
    assert "resnet3d_34" in names and "resnet3d_10" not in names


def test_list_tags_gives_sources_and_label_status():
    rows = {r["weights"]: r for r in json.loads(invoke("list", "--tags", "--json"))}
    assert len(rows) == len(hub3d.list_pretrained())
    assert rows["r3d_18.kinetics400"]["source"] == "hf:hub3d/r3d_18.kinetics400 > url"
    assert rows["resnet3d_34.kinetics400"]["source"].endswith("> drive")
    assert rows["motion_demo.synthetic"]["source"] == "bundled"
    assert "order unverified" in rows["resnet3d_50.kinetics700"]["labels"]


def test_info_lists_preprocessing_per_tag():
    info = json.loads(invoke("info", "resnet3d_18", "--json"))
    assert info["tags"]["kinetics400"]["value_scale"] == 255.0
    assert info["tags"]["kinetics700"]["std"] == [0.2768, 0.2713, 0.2737]
    text = invoke("info", "r3d_18")
    assert "download.pytorch.org" in text and "[128, 171]" in text
    result = CliRunner().invoke(main, ["info", "resnet3d_99"])
    assert result.exit_code != 0 and "unknown model 'resnet3d_99'" in result.output
