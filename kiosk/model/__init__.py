"""The recognition engine: BlazeFace detection, alignment, MobileFaceNet embedding, quality gate.

Model files come from registry packages (:mod:`kiosk.model.assets`, ``kiosk models``). Most callers
want :class:`kiosk.model.engine.Engine`; the parts are usable on their own for tests and benchmarks.
"""
