"""mangacolor: colorize greyscale manga pages and line art with neural networks."""

__version__ = "0.1.0"
