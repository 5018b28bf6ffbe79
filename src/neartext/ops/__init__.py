"""Operations on whole collections, above :class:`neartext.collection.Collection`: versions
(promote, rollback), reindex, migrate, tune, improve, fine-tune, evaluation of a collection,
maps, vector export.
"""
