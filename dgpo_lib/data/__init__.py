"""Questions, answers and passages: the loaders (FlashRAG schema), the committed data folder's builder, the wiki-18-shaped
CPU corpus, the data card, the paper-scale fetcher and the passages a pruned student is healed and calibrated on."""
