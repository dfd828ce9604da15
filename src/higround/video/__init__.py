"""Running on your own videos: decoding (PyAV), visual backbones and feature extraction.

Modules: :mod:`~higround.video.settings` (clip sampling, store settings; no PyAV needed),
:mod:`~higround.video.decode` (streaming decoding), :mod:`~higround.video.backbones` (the backbone
interface and registry), :mod:`~higround.video.extract` (the feature store writer) and
:mod:`~higround.video.grounding` (checkpoint/feature compatibility, timeline pictures).
See docs/own_video.md.
"""
