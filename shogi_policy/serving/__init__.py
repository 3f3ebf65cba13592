"""serving: trained networks put to use, on the host CPU with TensorFlow alone.

Policy ops (tempered softmax over the legal moves, greedy and seeded sampling), SavedModel and ONNX export,
`PolicyModel` for Python callers, sampling, move-match evaluation and the policy-only USI engine. Loads neither
the trainer nor tensorflow-datasets (tests/test_layers.py checks it in a fresh interpreter).

May import: core, data, model
"""
