"""python -m shogi_policy.cli <command> [flags]."""

from shogi_policy.cli.launch import main

main()
