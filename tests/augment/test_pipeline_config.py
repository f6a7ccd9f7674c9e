"""Configs: reading from dict / YAML / JSON, the round trip, and every validation error."""

import json

import numpy as np
import pytest
import torch
import yaml

import augment
from augment import AugmentError, Pipeline

CONFIG = {
    "seed": 7,
    "steps": [
        {"op": "hflip", "p": 0.5},
        {"op": "rotate", "degrees": 10},
        {"one_of": [{"op": "blur", "sigma": [0.5, 1.0]}, "gaussian_noise"], "p": 0.5},
        {"some_of": [{"op": "brightness"}, {"op": "contrast"}, {"op": "gamma"}], "k": [1, 2]},
        {"op": "erasing", "p": 0.2, "size": [0.1, 0.2], "value": 0.5},
    ],
    "ood": {
        "severity": 0.3,
        "ops": ["cutpaste", {"op": "perlin", "weight": 2, "area": [0.05, 0.1]}],
    },
}


def test_defaults_are_filled_and_scalars_become_ranges():
    cfg = Pipeline.from_config(CONFIG).to_config()
    rotate = cfg["steps"][1]
    assert rotate == {
        "op": "rotate",
        "p": 1.0,
        "degrees": [-10.0, 10.0],
        "fill": 0.0,
        "mode": "constant",
    }
    assert cfg["steps"][2]["one_of"][1]["op"] == "gaussian_noise"  # bare name read as {op: name}
    assert cfg["steps"][3]["k"] == [1, 2]
    assert cfg["ood"]["ops"][0] == {
        "op": "cutpaste",
        "weight": 1.0,
        "area": [0.02, 0.15],
        "aspect": [0.3, 3.3],
        "jitter": 0.1,
    }


def test_round_trip_gives_same_config_and_same_output(tmp_path):
    first = Pipeline.from_config(CONFIG)
    cfg = first.to_config()
    path = tmp_path / "aug.yaml"
    path.write_text(yaml.safe_dump(cfg))
    again = Pipeline.from_config(path)
    assert again.to_config() == cfg
    jpath = tmp_path / "aug.json"
    jpath.write_text(json.dumps(cfg))
    assert Pipeline.from_config(str(jpath)).to_config() == cfg
    x = torch.rand(16, 1, 28, 28)
    assert torch.equal(first(x), again(x))


def test_list_of_steps_is_accepted():
    p = Pipeline.from_config(["hflip", {"op": "vflip", "p": 0.5}])
    assert [s["op"] for s in p.to_config()["steps"]] == ["hflip", "vflip"]
    assert p.seed == 0


def one_line_error(cfg) -> str:
    with pytest.raises(AugmentError) as info:
        Pipeline.from_config(cfg)
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, ValueError)
    return message


@pytest.mark.parametrize(
    "steps, expected",
    [
        ([{"op": "rotat"}], "step 1: unknown op 'rotat'; valid ops are: affine, blur, brightness"),
        (
            [{"op": "rotate", "degree": 5}],
            "step 1 (rotate): unknown key 'degree'; valid keys are: degrees, fill, mode, op, p",
        ),
        ([{"op": "hflip", "p": 1.5}], "step 1 (hflip): key 'p': 1.5 is outside [0, 1]"),
        ([{"op": "hflip", "p": -0.1}], "step 1 (hflip): key 'p': -0.1 is outside [0, 1]"),
        (
            ["hflip", {"op": "rotate", "degrees": [30, 10]}],
            "step 2 (rotate): key 'degrees': range (30, 10) is reversed",
        ),
        (
            [{"op": "rotate", "degrees": "abc"}],
            "step 1 (rotate): key 'degrees': expected a number or a [low, high] pair, got 'abc'",
        ),
        (
            [{"op": "rotate", "degrees": [1, 2, 3]}],
            "key 'degrees': expected a number or a [low, high] pair",
        ),
        ([{"op": "hflip", "p": True}], "step 1 (hflip): key 'p': expected a number, got True"),
        (
            [{"op": "gaussian_noise", "per_channel": "yes"}],
            "key 'per_channel': expected true or false",
        ),
        (
            [{"op": "rotate", "mode": "wrap"}],
            "key 'mode': unknown value 'wrap'; valid values are: constant, edge, reflect",
        ),
        (
            [{"op": "scale", "factor": [0, 1]}],
            "step 1 (scale): key 'factor': 0 is outside [0.05, 20]",
        ),
        ([{"one_of": ["hflip", {"op": "blurr"}]}], "step 1.2: unknown op 'blurr'"),
        (
            [{"some_of": ["hflip", "vflip"], "k": 3}],
            "step 1 (some_of): key 'k': 3 is outside [0, 2]",
        ),
        (
            [{"some_of": ["hflip", "vflip"], "k": 1.5}],
            "step 1 (some_of): key 'k': expected integers",
        ),
        (
            [{"one_of": ["hflip"], "k": 1}],
            "step 1 (one_of): unknown key 'k'; valid keys are: one_of, p",
        ),
        ([{"one_of": []}], "step 1 (one_of): key 'one_of': expected a non-empty list of steps"),
        (
            [{"op": "hflip", "one_of": ["vflip"]}],
            "step 1: expected exactly one of 'op', 'one_of', 'some_of'",
        ),
        ([3], "step 1: expected a mapping with 'op', 'one_of' or 'some_of', got 3"),
        # other tools' style, an op as a key: the line shows the form to write
        ([{"rotate": {"degrees": 10}}], "step 1: write an op as {op: rotate, degrees: 10}, not as a key"),
        ([{"hflip": None}], "step 1: write an op as {op: hflip}, not as a key"),
    ],
)
def test_step_errors_name_step_and_key(steps, expected):
    assert expected in one_line_error({"steps": steps})


