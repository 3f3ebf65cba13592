"""shogi-policy-evaluate: its flags (serving.evaluate.EvaluateConfig's fields), then
serving.evaluate.evaluate_export, its summary printed.

  shogi-policy-evaluate --model=export/cpu --tsv=positions.tsv --split=val
  shogi-policy-evaluate --model=export/cpu --data_dir=shards/ --split=test --json_out=eval.json
"""

from shogi_policy.cli import command
from shogi_policy.serving import evaluate


def evaluate_and_print(config):
    print(evaluate.summary(evaluate.evaluate_export(config)))


def run():
    command.run_config_command("shogi-policy-evaluate", evaluate.EvaluateConfig, evaluate_and_print)


if __name__ == "__main__":
    run()
