"""Questions, answers and passages: the loaders (FlashRAG schema), the committed data folder's builder, the wiki-18-shaped
CPU corpus, the data card and the paper-scale fetcher."""
