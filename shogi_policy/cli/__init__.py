"""cli: the console commands. Each sets up the process (TPU environment, Keras backend) before TensorFlow, JAX or
Keras load, maps its absl flags onto the library's configuration and calls the library.

May import: core, data, model, runtime, training, serving, arena
"""
