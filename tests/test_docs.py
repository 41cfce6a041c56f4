"""Documentation that is generated or executed stays true."""

from pathlib import Path

from torchwm import configdoc

ROOT = Path(__file__).resolve().parent.parent


def test_config_reference_is_up_to_date():
    expected = configdoc.markdown()
    actual = (ROOT / "docs" / "config.md").read_text()
    assert actual == expected, "docs/config.md is stale: run `python -m torchwm.configdoc > docs/config.md`"


def test_config_reference_lists_every_field():
    text = configdoc.markdown()
    for name in ["dataset", "image_size", "env.id", "data.policy", "planning.samples", "logging.run_dir"]:
        assert f"`{name}`" in text


def _python_blocks(markdown: str) -> list[str]:
    blocks, inside, lines = [], False, []
    for line in markdown.splitlines():
        if line.startswith("```python"):
            inside, lines = True, []
        elif line.startswith("```") and inside:
            inside = False
            blocks.append("\n".join(lines))
        elif inside:
            lines.append(line)
    return blocks


def test_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's Python example runs as written, from a directory outside the repository."""
    blocks = [b for b in _python_blocks((ROOT / "README.md").read_text()) if "store = collect(" in b]
    assert blocks, "README.md has no python example of the data path"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    store, windows = namespace["store"], namespace["windows"]
    assert len(store) == 10 and store.num_frames == 10 * 51
    assert tuple(windows[0].frames.shape) == (5, 3, 64, 64)
    assert namespace["cfg"].data.episodes == 50
