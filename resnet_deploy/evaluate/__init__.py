"""Evaluating artifacts side by side: accuracy against the original (``validate``) with paired
statistics (``paired_stats``), and latency and throughput (``bench``)."""