@pytest.mark.parametrize(
    "cfg, expected",
    [
        ({"stepz": []}, "config: unknown key 'stepz'; valid keys are: ood, seed, steps"),
        ({"seed": -1}, "config: key 'seed': -1 is outside [0,"),
        ({"seed": "x"}, "config: key 'seed': expected an integer, got 'x'"),
        ({"steps": "hflip"}, "config: key 'steps': expected a list of steps"),
        ("not-a-file.yaml", "not-a-file.yaml: cannot read config"),
        (
            {"ood": {"ops": ["cutpast"]}},
            "ood op 1: unknown op 'cutpast'; valid ops are: cutpaste, local_elastic",
        ),
        (
            {"ood": {"ops": [{"op": "perlin", "area": [0.3, 0.1]}]}},
            "ood op 1 (perlin): key 'area': range (0.3, 0.1) is reversed",
        ),
        ({"ood": {"severity": 0}}, "ood: key 'severity': 0 is outside (0, 1]"),
        (
            {"ood": {"sevrity": 0.5}},
            "ood: unknown key 'sevrity'; valid keys are: max_tries, min_pixels, ops, severity",
        ),
        ({"ood": {"ops": [{"op": "scar", "weight": 0}]}}, "ood: key 'ops': the weights sum to 0"),
    ],
)
def test_config_errors(cfg, expected):
    assert expected in one_line_error(cfg)


def test_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [\n")
    assert one_line_error(bad).startswith(f"{bad}: not valid yaml")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("steps:\n  - op: rotate\n    degrees: [30, 10]\n")
    assert (
        one_line_error(wrong)
        == f"{wrong}: step 1 (rotate): key 'degrees': range (30, 10) is reversed"
    )


def test_backend_and_epoch_errors():
    with pytest.raises(
        AugmentError, match="backend: unknown value 'tf'; valid values are: torchvision, imgaug"
    ):
        Pipeline.from_config([], backend="tf")
    p = Pipeline.from_config(["hflip"])
    with pytest.raises(AugmentError, match="epoch: expected a non-negative integer"):
        p.set_epoch(-1)
    with pytest.raises(AugmentError, match="indices: expected 4 non-negative integers"):
        p(torch.rand(4, 1, 8, 8), indices=[0, 1, 2])
    with pytest.raises(AugmentError, match="indices: expected 2 non-negative integers"):
        p(torch.rand(2, 1, 8, 8), indices=np.array([0, -1]))


def test_every_op_has_an_implementation_on_both_backends():
    x = torch.rand(4, 3, 16, 16)
    for op in augment.OPS:
        for backend in augment.BACKENDS:
            p = Pipeline.from_config([{"op": op}], backend=backend)
            data = x if backend == "torchvision" else x.permute(0, 2, 3, 1).numpy()
            out = p(data)
            assert out.shape == data.shape and out.dtype == data.dtype, (op, backend)


def test_the_constructor_reads_a_config_as_from_config_does():
    """Pipeline([...]) is what a user writes first: it was kept unchecked and failed at its first
    use (an AttributeError); it now reads and checks the steps at once."""
    import torch

    from augment import AugmentError, Pipeline

    steps = [{"op": "hflip", "p": 0.5}, {"op": "rotate", "degrees": 10}]
    x = torch.rand(4, 3, 16, 16)
    assert torch.equal(Pipeline(steps)(x, indices=range(4)), Pipeline.from_config(steps)(x, indices=range(4)))
    assert Pipeline({"steps": steps, "seed": 3}).to_config() == Pipeline.from_config({"steps": steps, "seed": 3}).to_config()
    with pytest.raises(AugmentError, match=r"step 1 \(hflip\): key 'p': 1.5 is outside \[0, 1\]"):
        Pipeline([{"op": "hflip", "p": 1.5}])
    with pytest.raises(AugmentError, match="expected a mapping or a list of steps, got NoneType"):
        Pipeline(None)
