"""A run's evidence as a bundle: run folder -> bundle (a few megabytes meant for git) -> report, re-judging, resume.

``store`` is the format (manifest and evidence files, versioned, written atomically); ``evidence`` reads a run
folder's artifacts into evidence rows; ``write`` records them configuration by configuration as a run's stages
finish; ``read`` gives the report what a bundle says; ``rejudge`` judges its stored answers again. No weights, no
caches, no embeddings: what a figure needs to be traced, re-judged and regenerated.
"""

from __future__ import annotations

from safepref.bundle.read import Bundle
from safepref.bundle.rejudge import default_judges, rejudge_bundle
from safepref.bundle.store import FORMAT_VERSION, MANIFEST, REPORT_FILES, is_bundle, read_manifest
from safepref.bundle.write import BundleWriter, prune

__all__ = ["FORMAT_VERSION", "MANIFEST", "REPORT_FILES", "Bundle", "BundleWriter", "default_judges", "is_bundle",
           "prune", "read_manifest", "rejudge_bundle"]
