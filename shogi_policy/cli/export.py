"""shogi-policy-export: its flags (serving.export.ExportConfig's fields), then serving.export.export.

shogi-policy-export --model_dir=runs/cpu --export_dir=export/cpu
shogi-policy-export --keras_model=runs/cpu/model.keras --export_dir=export/cpu
shogi-policy-export --model_dir=runs/cpu --export_dir=export/cpu --format=onnx
"""

import json

from absl import logging

from shogi_policy.cli import command
from shogi_policy.serving import export


def export_and_report(config):
    path, metadata = export.export(config)
    source = config.model_dir or config.keras_model
    logging.info("Exported %s to %s: %s", source, path, json.dumps(metadata))
    print(f"exported {source} -> {path}")


def run():
    command.run_config_command("shogi-policy-export", export.ExportConfig, export_and_report)


if __name__ == "__main__":
    run()
