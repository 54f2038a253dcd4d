"""The study configuration: checks before any job starts, and the grid it defines.

`check` reports every problem with the field's path and a fix (closest known key for a
misspelling, closest timm names for an unknown architecture), so a typo costs seconds,
not a failed cluster job hours later.
"""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Any, Hashable, Iterator, Mapping

import jsonschema
import yaml

from . import catalog
from .catalog import TASKS


class ConfigError(ValueError):
    """A config that cannot run; the message names the field and the fix."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping: plain YAML keeps the last
    value silently (`seeds: [0]` above `seeds: [0, 1, 2]` would run three seeds)."""

    def construct_mapping(self, node, deep=False):
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges are meant to be overridden by the keys beside them
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # SafeLoader refuses it with its own message
            line = key_node.start_mark.line + 1
            if key in first:
                raise ConfigError(f"{key_node.start_mark.name}, line {line}: key {key!r} is given twice (first on "
                                  f"line {first[key]}); YAML would keep only the last value: delete one of them")
            first[key] = line
        return super().construct_mapping(node, deep)


def load_yaml(path: str | Path) -> dict:
    """A YAML (or JSON) config file as a dict; a key given twice in a mapping is refused."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
    except ConfigError as err:  # a key given twice: raised again here, without the YAML parser's frames
        raise ConfigError(str(err)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at top level")
    return data


def _field(path: Iterator[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _unknown_keys(config: Any, schema: Mapping, root: Mapping, path: tuple = ()) -> list[str]:
    """Messages for keys the schema does not know, each with the closest known key."""
    if "$ref" in schema:
        schema = root["definitions"][schema["$ref"].rsplit("/", 1)[-1]]
    problems = []
    if isinstance(config, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in config.items():
            if key in props:
                problems += _unknown_keys(value, props[key], root, path + (key,))
            elif isinstance(extra, dict):
                problems += _unknown_keys(value, extra, root, path + (key,))
            elif extra is False:
                close = difflib.get_close_matches(str(key), list(props), n=1, cutoff=0.5)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(props)}"
                problems.append(f"{_field(path + (key,))}: unknown key{hint}")
    elif isinstance(config, list) and isinstance(schema.get("items"), dict):
        for i, value in enumerate(config):
            problems += _unknown_keys(value, schema["items"], root, path + (i,))
    return problems


def sparsity_label(sparsity: float) -> str:
    """The canonical wildcard text of a sparsity (at most 4 decimals): 0.5 -> '0.5'."""
    return f"{round(float(sparsity), 4):g}"


def check(config: dict, schema_path: str | Path, source: str = "config") -> None:
    """Validate a config against the schema, then the rules a schema cannot express.

    Raises ConfigError listing every problem found.
    """
    schema = load_yaml(schema_path)
    problems = _unknown_keys(config, schema, schema)
    validator = jsonschema.Draft202012Validator(schema)
    for err in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        if err.validator == "additionalProperties":
            continue  # reported above with a suggestion
        fix = err.schema.get("x-fix") if isinstance(err.schema, dict) else None  # the schema's own hint
        problems.append(f"{_field(err.absolute_path)}: {err.message}" + (f"; {fix}" if fix else ""))
    if not problems:
        problems += _semantic_problems(config)
    if problems:
        raise ConfigError(f"{source} is not valid:\n  - " + "\n  - ".join(problems))


def _semantic_problems(config: dict) -> list[str]:
    from .timm_names import check as check_timm_name
    from .weights import LITE_SOURCE, lite_package

    pruning = config["pruning"]
    problems = _sparsity_problems(pruning["sparsities"], "pruning.sparsities") + _folder_problems(config)
    for method, values in (pruning.get("sparsities_by_method") or {}).items():
        field = f"pruning.sparsities_by_method.{method}"
        problems += _sparsity_problems(values, field)
        if method not in pruning["methods"]:
            problems.append(f"{field}: {method} is not in pruning.methods, so these sparsities would never run; "
                            f"add {method} to pruning.methods or remove this entry")
    by_folder: dict[str, str] = {}
    for name in config["architectures"]:
        other = by_folder.setdefault(name.lower(), name)
        if other != name:
            problems.append(f"architectures: {other!r} and {name!r} differ only in case, so they share a results "
                            "folder on macOS and Windows; rename one")
    for name, arch in config["architectures"].items():
        try:
            check_timm_name(arch["timm"])
        except ValueError as err:
            problems.append(f"architectures.{name}.timm: {err}")
        weights = arch.get("weights", "scratch")
        if weights == LITE_SOURCE:
            try:
                lite_package(arch["timm"])
            except ValueError as err:
                problems.append(f"architectures.{name}.timm: {err}")
        if weights == "file" and not arch.get("weights_path"):
            problems.append(f"architectures.{name}.weights_path: required when weights is 'file'")
        elif weights == "file" and not Path(str(arch["weights_path"])).expanduser().is_file():
            problems.append(f"architectures.{name}.weights_path: {arch['weights_path']} does not exist; "
                            "point it at a safetensors file of this architecture")
        if weights == "scratch" and config["benchmark"] != "synthetic" and not config.get("datasets", {}).get("imagenet"):
            problems.append(f"architectures.{name}.weights: training from scratch needs a train split; "
                            "set datasets.imagenet or use pretrained weights")
    has_train_split = config["benchmark"] == "synthetic" or bool(config.get("datasets", {}).get("imagenet"))
    if not has_train_split:
        if config["pruning"].get("recovery", {}).get("mode", "finetune") == "finetune":
            problems.append("pruning.recovery.mode: finetune needs a train split; set datasets.imagenet "
                            "or use mode bn (BatchNorm re-estimation) or none")
        if "snip" in config["pruning"]["methods"]:
            problems.append("pruning.methods: snip trains from initialisation and needs a train split; "
                            "set datasets.imagenet or remove snip")
    from .data import registry

    known = registry.names()
    for task, cfg in config["tasks"].items():
        if task not in TASKS:
            continue  # the schema already refused it
        if not cfg.get("datasets"):
            problems.append(f"tasks.{task}.datasets: list at least one dataset, or remove the task")
        if cfg.get("max_side") is not None and not cfg.get("native_resolution"):
            problems.append(f"tasks.{task}.max_side: caps native image sizes; set tasks.{task}.native_resolution: "
                            "true or remove max_side")
        for i, name in enumerate(cfg.get("datasets") or []):
            if name not in known:
                close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
                hint = f"did you mean {close[0]!r}?" if close else f"choose from {', '.join(known)}"
                problems.append(f"tasks.{task}.datasets[{i}]: unknown dataset {name!r}; {hint}")
            elif task in _TASK_NEEDS and not _TASK_NEEDS[task][0](registry.info(name)):
                needs, what = _TASK_NEEDS[task][1:]
                fitting = [n for n in known if _TASK_NEEDS[task][0](registry.info(n))]
                problems.append(f"tasks.{task}.datasets[{i}]: {name} has no {needs}, which {task} {what}; "
                                f"choose from {', '.join(fitting)}")
    for task, metrics in (config.get("stats") or {}).get("headline", {}).items():
        allowed = catalog.testable(task)
        for metric in metrics:
            if metric not in allowed:
                problems.append(f"stats.headline.{task}: {metric!r} cannot be a headline metric of {task}; "
                                f"choose from {', '.join(allowed) or 'none'}")
    if not config["pruning"]["methods"]:
        problems.append("pruning.methods: the grid is empty; list at least one method")
    return problems


# What a task needs of a dataset: without it every image would be a counted skip (or no label to score).
_TASK_NEEDS = {
    "interpretability": (lambda d: d.has_masks, "object masks", "scores attribution maps against"),
    "discovery": (lambda d: d.has_boxes, "object boxes", "scores discovered boxes against"),
    "accuracy": (lambda d: d.label_space != "none", "class labels", "scores predictions against"),
}


def _sparsity_problems(sparsities: list, field: str) -> list[str]:
    """A sparsity names its results folder (sparsity_label, 4 decimals): it must be that label
    exactly, or 0.99999 would run as '1' and 0.00005 as '0.0001' without a word."""
    problems = []
    for i, value in enumerate(sparsities):
        if not math.isfinite(value):
            problems.append(f"{field}[{i}]: {value} is not a number; write a fraction between 0 and 1 "
                            "such as 0.5")
        elif float(sparsity_label(value)) != value:
            nearest = sparsity_label(min(max(round(value, 4), 0.0001), 0.9999))
            problems.append(f"{field}[{i}]: {value!r} has more than 4 decimals and would run as "
                            f"{sparsity_label(value)} (its results folder); write {nearest}")
    return problems


def _folder_problems(config: Mapping) -> list[str]:
    """results and data_dir must be separate folders: one inside the other mixes outputs with
    data (deleting results to start over would delete the data, or data would hold results)."""
    results = Path(str(config.get("results", "results"))).resolve()
    data = Path(str(config.get("data_dir", "data"))).resolve()
    fix = "give each its own folder, e.g. results: results and data_dir: data"
    if results == data:
        return [f"results, data_dir: both are {results}; {fix}"]
    if results in data.parents:
        return [f"data_dir: {data} is inside results ({results}); {fix}"]
    if data in results.parents:
        return [f"results: {results} is inside data_dir ({data}); {fix}"]
    return []


# --- the study a results folder holds ------------------------------------------------------------

STUDY_FILE = "study.json"
REUSE_KEY = "allow_results_reuse"
_GROWING = ("architectures", "datasets")  # new labels extend a study; a changed one is another study


def identity(config: Mapping, schema_path: str | Path) -> dict[str, Any]:
    """What makes a study's results comparable with each other: its benchmark, its data (the
    generator's settings, or the real datasets' locations and the input size) and its training
    recipe (dense schedule, architectures, pruning's recovery, IMP, SNIP and exclusions), with
    schema defaults filled in so that a default spelt out is the same study.

    The grid (sparsities, methods, seeds), the tasks, stats and runtime switches are not in it:
    changing them extends the study, which Snakemake already handles job by job.
    """
    schema = load_yaml(schema_path)
    full = _with_defaults_of(dict(config), schema, schema)
    if full["benchmark"] == "synthetic":
        data = {"synthetic": full["synthetic"]}
    else:
        data = {"image_size": image_size(full), "resize_size": full.get("resize_size")}
    pruning = full["pruning"]
    return {"benchmark": full["benchmark"], **data, "dense": full["dense"],
            "pruning": {key: pruning.get(key) for key in ("exclude", "recovery", "imp", "snip")},
            "architectures": full["architectures"], "datasets": full.get("datasets") or {}}


def _with_defaults_of(value: Any, schema: Mapping, root: Mapping) -> Any:
    """`value` with every schema default filled in, inside objects the config leaves out too;
    an empty object counts as absent (`train: {}` is no train entry)."""
    if "$ref" in schema:
        schema = root["definitions"][schema["$ref"].rsplit("/", 1)[-1]]
    if not isinstance(value, dict):
        return value
    props, extra = schema.get("properties", {}), schema.get("additionalProperties")
    out = {}
    for key in props.keys() | value.keys():
        sub = props.get(key, extra if isinstance(extra, dict) else {})
        if key in value:
            out[key] = _with_defaults_of(value[key], sub, root)
        elif "default" in sub:
            out[key] = sub["default"]
        elif "properties" in sub:
            out[key] = _with_defaults_of({}, sub, root)
        if out.get(key) == {}:
            del out[key]
    return out


def _differences(recorded: Any, current: Any, path: str) -> list[str]:
    if isinstance(recorded, dict) and isinstance(current, dict):
        found = []
        for key in sorted(recorded.keys() | current.keys(), key=str):
            if path in _GROWING and (key not in recorded or key not in current):
                continue  # a label added (or left out) extends the study
            found += _differences(recorded.get(key), current.get(key), f"{path}.{key}" if path else str(key))
        return found
    return [] if recorded == current else [f"{path}: {recorded!r} there, {current!r} here"]


def check_results(config: Mapping, schema_path: str | Path) -> None:
    """Refuse a config whose results folder holds a different study (its STUDY_FILE differs in
    what `identity` covers), unless allow_results_reuse is true."""
    import json

    path = Path(str(config["results"])) / STUDY_FILE
    if config.get(REUSE_KEY) or not path.is_file():
        return
    try:
        recorded = json.loads(path.read_text()).get("identity")
    except (ValueError, AttributeError):
        recorded = None
    if not isinstance(recorded, dict):
        raise ConfigError(f"{path}: not the record of a study (unreadable or edited); if the folder holds this "
                          "config's study, delete the file, else choose another results folder")
    found = _differences(recorded, identity(config, schema_path), "")
    if found:
        shown = "; ".join(found[:5]) + (f"; and {len(found) - 5} more" if len(found) > 5 else "")
        raise ConfigError(
            f"results: {config['results']} holds a different study ({path}: {shown}). Extending a study "
            "(sparsities, methods, seeds, architectures, tasks, task settings) is fine, but this run would replace "
            "that study's results: choose another results folder, or, to replace them, run once with "
            f"--config {REUSE_KEY}=true")


def record_identity(config: Mapping, schema_path: str | Path) -> None:
    """Write the study's identity to <results>/STUDY_FILE, keeping labels an earlier run recorded."""
    import json

    from .artifacts import write_json
    from .contract import config_hash

    path = Path(str(config["results"])) / STUDY_FILE
    current = identity(config, schema_path)
    try:
        recorded = json.loads(path.read_text()).get("identity") or {}
    except (OSError, ValueError, AttributeError):
        recorded = {}
    for key in _GROWING:
        if isinstance(recorded.get(key), dict):
            current[key] = {**recorded[key], **current[key]}
    write_json(path, {"identity": current, "hash": config_hash(current),
                      "about": "the study these results belong to (sweetspot.study.identity); a run of a "
                               f"different study into this folder is refused unless {REUSE_KEY} is true"})


def image_size(config: Mapping) -> int:
    if config["benchmark"] == "synthetic":
        return int(config.get("synthetic", {}).get("image_size", 48))
    return int(config.get("image_size", 224))


def resources(config: Mapping, rule: str) -> dict[str, Any]:
    """A rule's scheduler requests: its own entry over `default` over built-in values."""
    res = {"threads": 1, "mem_mb": 4000, "runtime": 60, "gpu": 0}
    res.update(config.get("resources", {}).get("default", {}))
    res.update(config.get("resources", {}).get(rule, {}))
    return res


def schedule(config: Mapping, arch: str) -> dict[str, Any]:
    """An architecture's training schedule: `dense` with its own `train` entries on top."""
    return {**config["dense"], **(config["architectures"][arch].get("train") or {})}


def checkpoints(config: Mapping) -> list[tuple[str, str, str, int]]:
    """Every (arch, method, sparsity label, seed) of the grid; dense and controls have sparsity '0'."""
    out = []
    for arch in config["architectures"]:
        for seed in config["seeds"]:
            out.append((arch, "dense", "0", seed))
            out += [(arch, catalog.CONTROL_PREFIX + recipe, "0", seed) for recipe in control_recipes(config)]
            for method in config["pruning"]["methods"]:
                out += [(arch, method, label, seed) for label in sparsity_labels(config, method)]
    return out


def sparsity_labels(config: Mapping, method: str) -> list[str]:
    """A pruning method's sparsities, ascending, as wildcard labels: its own list in
    `sparsities_by_method`, else `sparsities`."""
    pruning = config["pruning"]
    values = (pruning.get("sparsities_by_method") or {}).get(method, pruning["sparsities"])
    return [sparsity_label(s) for s in sorted(values)]


def imp_parent(config: Mapping, sparsity: str) -> str | None:
    """The IMP level a level starts from: IMP's next lower configured sparsity, None for dense."""
    lower = [label for label in sparsity_labels(config, "imp") if float(label) < float(sparsity) - 1e-9]
    return lower[-1] if lower else None


def with_defaults(config: dict) -> dict:
    """The config with what every study has: the structure task (layer collapse is always
    checked), on the first dataset any task evaluates, and the default headline metrics."""
    tasks = config["tasks"]
    if "structure" not in tasks:
        first = next(iter(cfg["datasets"] for cfg in tasks.values() if cfg.get("datasets")), [])
        tasks["structure"] = {"datasets": list(first[:1]), "n_images": 32}
    stats = config.setdefault("stats", {})
    stats["headline"] = {**catalog.default_headline(), **(stats.get("headline") or {})}
    return config


def data_params(config: Mapping) -> dict[str, Any]:
    """What a job needs to find and size data: the only part of the config it sees about data."""
    return {"benchmark": config["benchmark"], "data_dir": config["data_dir"],
            "datasets": dict(config.get("datasets") or {}), "image_size": image_size(config),
            "resize_size": config.get("resize_size")}


def changed_data(config: Mapping) -> list[str]:
    """Files of the generated benchmark newer than its MANIFEST.json (written last): replaced or
    added after generation. Snakemake tracks only the manifest; as inputs of the jobs that read
    the benchmark these make its mtime check rerun them. Hidden files are ignored; real datasets
    are not walked (millions of files): README, Troubleshooting."""
    root = Path(str(config["data_dir"])) / "synthetic"
    if config["benchmark"] != "synthetic" or not (root / "MANIFEST.json").is_file():
        return []
    generated = (root / "MANIFEST.json").stat().st_mtime_ns
    changed = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        for name in files:
            path = os.path.join(folder, name)
            if not name.startswith(".") and os.stat(path).st_mtime_ns > generated:
                changed.append(path)
    return sorted(changed)


def human_experiments(config: Mapping) -> dict[str, str]:
    """Alignment dataset -> the human experiment whose trials it joins."""
    from .data.registry import human_experiment

    datasets = config["tasks"].get("alignment", {}).get("datasets", [])
    return {d: human_experiment(d) for d in datasets if human_experiment(d)}


def figures(config: Mapping) -> dict[str, dict[str, Any]]:
    """Figure name -> what the plots job draws there (config with schema defaults): the overview
    of headline and of exploratory gains, and the headline curves of every evaluated task, one
    figure per attribution method for interpretability (six methods' lines would not fit one)."""
    out: dict[str, dict[str, Any]] = {"overview": {"kind": "overview", "role": "headline"},
                                      "overview-exploratory": {"kind": "overview", "role": "exploratory"}}
    for task, settings in config["tasks"].items():
        if task == "structure":  # layer collapse: marked in the overview, no metric of its own
            continue
        if task == "interpretability":
            for variant in settings["methods"]:
                out[f"curves-{task}-{variant}"] = {"kind": "curves", "task": task, "variant": variant}
        else:
            out[f"curves-{task}"] = {"kind": "curves", "task": task, "variant": None}
    return out


def recovery_recipe(config: Mapping) -> str | None:
    """The control recipe of fine-tune / BatchNorm recovery, None when recovery changes nothing."""
    recovery = config["pruning"].get("recovery", {})
    mode = recovery.get("mode", "finetune")
    if mode == "finetune" and recovery.get("epochs", 0) > 0:
        return "finetune"
    return "bn" if mode == "bn" else None


def controls(config: Mapping) -> dict[str, str]:
    """Pruning method -> the method label of its matched control (docs/methods.md)."""
    recipe = recovery_recipe(config)
    out = {}
    for method in config["pruning"]["methods"]:
        if method == "snip":
            out[method] = catalog.CONTROL_PREFIX + "snip"
        else:
            out[method] = catalog.DENSE if recipe is None else catalog.CONTROL_PREFIX + recipe
    return out


def control_recipes(config: Mapping) -> list[str]:
    """The distinct control recipes the grid needs, each built once per architecture and seed."""
    return sorted({c[len(catalog.CONTROL_PREFIX):] for c in controls(config).values() if catalog.is_control(c)})


def task_settings(config: Mapping, task: str) -> dict[str, Any]:
    """What an evaluation job of `task` reads: its config block without scheduler requests."""
    return {k: v for k, v in config["tasks"][task].items() if k != "resources"}
