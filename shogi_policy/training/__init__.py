"""training: the trainer, callable from Python without absl: `train.train(config.TrainConfig(...), model_dir)`.

config (frozen dataclasses of the run that check their own ranges; no TensorFlow or Keras, so the launcher reads
its defaults), recipes (named flag files and their
configs), tasks (shogi shards, MNIST) behind one interface, callbacks (the Keras callbacks of a run), resume
(train_flags.json and the changed-settings rules), run_lock and train (orchestration). Strategies and hosts are
shogi_policy.runtime's. Loads no serving code and defines no flags (shogi_policy.cli does).

May import: core, data, model, runtime
"""
