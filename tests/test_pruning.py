"""Global pruning: exact counts, the right kept sets, exclusions, IMP chains, masks held in training."""

import numpy as np
import pytest
import timm
import torch
from torch import nn

from sweetspot import pruning

torch.set_num_threads(1)


def resnet():
    torch.manual_seed(0)
    return timm.create_model("test_resnet", num_classes=10)


def vit():
    torch.manual_seed(0)
    return timm.create_model("test_vit", num_classes=10, img_size=48, patch_size=6)


def all_weights(model, exclude=()):
    return {name: m.weight.detach().clone() for name, m in pruning.prunable_modules(model, exclude)}


def total_count(model, exclude=()):
    return sum(m.weight.numel() for _, m in pruning.prunable_modules(model, exclude))


def test_prunable_modules_are_conv_and_linear_weights_of_a_vit():
    names = [name for name, _ in pruning.prunable_modules(vit())]
    assert "patch_embed.proj" in names and "head" in names
    assert {"blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.fc1", "blocks.0.mlp.fc2"} <= set(names)
    assert not any("norm" in n for n in names)


def test_excluding_everything_is_an_error_naming_the_patterns():
    with pytest.raises(ValueError, match=r"\['\*'\]"):
        pruning.prunable_modules(resnet(), exclude=["*"])


def test_multihead_attention_is_refused():
    model = nn.Sequential(nn.Linear(4, 4), nn.MultiheadAttention(4, 2))
    with pytest.raises(ValueError, match="MultiheadAttention"):
        pruning.prunable_modules(model)


@pytest.mark.parametrize("sparsity", [0.3, 0.9])
def test_magnitude_keeps_the_same_set_as_a_numpy_global_threshold(sparsity):
    model = resnet()
    before = all_weights(model)
    flat = np.concatenate([w.abs().numpy().ravel() for w in before.values()])
    k = int(round(sparsity * flat.size))
    expected_kept = np.ones(flat.size, dtype=bool)
    expected_kept[np.argsort(flat, kind="stable")[:k]] = False

    pruning.magnitude(model, sparsity)
    kept = np.concatenate([m.numpy().ravel() for m in pruning.masks_of(model).values()])
    assert np.array_equal(kept, expected_kept)
    assert int((~kept).sum()) == k
    assert pruning.is_pruned(model)


@pytest.mark.parametrize("factory", [resnet, vit])
def test_exact_count_for_odd_sparsities(factory):
    model = factory()
    total = total_count(model)
    pruning.magnitude(model, 0.337)
    zeros = sum(int((~m).sum()) for m in pruning.masks_of(model).values())
    assert zeros == round(0.337 * total)
    assert pruning.measured_sparsity(model) == pytest.approx(round(0.337 * total) / total, abs=0)


def test_exclusions_are_left_dense_and_the_rest_meets_the_target():
    model = resnet()
    exclude = ["conv1.*", "fc"]
    excluded_before = {n: m.weight.detach().clone() for n, m in model.named_modules()
                       if n in ("conv1.0", "conv1.3", "conv1.6", "fc")}
    pruning.magnitude(model, 0.7, exclude=exclude)
    for name, weight in excluded_before.items():
        module = model.get_submodule(name)
        assert not hasattr(module, "weight_mask")
        assert torch.equal(module.weight, weight)
    assert pruning.measured_sparsity(model, exclude) == pytest.approx(0.7, abs=1e-4)
    assert pruning.measured_sparsity(model) < 0.7


def test_biases_norms_and_embeddings_are_untouched():
    model = vit()
    others = {k: v.clone() for k, v in model.state_dict().items() if not k.endswith(".weight")
              or "norm" in k}
    assert "pos_embed" in others and "cls_token" in others and "blocks.0.norm1.weight" in others
    pruning.magnitude(model, 0.95)
    pruning.finalize(model)
    after = model.state_dict()
    for key, value in others.items():
        assert torch.equal(after[key], value), key


@pytest.mark.parametrize("finalize_between", [True, False])
def test_imp_chain_keeps_earlier_zeros_and_reaches_the_total_target(finalize_between):
    model = resnet()
    pruning.prune(model, "imp", 0.5)
    if finalize_between:  # as when the level is loaded from its checkpoint
        pruning.finalize(model)
    first_zeros = {n: ~m for n, m in pruning.masks_of(model).items()}
    pruning.prune(model, "imp", 0.8)
    assert pruning.measured_sparsity(model) == pytest.approx(0.8, abs=1e-5)
    for name, kept in pruning.masks_of(model).items():
        assert not (kept & first_zeros[name]).any(), name


