"""The README documents every setting the code reads."""

from bulk_ingest.settings import REPO_ROOT, settings_documentation


def test_every_setting_is_in_the_readme():
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [name for name, _ in settings_documentation() if f"`{name}`" not in readme]
    assert missing == []
