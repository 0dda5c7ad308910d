"""RADIUS dictionaries shipped with radius-bridge (installed as ``radius_bridge.dictionaries``)."""
