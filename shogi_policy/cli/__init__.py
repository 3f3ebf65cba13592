"""cli: the console commands, the only home of absl flags and app.run. launch sets up the process (TPU environment,
Keras backend) before TensorFlow, JAX or Keras load; each command's module (train, convert, export, sample,
evaluate, usi) makes its flags from its library configuration's dataclass fields, and command, the one shell, parses
them, builds the configuration, calls the library and turns a refused input into one line and exit status 1.

May import: core, data, model, runtime, training, serving, arena
"""
