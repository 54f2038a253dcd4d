"""The study configuration: checks before any job starts, and the grid it defines.

`check` reports every problem with the field's path and a fix (closest known key for a
misspelling, closest timm names for an unknown architecture), so a typo costs seconds,
not a failed cluster job hours later.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Iterator, Mapping

import jsonschema
import yaml

from . import catalog
from .catalog import TASKS


class ConfigError(ValueError):
    """A config that cannot run; the message names the field and the fix."""


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from None
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
        problems.append(f"{_field(err.absolute_path)}: {err.message}")
    if not problems:
        problems += _semantic_problems(config)
    if problems:
        raise ConfigError(f"{source} is not valid:\n  - " + "\n  - ".join(problems))


def _semantic_problems(config: dict) -> list[str]:
    from .timm_names import check as check_timm_name
    from .weights import LITE_SOURCE, lite_package

    problems = []
    labels = [sparsity_label(s) for s in config["pruning"]["sparsities"]]
    for label in sorted(set(labels)):
        if labels.count(label) > 1:
            problems.append(f"pruning.sparsities: {label} is listed twice (after rounding to 4 decimals); remove one")
    if "0" in labels:
        problems.append("pruning.sparsities: 0 is the dense model, which is always included; remove it")
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
    from .data.registry import names

    known = names()
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
    for task, metrics in (config.get("stats") or {}).get("headline", {}).items():
        allowed = catalog.testable(task)
        for metric in metrics:
            if metric not in allowed:
                problems.append(f"stats.headline.{task}: {metric!r} cannot be a headline metric of {task}; "
                                f"choose from {', '.join(allowed) or 'none'}")
    if not config["pruning"]["methods"]:
        problems.append("pruning.methods: the grid is empty; list at least one method")
    return problems


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
                for s in sorted(config["pruning"]["sparsities"]):
                    out.append((arch, method, sparsity_label(s), seed))
    return out


def imp_parent(config: Mapping, sparsity: str) -> str | None:
    """The IMP level a level starts from: the next lower configured sparsity, None for dense."""
    lower = [s for s in sorted(config["pruning"]["sparsities"]) if s < float(sparsity) - 1e-9]
    return sparsity_label(lower[-1]) if lower else None


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


def human_experiments(config: Mapping) -> dict[str, str]:
    """Alignment dataset -> the human experiment whose trials it joins."""
    from .data.registry import human_experiment

    datasets = config["tasks"].get("alignment", {}).get("datasets", [])
    return {d: human_experiment(d) for d in datasets if human_experiment(d)}


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
