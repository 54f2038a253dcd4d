"""Speed-ups that compute the same function with less work; each is checked against the model.

`faster_copy(model, example)` (faster_copy.py) applies every rewrite that fits a model:
BatchNorm folding (bn_folding.py), ViT trimming (vit_trimming.py) and channels-last weights.
An evaluation job builds the copy once (sweetspot.tasks.context.EvalContext.fast_model) and
passes it to the passes that read only what the copy keeps: logits for accuracy, alignment and
deletion/insertion, the attribution methods' gradients and hooked layers, a CNN's LOST features.
"""
