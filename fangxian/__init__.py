"""fangxian (防线): the streaming core of community epidemic-prevention informatization."""

__version__ = "0.1.0"
