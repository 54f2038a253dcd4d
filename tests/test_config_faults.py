"""Config mistakes that used to pass the dry run, and artifacts that used to be read silently
(issue 21): each is refused where the user meets it, naming the file or field and the fix.
"""

from __future__ import annotations

import copy
import io
import json
import re
import resource
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from sweetspot import artifacts, models, study
from sweetspot.analysis import table
from sweetspot.contract import COLUMNS
from sweetspot.data import human_trials, images
from sweetspot.data.images import DataError
from sweetspot.models import CheckpointError
from conftest import SCHEMA, TINY, run_snakemake, write_study


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


# --- the study a results folder holds ----------------------------------------------------------


def _validated(cfg: dict) -> dict:
    study.check(cfg, SCHEMA)
    return cfg


@pytest.fixture
def recorded(tmp_path, tiny_config) -> dict:
    """The tiny study's identity recorded in its results folder, as its first real run leaves it."""
    tiny_config.update(results=str(tmp_path / "results"), data_dir=str(tmp_path / "data"))
    study.record_identity(_validated(tiny_config), SCHEMA)
    return tiny_config


@pytest.mark.parametrize("change, shown", [
    (lambda c: c.update(benchmark="geirhos16", datasets={"geirhos16": "g16"}, image_size=224),
     "benchmark: 'synthetic' there, 'geirhos16' here"),
    (lambda c: c["synthetic"].update(train_per_class=24), "synthetic.train_per_class: 12 there, 24 here"),
    (lambda c: c["dense"].update(epochs=5), "dense.epochs: 1 there, 5 here"),
    (lambda c: c["pruning"]["recovery"].update(mode="bn"), "pruning.recovery.mode: 'finetune' there, 'bn' here"),
    (lambda c: c["architectures"]["vit"]["kwargs"].update(patch_size=6),
     "architectures.vit.kwargs.patch_size: 8 there, 6 here"),
    (lambda c: c["architectures"]["resnet"].update(timm="resnet18"),
     "architectures.resnet.timm: 'test_resnet' there, 'resnet18' here"),
])
def test_a_results_folder_of_a_different_study_is_refused(recorded, change, shown):
    other = copy.deepcopy(recorded)
    change(other)
    with pytest.raises(study.ConfigError) as err:
        study.check_results(other, SCHEMA)
    message = str(err.value)
    assert f"results: {recorded['results']} holds a different study ({recorded['results']}/study.json: " in message
    assert shown in message
    assert "choose another results folder, or, to replace them, run once with --config allow_results_reuse=true" in message
    other["allow_results_reuse"] = True
    study.check_results(other, SCHEMA)


@pytest.mark.parametrize("extend", [
    lambda c: c["pruning"]["sparsities"].append(0.9),
    lambda c: c["pruning"].update(methods=["magnitude"]),
    lambda c: c.update(seeds=[0, 1, 2]),
    lambda c: c["architectures"].update(small={"timm": "test_efficientnet"}),
    lambda c: c["architectures"].pop("vit"),
    lambda c: c["tasks"].pop("discovery"),
    lambda c: c["tasks"]["interpretability"].update(n_images=12, methods=["gradcam"]),
    lambda c: c.update(stats={"n_boot": 1000}, warm_start=False, device="auto", resources={"default": {"threads": 2}}),
    lambda c: c["dense"].update(weight_decay=0.05, label_smoothing=0.0),  # schema defaults spelt out
    lambda c: c["pruning"].update(imp={"rewind": "lr"}, exclude=[]),
    lambda c: c.update(datasets={"geirhos16": "/data/geirhos16"}),
    lambda c: c.update(datasets={"coco20k": {"annotations": "a.json", "images": "train2014", "names": "names.txt"}}),
    lambda c: c["architectures"]["resnet"].update(train={}, kwargs={}),
])
def test_extending_a_study_is_not_a_different_study(recorded, extend):
    other = copy.deepcopy(recorded)
    extend(other)
    study.check_results(_validated(other), SCHEMA)


def test_the_record_keeps_every_architecture_a_run_added(recorded):
    wider = copy.deepcopy(recorded)
    wider["architectures"]["small"] = {"timm": "test_efficientnet"}
    study.record_identity(wider, SCHEMA)
    study.check_results(recorded, SCHEMA)  # a run without the new label is still the same study
    redefined = copy.deepcopy(recorded)
    redefined["architectures"]["small"] = {"timm": "test_vit"}
    with pytest.raises(study.ConfigError, match="architectures.small.timm: 'test_efficientnet' there, 'test_vit' here"):
        study.check_results(redefined, SCHEMA)


