"""See scripts/__init__.py."""
