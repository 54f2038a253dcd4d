"""Analysis: from the merged measurements to the answer (sweet-spot table, summary, figures).

Nothing here imports torch: these jobs start in about a second.
"""
