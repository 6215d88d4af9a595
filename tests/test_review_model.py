"""The workbench's logic without a server: the queue's order and scope, claims, users,
suppressions made from a rejection, escalation, the words of both languages, and the
note and rejection reason the dispatch worker applies."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from centre.review.cards import Card, Filters, Queue
from centre.review.db import Role, UserError, WorkbenchDb
from centre.review.i18n import CATEGORY, REASON, STATUS, TABLES, Words
from centre.review.suppressions import escalates
from core.records import (
    Case,
    CaseStatus,
    GridRef,
    Place,
    Route,
    StatusUpdate,
    Suppression,
    SuppressionKind,
)
from pipeline.config import SlaConfig
from pipeline.lifecycle import TransitionError, apply_update
from pipeline.sla import SlaPolicy
from tests.support.cases import T0, at, bump, make_case


def placed(site: str, grid: str, **update: object) -> Case:
    filed = update.pop("filed_at", T0)
    assert isinstance(filed, datetime)
    case = make_case(site, opening=f"o-{site}", filed=filed)
    place = Place(place_id=site, name=site, grids=GridRef(large=grid, small=f"{grid}-1"))
    return case.model_copy(update={"place": place, **update})


def test_red_first_then_yellow_then_by_urgency_then_oldest() -> None:
    q = Queue()
    old_routine = placed("a", "g", filed_at=at(0))  # filed at 0: red by minute 10
    new_urgent = placed("b", "g", filed_at=at(9))  # yellow at 9 + 8
    newest_routine = placed("c", "g", filed_at=at(12))
    newest_urgent = placed("d", "g", filed_at=at(13))
    for c in (old_routine, new_urgent, newest_routine, newest_urgent):
        q.apply(c)
    # make b and d urgent; re-apply as newer versions
    for c in (new_urgent, newest_urgent):
        q.apply(bump(c, route=Route(owner="x", urgency=1, matched="m")))
    now = at(17.5)  # a red (due 10), b yellow (yellow 16.2), c and d green
    cards, total = q.page(None, Filters(), now, 10)
    assert [c.place_id for c in cards] == ["a", "b", "d", "c"]
    assert [c.level(now) for c in cards] == ["red", "yellow", "green", "green"]
    assert total == 4


def test_a_newer_version_replaces_a_card_an_older_one_does_not_and_an_ending_removes_it() -> None:
    q = Queue()
    case = placed("a", "g")
    assert q.apply(case)
    v2 = bump(case, alert_count=5)
    assert q.apply(v2) and q.cards[v2.case_id].alert_count == 5
    assert not q.apply(case)
    assert q.cards[v2.case_id].version == 2
    assert q.apply(bump(v2, status=CaseStatus.REJECTED))
    assert v2.case_id not in q.cards
    assert not q.apply(v2)  # a late event of the ended case does not bring it back


def test_a_user_sees_the_grids_of_their_station_and_filters_narrow_it() -> None:
    q = Queue()
    q.load([placed("a", "曹杨", category="illegal_stall"), placed("b", "长风")])
    cards, _ = q.page(["曹杨-1"], Filters(), T0, 10)
    assert [c.place_id for c in cards] == ["a"]
    assert q.page(None, Filters(category="illegal_stall"), T0, 10)[1] == 1
    assert q.page(None, Filters(camera="cam-1", source_kind="camera"), T0, 10)[1] == 2
    assert q.page(None, Filters(camera="cam-9"), T0, 10)[1] == 0
    assert q.facets(["长风"])["grid"] == ["长风", "长风-1"]


def test_claims_hold_for_their_time_and_then_anyone_may_take_the_case(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = WorkbenchDb(tmp_path / "r.db")
    assert db.claim("c1", "ann", now=100.0, ttl_s=60).username == "ann"
    assert db.claim("c1", "bob", now=130.0, ttl_s=60).username == "ann"  # held
    assert db.claim("c1", "ann", now=150.0, ttl_s=60).until == 210.0  # renewed
    assert db.claim("c1", "bob", now=211.0, ttl_s=60).username == "bob"  # expired
    assert set(db.claims(now=212.0)) == {"c1"}
    db.release("c1", "bob")
    assert db.claims(now=212.0) == {}


def test_users_have_argon2_hashes_and_patrol_users_need_grids(tmp_path) -> None:  # type: ignore[no-untyped-def]
    db = WorkbenchDb(tmp_path / "r.db")
    db.add_user("ann", "long enough", Role.PATROL, ["曹杨"])
    stored = db._conn.execute("SELECT password_hash FROM users").fetchone()[0]
    assert stored.startswith("$argon2id$") and "long enough" not in stored
    assert db.check_password("ann", "long enough") is not None
    assert db.check_password("ann", "long enougH") is None
    assert db.check_password("nobody", "long enough") is None
    with pytest.raises(UserError, match="grids"):
        db.add_user("bob", "long enough", Role.PATROL, [])
    with pytest.raises(UserError, match="exists"):
        db.add_user("ann", "long enough", Role.ADMIN)
    with pytest.raises(UserError, match="8 characters"):
        db.add_user("cat", "short", Role.ADMIN)
    with pytest.raises(UserError, match="user name"):
        db.add_user("../x", "long enough", Role.ADMIN)


def suppression(**update: object) -> Suppression:
    base = dict(
        suppression_id="s1",
        kind=SuppressionKind.MASK,
        camera_id="cam-1",
        place_id="a",
        polygon=((0.1, 0.1), (0.5, 0.1), (0.5, 0.5)),
        case_id="case-x",
        reason="wrong_object",
        created_by="ann",
        created_at=T0,
        expires_at=T0 + timedelta(days=7),
    )
    return Suppression.model_validate({**base, **update})


def test_a_suppression_is_checked_when_made() -> None:
    with pytest.raises(ValueError, match="fractions"):
        suppression(polygon=((0.1, 0.1), (1.5, 0.1), (0.5, 0.5)))
    with pytest.raises(ValueError, match="3 or more"):
        suppression(polygon=((0.1, 0.1), (0.5, 0.1)))
    with pytest.raises(ValueError, match="at least one class"):
        suppression(kind=SuppressionKind.MUTE_CLASS, polygon=())
    with pytest.raises(ValueError, match="HH:MM"):
        suppression(kind=SuppressionKind.TIME_WINDOW, hours=("6-9",))
    with pytest.raises(ValueError, match="after created_at"):
        suppression(expires_at=T0)


def test_a_suppression_lifts_when_its_place_escalates() -> None:
    s = suppression()
    case = placed("a", "g")
    assert not escalates(case, s, urgent=1)
    urgent = bump(case, route=Route(owner="x", urgency=1, matched="m"))
    assert escalates(urgent, s, urgent=1)
    sensed = bump(case, sources={"sensor:wl-1": T0})
    assert escalates(sensed, s, urgent=1)
    elsewhere = bump(urgent, place_ids=("b",))
    assert not escalates(elsewhere, s, urgent=1)
    itself = urgent.model_copy(update={"case_id": "case-x"})
    assert not escalates(itself, s, urgent=1)


def test_both_languages_name_every_status_and_reason_and_the_rules_categories() -> None:
    assert set(STATUS) == set(CaseStatus)
    for table in TABLES.values():
        for key, (chinese, english) in table.items():
            assert chinese and english, key
    zh, en = Words("zh-CN"), Words("en")
    assert zh("status", "rejected") == "误报" and en("status", "rejected") == "Rejected"
    assert zh("category", "no_such_category") == "no_such_category"
    assert {"illegal_stall", "illegal_parking", "piled_goods", "crowd_gathering"} <= set(CATEGORY)
    assert "wrong_object" in REASON and Words("fr").language == "zh-CN"


def test_a_note_keeps_the_status_and_a_rejection_keeps_its_reason_and_who() -> None:
    case = make_case()
    sla = SlaPolicy(SlaConfig())
    note = StatusUpdate(
        update_id="u1", case_id=case.case_id, status=None, at=at(1), by="ann", note="seen"
    )
    noted = apply_update(case, note, sla)
    assert (noted.status, noted.last_note, noted.status_by, noted.version) == (
        CaseStatus.FILED,
        "seen",
        "ann",
        2,
    )
    assert noted.sla == case.sla
    with pytest.raises(TransitionError, match="no text"):
        apply_update(case, note.model_copy(update={"note": " "}), sla)
    reject = StatusUpdate(
        update_id="u2",
        case_id=case.case_id,
        status=CaseStatus.REJECTED,
        at=at(2),
        by="bob",
        reason="wrong_object",
    )
    rejected = apply_update(noted, reject, sla)
    assert (rejected.status, rejected.reason, rejected.status_by) == (
        CaseStatus.REJECTED,
        "wrong_object",
        "bob",
    )


def test_card_of_a_case_takes_its_cameras_and_latest_snapshot() -> None:
    card = Card.of(placed("a", "g"))
    assert card.cameras == {"cam-1"} and card.source_kinds == {"camera"}
    assert card.stage == "dispatch" and card.thumbnail is None


def test_loading_again_drops_the_cards_of_cases_that_ended_meanwhile() -> None:
    q = Queue()
    a, b = placed("a", "g"), placed("b", "g")
    q.load([a, b])
    q.load([bump(a, alert_count=3)])  # b ended while the feed was away
    assert set(q.cards) == {a.case_id} and q.cards[a.case_id].alert_count == 3
