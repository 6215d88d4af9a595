"""The case lifecycle: which status changes are allowed, and what they do.

The closed loop runs filed → dispatched → on site → handled (first
feedback) → verified → closed. A move may skip stages forward (a team
already nearby reports "on site" straight away); the one move back is
handled → on site, when verification (核查) finds the problem still there.
Any open case can end as rejected (a false alarm), merged into another case,
or self-handled (自发自处). An ended case moves only when the problem comes
back (:func:`pipeline.dedup.fold` reopens it).

Every accepted change reaches the SLA clocks: a stage counts as met at the
time of the status that reaches it.
"""

from __future__ import annotations

from core.records import Case, CaseStatus, StatusUpdate
from pipeline.sla import SlaPolicy

MAIN_LINE = (
    CaseStatus.FILED,
    CaseStatus.DISPATCHED,
    CaseStatus.ON_SITE,
    CaseStatus.HANDLED,
    CaseStatus.VERIFIED,
    CaseStatus.CLOSED,
)
ENDINGS = frozenset({CaseStatus.REJECTED, CaseStatus.MERGED, CaseStatus.SELF_HANDLED})


class TransitionError(ValueError):
    """A status update that cannot apply to the case as it is."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)


def allowed(current: CaseStatus, new: CaseStatus) -> bool:
    if current.terminal:
        return False
    if new in ENDINGS:
        return True
    if current is CaseStatus.HANDLED and new is CaseStatus.ON_SITE:
        return True  # verification failed: back to work
    return MAIN_LINE.index(new) > MAIN_LINE.index(current)


def apply_update(case: Case, update: StatusUpdate, sla: SlaPolicy) -> Case:
    """The case after ``update``; :class:`TransitionError` if it cannot apply.

    An update without a status is a note: the case keeps its status and SLA
    clocks, and records the note and who wrote it.
    """
    if update.status is None:
        if not update.note.strip():
            raise TransitionError("empty_note", f"a note for case {case.case_id} has no text")
        return case.model_copy(
            update={
                "last_note": update.note,
                "status_by": update.by,
                "version": case.version + 1,
            }
        )
    if update.status is case.status:
        raise TransitionError("same_status", f"case {case.case_id} is already {case.status}")
    if not allowed(case.status, update.status):
        raise TransitionError(
            "bad_transition", f"case {case.case_id}: {case.status} -> {update.status} not allowed"
        )
    if update.status is CaseStatus.MERGED and not update.merged_into:
        raise TransitionError("no_merge_target", f"merging case {case.case_id} needs merged_into")
    at = max(update.at, case.status_at)
    return case.model_copy(
        update={
            "status": update.status,
            "status_at": at,
            "closed_at": at if update.status.terminal else None,
            "merged_into": update.merged_into if update.status is CaseStatus.MERGED else None,
            "last_note": update.note,
            "status_by": update.by,
            "reason": update.reason if update.status is CaseStatus.REJECTED else None,
            "sla": sla.reached(case.sla, update.status, at),
            "version": case.version + 1,
        }
    )
