"""shogi-policy-convert: its flags (data.convert.ConvertConfig's fields), then data.convert.convert_with_config.

  shogi-policy-convert --inputs='games/*.csa,more.usi.gz' --output_dir=data/floodgate \
      --min_rating=3500 --min_plies=50 --endings=resign,repetition,declare --test_fraction=0.1
"""

from shogi_policy.cli import command
from shogi_policy.data import convert


def run():
    command.run_config_command("shogi-policy-convert", convert.ConvertConfig, convert.convert_with_config)


if __name__ == "__main__":
    run()
