"""The Search-R1 environment: retrieval (dense and BM25, and its server), the prompt, the multi-turn rollout and the
exact-match reward."""
