"""higround: temporal grounding of paragraphs and sentences in untrimmed video."""

__version__ = "0.1.0"
