"""Migration 0008 (scoring models per tenant) on models stored before it, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.exc import IntegrityError

from poise_common.db.engine import MIGRATIONS, create_db_engine, session_factory
from poise_common.db.models import ScoringModel
from poise_fusion.framework import get_framework
from poise_fusion.scoring_model import CalibratedModel, CompetencyModel, ModelStore

FW = get_framework("generic")
PARAMETERS = {"policy": "default", "competencies": {"teamwork": {"intercept": 5.0, "weights": {"nlp.we_ratio": 60.0}}}}
# scoring_models as revision 0007 left it: no tenant; at most one active model per framework.
LEGACY = sa.table(
    "scoring_models", sa.column("version"), sa.column("framework"), sa.column("framework_version"),
    sa.column("parameters", sa.JSON), sa.column("report", sa.JSON), sa.column("active", sa.Boolean),
    sa.column("forced", sa.Boolean), sa.column("created_at"), sa.column("activated_at"),
)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'poise.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database(f"models_{uuid.uuid4().hex[:8]}")
    engine = create_db_engine(url)
    yield engine
    engine.dispose()


def migrate(engine: sa.Engine, step: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        getattr(command, step)(config, revision)


def legacy_model(version: str, framework: str, report: dict, active: bool, activated_at: float | None) -> dict:
    return {"version": version, "framework": framework, "framework_version": "1.0", "parameters": PARAMETERS,
            "report": {**report, "competencies": {}}, "active": active, "forced": False, "created_at": 1.0,
            "activated_at": activated_at}


def states(sessions) -> dict[str, tuple[str | None, bool]]:
    return {r.version: (r.tenant, r.active) for r in ModelStore(sessions).list(None)}


def test_models_fitted_on_one_tenant_become_its_own_and_pooled_ones_score_no_one(engine):
    migrate(engine, "upgrade", "0007")
    with engine.begin() as connection:
        connection.execute(sa.insert(LEGACY), [
            legacy_model("generic@1.0+cal.1", "generic", {"tenant": "t1"}, False, 1.0),
            legacy_model("generic@1.0+cal.2", "generic", {"tenant": "t1"}, True, 2.0),
            legacy_model("generic@1.0+cal.3", "generic", {"tenant": "all"}, False, None),
            legacy_model("sdr@1.0+cal.1", "sales-development-rep", {"tenant": "all"}, True, 3.0),
            legacy_model("sdr@1.0+cal.2", "sales-development-rep", {}, False, None),
        ])
    migrate(engine, "upgrade", "head")
    sessions = session_factory(engine)
    assert states(sessions) == {
        "generic@1.0+cal.1": ("t1", False), "generic@1.0+cal.2": ("t1", True), "generic@1.0+cal.3": (None, False),
        "sdr@1.0+cal.1": (None, False), "sdr@1.0+cal.2": (None, False),
    }
    store = ModelStore(sessions, cache_s=0)
    assert store.active("t1", FW).version == "generic@1.0+cal.2"  # t1's scores do not change
    assert store.active("t2", FW) is None  # every other tenant's go back to the norms
    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.add(ScoringModel(version="generic@1.0+cal.9", tenant="t1", framework="generic",
                                 framework_version="1.0", parameters=PARAMETERS, report={}, active=True))

    t2_model = CalibratedModel("generic@1.0+cal.4", "generic", "1.0", "default",
                               {"teamwork": CompetencyModel(5.0, {"nlp.we_ratio": 60.0})})
    store.save("t2", t2_model, {"tenant": "t2", "competencies": {}})
    store.activate("t2", "generic@1.0+cal.4")
    # Back to one active model per framework: the most recently activated one keeps it.
    migrate(engine, "downgrade", "0007")
    with engine.connect() as connection:
        active = connection.execute(sa.select(LEGACY.c.version).where(LEGACY.c.active.is_(True))).scalars().all()
    assert active == ["generic@1.0+cal.4"]
    migrate(engine, "upgrade", "head")
    assert states(sessions)["generic@1.0+cal.4"] == ("t2", True)
    assert states(sessions)["generic@1.0+cal.2"] == ("t1", False)
