"""The papers' reference setting: models, data, training and the replication recipe (``attnfaith replicate``).

| module | what it holds |
|---|---|
| :mod:`~attnfaith.reference.models` | Jain & Wallace's BiLSTM and Average classifiers with additive attention |
| :mod:`~attnfaith.reference.data` | CSV / TSV / JSONL readers (:class:`TextDataset`), the SST filter, the data folder |
| :mod:`~attnfaith.reference.vocabulary` | the reference models' word-level vocabulary |
| :mod:`~attnfaith.reference.training` | training loops (JW's for the reference models; HuggingFace fine-tuning) |
| :mod:`~attnfaith.reference.vectors` | initial word vectors (a .vec file or a transformer's input embedding) |
| :mod:`~attnfaith.reference.config` | :class:`ReplicationConfig`, the options of ``attnfaith replicate`` |
| :mod:`~attnfaith.reference.splits` | train / dev / test of a table |
| :mod:`~attnfaith.reference.trained_model` | the recipe's model trained from a configuration |
| :mod:`~attnfaith.reference.evaluation` | the three papers' tests on the test split |
| :mod:`~attnfaith.reference.wiegreffe_pinter` | WP's seed variance and uniform-training baseline |
| :mod:`~attnfaith.reference.report`, :mod:`~attnfaith.reference.figures` | the recipe's ``report.md`` and figures |
| :mod:`~attnfaith.reference.replication` | the recipe end to end, and its command line |

Nothing here is imported by the evaluators or the attention layer: this floor sits on top of them.
"""
