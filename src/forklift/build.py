"""The whole build on one screen: parse -> plan -> execute -> export (being written)."""
