"""Config mistakes that used to pass the dry run, and artifacts that used to be read silently
(issue 21): each is refused where the user meets it, naming the file or field and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sweetspot import study
from conftest import SCHEMA, run_snakemake, write_study


def refusal(cfg: dict) -> str:
    with pytest.raises(study.ConfigError) as err:
        study.check(cfg, SCHEMA, source="study.yaml")
    return str(err.value)


# --- labels ------------------------------------------------------------------------------------


@pytest.mark.parametrize("label", ["..", ".", ".hidden", "a/b", "a\\b", "-resnet", "res net"])
def test_an_architecture_label_that_could_leave_its_folder_is_refused(tiny_config, label):
    tiny_config["architectures"][label] = tiny_config["architectures"].pop("resnet")
    message = refusal(tiny_config)
    assert f"architectures: {label!r} does not match" in message
    assert "use letters, digits, _ and -, starting with a letter or digit" in message


def test_labels_that_prefix_each_other_plan_their_own_folders(tmp_path, tiny_config):
    """The arch wildcard is the labels, regex-escaped: `vit` must not also match `vit-b_2`'s paths."""
    tiny_config["architectures"]["vit-b_2"] = dict(tiny_config["architectures"]["vit"])
    plan = run_snakemake(write_study(tmp_path, tiny_config), "-n").stdout
    for arch in ("vit", "vit-b_2"):
        assert f"output: results/models/{arch}/dense/seed0.safetensors" in plan
        assert f"wildcards: arch={arch}, seed=0" in plan


def test_architecture_labels_that_differ_only_in_case_are_refused(tiny_config):
    tiny_config["architectures"]["ResNet"] = dict(tiny_config["architectures"]["resnet"])
    assert "'resnet' and 'ResNet' differ only in case" in refusal(tiny_config)


# --- datasets ----------------------------------------------------------------------------------


def test_a_dataset_typo_is_refused_with_the_field_and_the_closest_name(tiny_config):
    tiny_config["tasks"]["alignment"]["datasets"] = ["synthetic-cue-conflict", "synthetic-vall"]
    assert ("tasks.alignment.datasets[1]: unknown dataset 'synthetic-vall'; did you mean 'synthetic-val'?"
            in refusal(tiny_config))


@pytest.mark.parametrize("task, dataset, lacks", [
    ("interpretability", "voc07-trainval", "object masks"),
    ("interpretability", "geirhos16-edge", "object masks"),
    ("discovery", "imagenet-val", "object boxes"),
    ("accuracy", "coco20k", "class labels"),
])
def test_a_dataset_without_what_its_task_scores_against_is_refused(tiny_config, task, dataset, lacks):
    tiny_config["tasks"][task]["datasets"] = ["synthetic-val", dataset]
    message = refusal(tiny_config)
    assert f"tasks.{task}.datasets[1]: {dataset} has no {lacks}" in message
    assert "choose from synthetic-val" in message


# --- folders -----------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["results", "data_dir"])
def test_an_empty_folder_is_refused(tiny_config, field):
    tiny_config[field] = ""
    assert f"{field}: '' should be non-empty; name a folder, such as " in refusal(tiny_config)
    assert "(an empty path would put the" in refusal(tiny_config)


@pytest.mark.parametrize("results, data_dir, expected", [
    ("out", "out", "results, data_dir: both are"),
    ("out", "out/data", "data_dir: {data} is inside results ({results})"),
    ("data/results", "data", "results: {results} is inside data_dir ({data})"),
    ("out/../data", "data", "results, data_dir: both are"),
])
def test_results_and_data_dir_must_be_separate_folders(tiny_config, results, data_dir, expected):
    tiny_config.update(results=results, data_dir=data_dir)
    message = refusal(tiny_config)
    assert expected.format(results=Path(results).resolve(), data=Path(data_dir).resolve()) in message
    assert "give each its own folder" in message


# --- sparsities --------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    (float("nan"), "pruning.sparsities[1]: nan is not a number; write a fraction between 0 and 1"),
    (0.99999, "pruning.sparsities[1]: 0.99999 has more than 4 decimals and would run as 1 (its results folder); "
              "write 0.9999"),
    (0.00005, "pruning.sparsities[1]: 5e-05 has more than 4 decimals and would run as 0.0001 (its results folder); "
              "write 0.0001"),
    (0.12345, "would run as 0.1235 (its results folder); write 0.1235"),
    (-0.0, "pruning.sparsities[1]: -0.0 is less than or equal to the minimum of 0; a sparsity is a fraction strictly "
           "between 0 and 1"),
    (0, "(0 is the dense model, always included)"),
    (1.0, "pruning.sparsities[1]: 1.0 is greater than or equal to the maximum of 1"),
])
def test_a_sparsity_must_be_its_own_path_label(tiny_config, value, expected):
    tiny_config["pruning"]["sparsities"] = [0.8, value]
    assert expected in refusal(tiny_config)


def test_a_sparsity_with_four_decimals_runs_under_its_own_label(tiny_config):
    tiny_config["pruning"]["sparsities"] = [0.0001, 0.5905, 0.9999]
    study.check(tiny_config, SCHEMA)
    assert [study.sparsity_label(s) for s in tiny_config["pruning"]["sparsities"]] == ["0.0001", "0.5905", "0.9999"]


# --- duplicate keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, shown", [
    ("benchmark: synthetic\nseeds: [0]\nresults: r\nseeds: [0, 1, 2]\n", "line 4: key 'seeds' is given twice (first on line 2)"),
    ("pruning:\n  methods: [magnitude]\n  methods: [imp]\n", "line 3: key 'methods' is given twice (first on line 2)"),
    ('{"seeds": [0], "seeds": [1]}', "line 1: key 'seeds' is given twice (first on line 1)"),  # JSON configs too
])
def test_a_key_given_twice_is_refused_naming_the_file_key_and_line(tmp_path, text, shown):
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(study.ConfigError, match=re.escape(f"{path}, {shown}; YAML would keep only the last value: "
                                                          "delete one of them")):
        study.load_yaml(path)


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("base: &base {epochs: 1, lr: 0.1}\ndense:\n  <<: *base\n  epochs: 3\n")
    assert study.load_yaml(path)["dense"] == {"epochs": 3, "lr": 0.1}


# --- stats -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_boot", [1.0e12, "1e12"])  # YAML 1.1 reads 1e12 (no dot) as a string
def test_n_boot_is_bounded_by_the_schema(tiny_config, n_boot):
    tiny_config["stats"]["n_boot"] = n_boot
    message = refusal(tiny_config)
    assert "stats.n_boot: " in message and "at most 100000 keeps the aggregation in memory" in message
