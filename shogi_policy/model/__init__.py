"""model: what is trained and what a trained run leaves behind.

The in-graph dlshogi feature layer (keras.ops, both backends), the residual network, its shape and presets as plain
data without Keras (network_config), the policy loss and metrics, checkpoints (TensorFlow's or Orbax), and the model
directory a trainer writes (its file names and `restore_model`).

May import: core
"""
