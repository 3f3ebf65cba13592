"""arena: strength measured with ShogiArena, the field's tournament manager.

The glue that writes ShogiArena's gauntlet and SPRT configurations for this project's USI engine and reads a
run's finished games back (replayed with cshogi). The engine itself is a separate process
(`shogi-policy-usi`), so nothing here loads a model.

May import: core
"""
