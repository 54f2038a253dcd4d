"""What every task of an evaluation job sees: the model, where it runs, and the data it can ask for."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import torch

from ..data import registry
from ..data.samples import Sample
from ..models import Preprocess, create, preprocess_for
from ..speedups.faster_copy import faster_copy


@dataclass
class EvalContext:
    """One checkpoint under evaluation.

    `data` is the study's data section (benchmark, data_dir, datasets, image_size): the only
    place a task learns where files are. `fast_model` computes the model's logits with less work,
    built once per context; the structure task hooks the model's own layers instead.
    """

    model: torch.nn.Module
    arch_cfg: Mapping[str, Any]
    method: str
    seed: int
    data: Mapping[str, Any]
    device: torch.device
    amp: bool = True
    _cache: dict = field(default_factory=dict, repr=False)  # samples, shared with `with_model`'s context
    _fast_model: torch.nn.Module | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def size(self) -> int:
        return int(self.data["image_size"])

    @property
    def preprocess(self) -> Preprocess:
        return preprocess_for(self.model, self.arch_cfg, self.size)

    @property
    def fast_model(self) -> torch.nn.Module:
        """The model's copy that computes the same logits with less work (or the model itself where
        no rewrite applies; sweetspot.speedups.faster_copy), built on first use."""
        if self._fast_model is None:
            self._fast_model = self.faster(self.model)
        return self._fast_model

    def faster(self, model: torch.nn.Module) -> torch.nn.Module:
        """`model`'s faster copy, its logits checked on `example()`."""
        return faster_copy(model, self.example())

    def example(self) -> torch.Tensor:
        """Two seeded random inputs (2, 3, size, size) on the device: the same in every job."""
        return torch.randn(2, 3, self.size, self.size, generator=torch.Generator().manual_seed(0)).to(self.device)

    def with_model(self, model: torch.nn.Module) -> "EvalContext":
        """The same evaluation with another model (the other cross-fitting fold), whose own
        faster copy is built on first use."""
        return replace(self, model=model)

    def samples(self, dataset: str, *, native: bool = False, max_side: int | None = None) -> list[Sample]:
        """The dataset's samples at the study's image size, or with `native` each image at its own
        size (aspect kept, the longer side capped at `max_side` when given)."""
        if max_side is not None and not native:
            raise ValueError(f"max_side={max_side} caps native sizes; it needs native_resolution: true")
        source = registry.info(dataset).source or dataset
        key = (source, native, max_side)
        if key not in self._cache:
            self._cache[key] = registry.load_eval(source, self.data, None if native else self.size, max_side=max_side)
        return self._cache[key]

    def task_samples(self, dataset: str, settings: Mapping[str, Any]) -> list[Sample]:
        """The samples as a task's settings ask for them (native_resolution, max_side)."""
        return self.samples(dataset, native=bool(settings.get("native_resolution", False)),
                            max_side=settings.get("max_side"))

    def class_groups(self, dataset: str) -> list[list[int]] | None:
        """ImageNet classifiers decide among the 16 model-vs-human categories by mean probability."""
        if not registry.sixteen_class(dataset) or self.model.num_classes == 16:
            return None
        return registry.category_indices(self.data)

    def trials(self, dataset: str):
        """The human trials on `dataset`'s stimuli, or None where there are none."""
        return registry.load_human_trials(self.data, dataset)

    def untrained_model(self) -> torch.nn.Module:
        """The architecture at the seed's initialisation (a baseline for what training adds)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return create(self.arch_cfg, self.model.num_classes).eval().to(self.device)
