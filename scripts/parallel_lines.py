"""Saves the parallel-lines figure (WGAN paper, Example 1): W_1, JS, KL and TV
between P_0 and P_theta against theta.

    python scripts/parallel_lines.py [out.png]    (needs matplotlib)
"""

from __future__ import annotations

import sys

from fastgan.divergences import plot_parallel_lines

if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "parallel-lines.png"
    print(plot_parallel_lines(out))
