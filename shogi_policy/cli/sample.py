"""shogi-policy-sample: its flags (serving.sample.SampleConfig's fields), then serving.sample.sample, printed.

shogi-policy-sample --model=export/cpu --position="startpos moves 7g7f 3c3d" --temperature=1.0 --seed=7
"""

from shogi_policy.cli import command
from shogi_policy.serving import sample


def sample_and_print(config):
    position, sampled, top_moves = sample.sample(config)
    print(sample.format_report(position, sampled, top_moves, config.temperature, config.seed))


def run():
    command.run_config_command("shogi-policy-sample", sample.SampleConfig, sample_and_print)


if __name__ == "__main__":
    run()
