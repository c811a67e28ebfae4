"""Every table generated from a committed bundle equals what its bundle gives now: no figure in the docs is older
than its evidence (`make docs` regenerates them)."""

from pathlib import Path

from safepref.report.docs import BLOCKS, MARKERS, committed_bundles, generated_tables, replace_block

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
        for kind in BLOCKS:
            block = f"{folder.name}-{kind}"
            assert MARKERS[0].format(name=block) in readme and MARKERS[1].format(name=block) in readme, block


def test_a_block_is_replaced_between_its_markers_only():
    other = "<!-- generated:y:begin -->k<!-- generated:y:end -->"
    text = f"before\n<!-- generated:x:begin -->\nold\n<!-- generated:x:end -->\nafter {other}"
    new = "<!-- generated:x:begin -->new<!-- generated:x:end -->"
    assert replace_block(text, "x", new) == f"before\n{new}\nafter {other}"
