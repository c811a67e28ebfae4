"""Every table generated from a committed bundle equals what its bundle gives now: no figure in the docs is older
than its evidence (`make docs` regenerates them)."""

from pathlib import Path

from safepref.report.docs import MARKERS, committed_bundles, generated_tables, replace_block

ROOT = Path(__file__).resolve().parents[1]


def test_committed_tables_equal_their_bundles():
    expected = generated_tables(ROOT)
    stale = [str(path.relative_to(ROOT)) for path, text in expected.items()
             if not path.is_file() or path.read_text(encoding="utf-8") != text]
    assert not stale, f"generated from results/ but out of date (run `make docs`): {stale}"


def test_every_committed_bundle_has_its_readme_block():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    bundles = committed_bundles(ROOT)
    assert bundles, "no bundle committed under results/"
    for folder in bundles:
        assert MARKERS[0].format(name=folder.name) in readme and MARKERS[1].format(name=folder.name) in readme


def test_a_block_is_replaced_between_its_markers_only():
    other = "<!-- results:y:begin -->k<!-- results:y:end -->"
    text = f"before\n<!-- results:x:begin -->\nold\n<!-- results:x:end -->\nafter {other}"
    new = "<!-- results:x:begin -->new<!-- results:x:end -->"
    assert replace_block(text, "x", new) == f"before\n{new}\nafter {other}"
