"""shogi-policy-usi: its flags (serving.usi.UsiConfig's fields), then serving.usi.serve on stdin and stdout.

shogi-policy-usi --model=export/cpu      # then speak USI on stdin/stdout (or set ModelPath)
"""

from shogi_policy.cli import command
from shogi_policy.serving import usi


def run():
    command.run_config_command("shogi-policy-usi", usi.UsiConfig, usi.serve)


if __name__ == "__main__":
    run()
