"""From camera footage to gallery items, method §9.3: :mod:`.video` (frames and their times),
:mod:`.detect` (person boxes), :mod:`.track` (boxes linked over time), :mod:`.select` (the crops
kept per track) and :mod:`.ingest` (one source into a gallery store).

Imports point down: this package uses the model (:mod:`cerberus.inference.embed`), the store
(:mod:`cerberus.store`) and :mod:`cerberus.inference.scoring`; nothing below imports it.
"""
