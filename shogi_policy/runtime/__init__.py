"""runtime: the process's runtime: where a run executes and whether it can.

environment (TPU chips found on the PCI bus, the variables set before TensorFlow or JAX loads, JAX started first;
imports neither framework), hosts (which host of a multi-host run this is), strategy (TPUStrategy, MirroredStrategy,
the default strategy; DataParallel under JAX; what XLA compiles), preflight (the runtime report, the devices the
backend starts, what stops a run) and checks (the preflight's training steps, through the trainer it is given).
The launcher imports environment alone, before it chooses the Keras backend.

May import: core, data, model
"""
