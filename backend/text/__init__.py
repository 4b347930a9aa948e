"""Text side of text-to-pose: the automatic pose captioner (posecodes -> captions).

NumPy only (usable inside Blender); see :mod:`.captioner`.
"""
from .captioner import (VOCABULARY, CaptionError, caption, captioner_phrases,  # noqa: F401
                        posecodes)

__all__ = ["CaptionError", "posecodes", "caption", "captioner_phrases", "VOCABULARY"]
