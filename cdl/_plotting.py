"""matplotlib, the optional dependency behind cdl's ``plot`` methods."""


def pyplot(who):
    """``matplotlib.pyplot`` on the file-writing Agg backend (the plots are
    saved, never shown), or an ImportError naming ``who`` and the install."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(f"{who} needs matplotlib, an optional dependency: "
                          "pip install matplotlib") from None
    return plt