def test_masks_hold_through_optimiser_steps_and_finalize_gives_plain_weights():
    model = vit()
    pruning.magnitude(model, 0.6)
    zeros = {n: ~m for n, m in pruning.masks_of(model).items()}
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    x, y = torch.randn(4, 3, 48, 48), torch.tensor([0, 1, 2, 3])
    for _ in range(3):
        optimiser.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    for name, kept in pruning.masks_of(model).items():
        assert not (kept & zeros[name]).any(), name
    pruning.finalize(model)
    assert not pruning.is_pruned(model)
    state = model.state_dict()
    assert not any(k.endswith(("_orig", "_mask")) for k in state)
    for name, zero in zeros.items():
        assert isinstance(model.get_submodule(name).weight, nn.Parameter)
        assert (state[f"{name}.weight"][zero] == 0).all()
    assert pruning.measured_sparsity(model) == pytest.approx(0.6, abs=1e-5)


def test_random_is_reproducible_uniform_and_leaves_the_global_rng_alone():
    a, b, c = resnet(), resnet(), resnet()
    rng_state = torch.get_rng_state()
    pruning.prune(a, "random", 0.7, seed=3)
    pruning.prune(b, "random", 0.7, seed=3)
    pruning.prune(c, "random", 0.7, seed=4)
    assert torch.equal(torch.get_rng_state(), rng_state)
    masks_a, masks_b, masks_c = pruning.masks_of(a), pruning.masks_of(b), pruning.masks_of(c)
    assert all(torch.equal(masks_a[n], masks_b[n]) for n in masks_a)
    assert not all(torch.equal(masks_a[n], masks_c[n]) for n in masks_a)
    assert pruning.measured_sparsity(a) == pytest.approx(0.7, abs=1e-5)
    large = {n: m for n, m in masks_a.items() if m.numel() >= 9000}
    assert len(large) >= 4
    for name, kept in large.items():
        assert 1 - kept.float().mean().item() == pytest.approx(0.7, abs=0.03), name


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def test_snip_keeps_the_top_connections_by_w_times_grad():
    torch.manual_seed(1)
    model = Tiny()
    batches = [(torch.randn(5, 3, 8, 8), torch.randint(0, 3, (5,))) for _ in range(2)]
    reference = Tiny()
    reference.load_state_dict(model.state_dict())
    reference.train()
    for x, y in batches:  # gradients accumulate over the batches
        nn.functional.cross_entropy(reference(x), y).backward()
    scores = torch.cat([(m.weight * m.weight.grad).abs().flatten() for m in (reference.conv, reference.fc)])
    k = round(0.75 * scores.numel())
    expected_kept = torch.ones(scores.numel(), dtype=torch.bool)
    expected_kept[torch.argsort(scores)[:k]] = False

    buffers = {k: v.clone() for k, v in model.named_buffers()}
    model.eval()
    pruning.prune(model, "snip", 0.75, batches=batches, loss_fn=nn.functional.cross_entropy)
    masks = pruning.masks_of(model)
    kept = torch.cat([masks["conv"].flatten(), masks["fc"].flatten()])
    assert torch.equal(kept, expected_kept)
    assert not model.training
    assert all(torch.equal(v, buffers[k]) for k, v in model.named_buffers() if not k.endswith("_mask"))
    assert model.conv.weight_orig.grad is None


