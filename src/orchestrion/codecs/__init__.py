"""Codecs: music <-> tokens or arrays, both directions, pure functions."""
