"""Reports: self-contained HTML + PNG figures of one or more entangle runs.

Plotting (matplotlib, seaborn) and t-SNE (openTSNE, scikit-learn) load inside the functions
that need them, so importing this package stays light.
"""

from entangle.report.build import build_report
from entangle.report.tsne import tsne_embed

__all__ = ["build_report", "tsne_embed"]
