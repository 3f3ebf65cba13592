"""shogi_policy: game records -> compact shards -> in-graph dlshogi features -> residual policy net on TPU."""

__version__ = "0.1.0"
