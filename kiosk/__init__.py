"""Door-camera attendance kiosk.

camera -> detector -> tracker -> embedder -> matcher -> attendance -> outbox / feedback / page
"""

__version__ = "0.1.0"
