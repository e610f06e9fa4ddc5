"""The migration scripts form one line: a single head, every revision reachable from it."""

from alembic.config import Config
from alembic.script import ScriptDirectory

from storage.migrate import MIGRATIONS


def test_migrations_have_one_head_and_one_base():
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    scripts = ScriptDirectory.from_config(config)
    assert len(scripts.get_heads()) == 1
    assert len(scripts.get_bases()) == 1
    assert len(list(scripts.walk_revisions())) == len(list(MIGRATIONS.glob("versions/0*.py")))
