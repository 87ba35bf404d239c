"""Models: loading (hub ids, local folders, GGUF, pruned students, tiny random Qwen2), which layers a pruned student
keeps, the forward passes training needs (action log-probs, the critic, LoRA) and the matmul precision."""
