"""Item text: cleaning (``clean``), stopword lists (``stopwords``), Word2Vec (``word2vec``) and item vectors
(``vectors``). Nothing is re-exported here, so that importing the cleaning code does not pull in gensim."""
