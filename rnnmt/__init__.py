"""rnnmt: English to Hindi translation with the recurrent encoder-decoder of the seed note."""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"

__all__ = ["Translator", "Translation", "__version__"]


def __getattr__(name: str) -> Any:
    """Import Translator (and with it torch) only when asked for, so ``rnnmt.reference`` runs without torch."""
    if name in ("Translator", "Translation"):
        from rnnmt import translator

        return getattr(translator, name)
    raise AttributeError(f"module 'rnnmt' has no attribute {name!r}")
