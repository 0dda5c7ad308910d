"""radius-bridge: a RADIUS server that puts FortiIdentity Cloud MFA in front of any VPN.

The package is a pure core (``model``, ``errors``, ``policy``, ``radius``, ``challenge``) with a
thin shell around it (``fic`` for HTTP, ``server`` for UDP, ``cli`` to wire them together).
"""

__version__ = "0.1.0"