def test_an_unreadable_study_record_is_refused_naming_it(recorded):
    path = Path(recorded["results"]) / study.STUDY_FILE
    path.write_text("{not json")
    with pytest.raises(study.ConfigError, match=re.escape(f"{path}: not the record of a study")):
        study.check_results(recorded, SCHEMA)


# --- the dry run refuses each mistake, fast and before writing anything ------------------------


def _duplicate_seeds(workdir: Path) -> None:
    path = workdir / "config.yaml"
    path.write_text(path.read_text() + "seeds: [0, 1, 2]\n")  # after `seeds: [0]`: YAML keeps this one


def _other_study(workdir: Path) -> None:
    other = copy.deepcopy(TINY)
    other["dense"]["epochs"] = 7
    with_dirs = {**other, "results": str(workdir / "results"), "data_dir": str(workdir / "data")}
    study.record_identity(with_dirs, SCHEMA)


@pytest.mark.parametrize("mutate, edit_files, expected", [
    (lambda c: c["architectures"].update({"..": c["architectures"].pop("resnet")}), None, "architectures: '..'"),
    (lambda c: c["tasks"]["accuracy"].update(datasets=["synthetic-vall"]), None, "tasks.accuracy.datasets[0]"),
    (lambda c: c["pruning"].update(sparsities=[0.5, 0.99999]), None, "pruning.sparsities[1]: 0.99999"),
    (lambda c: c.update(results=""), None, "results: '' should be non-empty"),
    (lambda c: c.update(data_dir="results/data"), None, "data_dir: "),
    (lambda c: c["stats"].update(n_boot=1e12), None, "stats.n_boot: "),
    (lambda c: None, _duplicate_seeds, "key 'seeds' is given twice"),
    (lambda c: c.update(results="results", data_dir="data"), _other_study, "dense.epochs: 7 there, 1 here"),
], ids=["label", "dataset", "sparsity", "empty-results", "nested-folders", "n_boot", "duplicate-key", "other-study"])
def test_the_dry_run_refuses_each_config_mistake_in_seconds(tmp_path, tiny_config, mutate, edit_files, expected):
    mutate(tiny_config)
    workdir = write_study(tmp_path, tiny_config)
    if edit_files:
        edit_files(workdir)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = run_snakemake(workdir, "-n", check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds, not wall time: the bound holds on a machine that others load too
    assert (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime) < 10
    assert proc.returncode != 0
    assert expected in proc.stdout + proc.stderr
    assert not (workdir / "data").exists()
    assert edit_files is _other_study or not (workdir / "results").exists()


# --- a finished study: deleted and replaced files ----------------------------------------------


@pytest.fixture(scope="module")
def finished_once(tmp_path_factory) -> Path:
    """The tiny study, every output present and up to date (empty files, then `--touch`) in seconds."""
    workdir = write_study(tmp_path_factory.mktemp("finished"), copy.deepcopy(TINY))
    summary = run_snakemake(workdir, "--summary").stdout.splitlines()
    for line in summary[1:]:
        path = workdir / line.split("\t")[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    run_snakemake(workdir, "--touch")
    assert "Nothing to be done" in run_snakemake(workdir, "-n").stdout
    return workdir


@pytest.fixture
def finished(finished_once, tmp_path) -> Path:
    """A copy of the finished study for one test to break (copytree keeps modification times)."""
    return Path(shutil.copytree(finished_once, tmp_path / "study", symlinks=True))


def test_a_dry_run_writes_no_study_record_and_a_real_run_does(tmp_path, tiny_config, finished):
    fresh = write_study(tmp_path / "fresh", tiny_config)
    run_snakemake(fresh, "-n")
    assert not (fresh / "results").exists()
    record = json.loads((finished / "results" / study.STUDY_FILE).read_text())  # written by the --touch run
    assert record["identity"] == study.identity(tiny_config, SCHEMA)


def test_a_deleted_metrics_file_comes_back_on_a_plain_rerun(finished):
    deleted = "results/metrics/accuracy/resnet/magnitude/0.5/seed0.parquet"
    (finished / deleted).unlink()
    plan = run_snakemake(finished, "-n").stdout
    assert f"output: {deleted}" in plan and "reason: Missing output files: " + deleted in plan
    assert "rule aggregate:" in plan and f"reason: Input files updated by another job: {deleted}" in plan


def test_a_deleted_checkpoint_is_rebuilt_only_when_a_job_needs_it(finished):
    (finished / "results/models/resnet/magnitude/0.5/seed0.safetensors").unlink()
    assert "Nothing to be done" in run_snakemake(finished, "-n").stdout  # its results stand; its disk is freed


def test_a_benchmark_file_replaced_in_place_reruns_the_jobs_that_read_it(finished):
    replaced = "data/synthetic/voc/JPEGImages/arrow_0000.png"
    (finished / replaced).parent.mkdir(parents=True, exist_ok=True)
    (finished / replaced).write_bytes(b"a replaced image")  # newer than data/synthetic/MANIFEST.json
    plan = run_snakemake(finished, "-n").stdout
    assert f"reason: Updated input files: {replaced}" in plan
    for rule in ("dense", "prune", "evaluate", "aggregate"):
        assert f"rule {rule}:" in plan


# --- metrics files are checked against the contract before they are read -----------------------


def _metrics_file(path: Path, drop: str | None = None, **overrides) -> Path:
    frame = pd.DataFrame({"benchmark": ["synthetic"] * 2, "arch": "resnet", "method": "dense", "sparsity": 0.0,
                          "sparsity_actual": 0.0, "seed": 0, "task": "accuracy", "dataset": "synthetic-val",
                          "variant": "", "metric": "top1", "item": ["a", "b"], "value": [1.0, 0.0]})
    frame = frame.astype(COLUMNS).assign(**overrides)
    artifacts.write_parquet(path, frame.drop(columns=[drop] if drop else []))
    return path


@pytest.mark.parametrize("drop", ["value", "seed", "metric"])
def test_a_metrics_file_without_a_contract_column_is_refused_naming_it(tmp_path, drop):
    good = _metrics_file(tmp_path / "metrics" / "good.parquet")
    bad = _metrics_file(tmp_path / "metrics" / "accuracy" / "seed0.parquet", drop=drop)
    with pytest.raises(ValueError) as err:
        table.read_metrics([good, bad])
    assert str(err.value) == (f"{bad}: missing the contract column(s) ['{drop}'] (sweetspot.contract.COLUMNS); delete "
                              f"it and run snakemake again, which rebuilds it with its evaluate job (that job alone: "
                              f"snakemake --cores 1 {bad})")


def test_a_metrics_column_of_another_type_is_refused_naming_it(tmp_path):
    bad = _metrics_file(tmp_path / "seed0.parquet", value=["high", "low"])
    with pytest.raises(ValueError, match=re.escape(f"{bad}: column types differ from the contract: value is ") +
                       r"(large_)?string, not float64; delete it"):
        table.read_metrics([bad])


@pytest.mark.parametrize("breakage", ["truncated", "empty", "broken data page"])
def test_an_unreadable_metrics_file_is_named(tmp_path, breakage):
    good = _metrics_file(tmp_path / "good.parquet")
    bad = _metrics_file(tmp_path / "bad.parquet")
    data = bad.read_bytes()
    if breakage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif breakage == "empty":
        bad.write_bytes(b"")
    else:  # the footer (and so the schema) intact, the column data overwritten
        bad.write_bytes(data[:4] + b"\xff" * 200 + data[204:])
    with pytest.raises(ValueError, match=rf"^{re.escape(str(bad))}: not a readable Parquet file .*delete it and run"):
        table.read_metrics([good, bad])


def test_good_metrics_files_are_read_whole(tmp_path):
    frame = table.read_metrics([_metrics_file(tmp_path / "a.parquet"), _metrics_file(tmp_path / "b.parquet")])
    assert len(frame) == 4 and frame["value"].tolist() == [1.0, 0.0, 1.0, 0.0]


# --- images over the pixel limit ---------------------------------------------------------------


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A small PNG whose header claims width x height (PIL checks the size before decoding)."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    header = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = header
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    path.write_bytes(bytes(data))
    return path


def test_a_huge_image_is_refused_naming_the_file_and_the_setting(tmp_path):
    path = _png_claiming(tmp_path / "huge.png", 20000, 20000)
    for read, what in ((images.read_rgb, "image"), (images.read_mask, "mask")):
        with pytest.raises(DataError, match=re.escape(f"{path}: {what} has more than max_image_pixels (178956970) "
                                                      "pixels; if the file is genuine, raise max_image_pixels")):
            read(path)


@pytest.mark.parametrize("limit", [2000, 1000])  # over the limit, and over twice it (PIL's own refusal)
def test_the_pixel_limit_is_the_configured_one(tmp_path, monkeypatch, limit):
    path = tmp_path / "image.png"
    Image.fromarray(np.zeros((48, 48, 3), np.uint8)).save(path)
    monkeypatch.setenv(images.MAX_PIXELS_ENV, str(limit))
    with pytest.raises(DataError, match=re.escape(f"{path}: image ") + f".*max_image_pixels \\({limit}\\)"):
        images.read_rgb(path)
    monkeypatch.setenv(images.MAX_PIXELS_ENV, str(48 * 48))
    assert images.read_rgb(path).shape == (48, 48, 3)


def test_the_schema_default_is_the_library_default():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["properties"]["max_image_pixels"]["default"] == images.DEFAULT_MAX_PIXELS


# --- human trial CSVs in other encodings -------------------------------------------------------

TRIALS = ("subj,session,trial,rt,object_response,category,condition,imagename\n"
          "subject-01,1,1,0.9,bird,bird,0,0001_s5n_s01_0_bird_00_bird1-clock3.png\n")


def _trials(tmp_path: Path, data: bytes) -> Path:
    folder = tmp_path / "human" / "cue-conflict"
    folder.mkdir(parents=True)
    (folder / "cue-conflict_subject-01_session_1.csv").write_bytes(data)
    return folder / "cue-conflict_subject-01_session_1.csv"


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_utf8_and_utf16_trials_with_a_byte_order_mark_are_read_alike(tmp_path, encoding):
    _trials(tmp_path, TRIALS.encode(encoding))
    frame = human_trials.load_experiment(tmp_path / "human", "cue-conflict")
    assert frame[["subject", "item", "correct"]].values.tolist() == [["subject-01", "cue-conflict/bird/bird1-clock3.png", 1]]


def test_a_latin1_trial_csv_is_refused_naming_the_file_and_the_encoding(tmp_path):
    path = _trials(tmp_path, TRIALS.replace("subject-01", "sujet-é").encode("latin-1"))
    with pytest.raises(DataError, match=re.escape(f"{path}: not UTF-8 text (byte b'\\xe9' at offset ") +
                       r"\d+\); save it as UTF-8 \(a Latin-1 file: iconv -f LATIN1 -t UTF-8\)"):
        human_trials.load_experiment(tmp_path / "human", "cue-conflict")


def test_an_empty_trial_csv_is_refused_naming_it(tmp_path):
    path = _trials(tmp_path, b"")
    with pytest.raises(DataError, match=re.escape(f"{path}: not a readable CSV")):
        human_trials.load_experiment(tmp_path / "human", "cue-conflict")


# --- checkpoint sidecars -----------------------------------------------------------------------

RESNET = {"timm": "test_resnet", "kwargs": {}}


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "resnet" / "dense" / "seed0.safetensors"
    models.save_checkpoint(path, models.create(RESNET, 8), {"arch": "resnet", "method": "dense", "sparsity": 0.0,
                                                            "sparsity_actual": 0.0, "seed": 0, "num_classes": 8})
    return path


@pytest.mark.parametrize("field, value, shown", [
    ("num_classes", "8", "num_classes is '8' (str), expected an integer from 2 to 100000"),
    ("num_classes", 1e9, "num_classes is 1000000000.0 (float), expected an integer from 2 to 100000"),
    ("num_classes", 10**9, "num_classes is 1000000000 (int), expected an integer from 2 to 100000"),
    ("num_classes", True, "num_classes is True (bool), expected an integer from 2 to 100000"),
    ("sparsity", "0.5", "sparsity is '0.5' (str), expected a number from 0 to below 1"),
    ("seed", -1, "seed is -1 (int), expected an integer of at least 0"),
    ("arch", None, "arch is None (NoneType), expected a non-empty string"),
])
def test_a_sidecar_field_of_the_wrong_type_or_range_is_refused_naming_file_and_field(checkpoint, field, value, shown):
    sidecar = models.sidecar_path(checkpoint)
    content = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**content, field: value}))
    with pytest.raises(CheckpointError) as err:
        models.load_checkpoint(checkpoint, RESNET)
    assert str(err.value).startswith(f"{sidecar}: {shown}; the sidecar was edited or written by another tool: "
                                     f"delete {checkpoint} and {sidecar} and run snakemake again")


def test_a_sidecar_without_num_classes_is_refused(checkpoint):
    sidecar = models.sidecar_path(checkpoint)
    sidecar.write_text(json.dumps({"arch": "resnet", "seed": 0}))
    with pytest.raises(CheckpointError, match=re.escape(f"{sidecar}: no num_classes")):
        models.load_checkpoint(checkpoint, RESNET)