def test_dispatch_errors_are_clear():
    with pytest.raises(ValueError, match="unknown pruning method 'l2'"):
        pruning.prune(resnet(), "l2", 0.5)
    with pytest.raises(ValueError, match="needs `batches`"):
        pruning.prune(resnet(), "snip", 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        pruning.prune(resnet(), "magnitude", 1.0)


# --- SNIP as published: scores at an initialisation where every weight has a gradient ------------


def _snip_scores(name: str, size: int, reset: bool) -> dict[str, torch.Tensor]:
    from sweetspot import models

    model = models.initial_model({"timm": name, "kwargs": {}}, 10, seed=0)
    if reset:
        models.reset_zero_init_norms(model)
    torch.manual_seed(1)
    batch = (torch.randn(8, 3, size, size), torch.randint(0, 10, (8,)))
    return pruning.snip_scores(model, [batch], nn.functional.cross_entropy)


@pytest.mark.parametrize("name, size", [("test_resnet", 48), ("resnet18", 64), ("resnet50", 64)])
def test_snip_scores_are_rarely_exactly_zero_once_zero_initialised_norms_are_reset(name, size):
    assert pruning.zero_score_fraction(_snip_scores(name, size, reset=False)) > 0.8  # timm's zero_init_last
    assert pruning.zero_score_fraction(_snip_scores(name, size, reset=True)) < pruning.MAX_ZERO_SCORE_FRACTION


def test_snip_refuses_a_model_whose_gradients_are_zero_by_construction():
    model = resnet()  # timm's ResNet as created: every residual branch closed by a zero norm scale
    batch = (torch.randn(8, 3, 48, 48), torch.randint(0, 10, (8,)))
    with pytest.raises(pruning.SnipScoreError, match=r"SNIP on test_resnet: \d+\.\d% of the connection scores are "
                                                     r"exactly zero .*zero_init_last"):
        pruning.prune(model, "snip", 0.5, batches=[batch], loss_fn=nn.functional.cross_entropy, name="test_resnet")
    assert not pruning.is_pruned(model)  # nothing was masked


@pytest.mark.parametrize("name, size", [("test_resnet", 48), ("resnet18", 64)])
def test_snip_at_half_sparsity_collapses_no_layer(name, size):
    from sweetspot import models

    model = models.initial_model({"timm": name, "kwargs": {}}, 10, seed=0)
    models.reset_zero_init_norms(model)
    torch.manual_seed(1)
    batch = (torch.randn(16, 3, size, size), torch.randint(0, 10, (16,)))
    pruning.prune(model, "snip", 0.5, batches=[batch], loss_fn=nn.functional.cross_entropy, seed=0)
    layers = pruning.layer_sparsity(model)
    assert pruning.collapsed_units(layers) == [] and max(layers.values()) < 0.99
    assert pruning.measured_sparsity(model) == pytest.approx(0.5, abs=1e-6)


def test_the_mask_of_lowest_scores_equals_torchs_global_pruning_without_ties_and_breaks_ties_by_seed():
    from torch.nn.utils import prune as torch_prune

    model, reference = resnet(), resnet()
    modules = pruning.prunable_modules(model)
    scores = {name: torch.rand(m.weight.shape, generator=torch.Generator().manual_seed(i))
              for i, (name, m) in enumerate(modules)}
    amount = total_count(model) // 3
    pruning.install_mask_of_lowest(modules, scores, amount, seed=0)
    reference_modules = dict(pruning.prunable_modules(reference))
    torch_prune.global_unstructured([(reference_modules[n], "weight") for n, _ in modules],
                                    pruning_method=torch_prune.L1Unstructured, amount=amount,
                                    importance_scores={(reference_modules[n], "weight"): scores[n] for n, _ in modules})
    for name, module in modules:
        assert torch.equal(module.weight_mask, reference_modules[name].weight_mask)

    tied = {name: torch.zeros(m.weight.shape) for name, m in modules}  # every score tied at the threshold
    kept = []
    for seed in (0, 0, 1):
        model = resnet()
        modules = pruning.prunable_modules(model)
        pruning.install_mask_of_lowest(modules, tied, amount, seed=seed)
        kept.append(torch.cat([m.weight_mask.flatten() for _, m in modules]))
        assert int((kept[-1] == 0).sum()) == amount
    assert torch.equal(kept[0], kept[1]) and not torch.equal(kept[0], kept[2])
    # a seeded random choice among ties prunes every layer, not the first layers in memory order
    pruned_share = [float((m.weight_mask == 0).float().mean()) for _, m in modules]
    assert max(pruned_share) < 0.6 and min(pruned_share) > 0.1


def test_layer_sparsity_reports_the_query_key_and_value_of_a_fused_projection_apart():
    model = vit()
    qkv = model.blocks[0].attn.qkv
    with torch.no_grad():
        qkv.weight[qkv.out_features // 3: 2 * qkv.out_features // 3] = 0  # every key weight
    layers = pruning.layer_sparsity(model)
    assert layers["blocks.0.attn.qkv[k]"] == 1.0 and layers["blocks.0.attn.qkv[q]"] == 0.0
    assert "blocks.0.attn.qkv" not in layers and "blocks.0.mlp.fc1" in layers
    assert pruning.collapsed_units(layers) == ["blocks.0.attn.qkv[k]"]
