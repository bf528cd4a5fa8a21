"""Alembic environment: the URL comes from `radmatch db upgrade` (app.database.alembic_config)."""

from alembic import context

from app.storage.database import make_engine
from app.storage.tables import Base

config = context.config


def run_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=Base.metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(url)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # SQLite's way to rebuild a table that others refer to (batch mode drops and
            # recreates it): foreign keys off while the migrations run, checked once after. The
            # pragma works only outside a transaction, hence the commit.
            connection.exec_driver_sql("PRAGMA foreign_keys = OFF")
            connection.commit()
        context.configure(
            connection=connection, target_metadata=Base.metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migrations left broken references: {broken}")
    engine.dispose()


run_migrations()
