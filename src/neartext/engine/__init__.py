"""What a collection does, as functions over its parts (store, manifest, encoder;
:class:`neartext.engine.parts.Parts`): ingest, search, analysis, clustering, feedback, Ray
compute. :class:`neartext.collection.Collection` calls these; they never import it.
"""
