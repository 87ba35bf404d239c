"""Evaluation: greedy EM on the benchmarks, the protocol probe (probability of each kind of teacher token) and the
paired bootstrap."""
