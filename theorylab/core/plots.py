"""What every study's figures share."""
from __future__ import annotations

import matplotlib.pyplot as plt


def save_figure(fig, path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
