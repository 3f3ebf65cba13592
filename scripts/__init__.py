"""Scripts around the package, grouped by purpose; importable from the checkout's root (`python -m scripts.x.y`).

bench/         benchmarks: conversion, tf.data, feature layer, training, backends, sampling (run_all: one table)
data_import/   how data/ was made: floodgate games imported, ShogiArena games exported for the converter
experiments/   one training experiment end to end, and the learning-curve plot
strength/      ShogiArena gauntlet (the strength table) and SPRT of two exports
notebooks/     the Colab TPU notebook
run_default_job.sh   the main job (the README's first command)
"""
