"""Figures from a run's rows (``bench plot KIND RUN --out DIR``): PNG and PDF, matplotlib Agg.

Nothing here re-runs a method: every figure reads the rows (metrics, per-image scores,
``diag_*`` columns) and the anomaly-map side files that ``bench grid`` stored.

    common       loading a run, one config per method, conditions (test domains apart), the
                 style, saving PNG + PDF, one-line errors
    severity     metric vs severity per method and test domain, one panel per corruption (GNL Fig. 4)
    maps         clean / corrupted / ground truth / each method's map (TTAD Fig. 4)
    histograms   image scores of normal vs anomalous test images per method and cell (GNL Fig. 2)
    assignments  OT assignments to anomalous patches per reading and augmentation (TTAD Fig. 5)

matplotlib is imported by ``common.pyplot`` only, when a figure is drawn, so that the rest of
the harness neither needs nor loads it.
"""
