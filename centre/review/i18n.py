"""The workbench's words in zh-CN (the default) and English.

One table per kind of word: interface text, case categories, statuses,
rejection reasons, SLA stages and colours. A word missing from a table is
shown as its key, so a new category still shows (by its slug) before anyone
names it here; ``tests/test_review_i18n.py`` checks both languages name the
same keys.
"""

# ruff: noqa: RUF001  (Chinese text uses full-width punctuation)
from __future__ import annotations

from collections.abc import Mapping

from core.records import CaseStatus

ZH, EN = "zh-CN", "en"

UI: Mapping[str, tuple[str, str]] = {
    "app": ("案件研判工作台", "Case review workbench"),
    "queue": ("待研判队列", "Review queue"),
    "sign_in": ("登录", "Sign in"),
    "sign_out": ("退出", "Sign out"),
    "username": ("用户名", "User name"),
    "password": ("密码", "Password"),
    "bad_login": ("用户名或密码错误", "Wrong user name or password"),
    "throttled": ("尝试次数过多，请一分钟后再试", "Too many attempts; try again in a minute"),
    "new_cases": ("条新案件，点击查看", "new cases: show them"),
    "filters": ("筛选", "Filters"),
    "apply": ("应用", "Apply"),
    "all": ("全部", "All"),
    "grid": ("网格", "Grid"),
    "category": ("类别", "Category"),
    "status": ("状态", "Status"),
    "urgency": ("紧急程度", "Urgency"),
    "source_kind": ("来源", "Source"),
    "camera": ("摄像头", "Camera"),
    "age": ("已过", "Age"),
    "place": ("地点", "Place"),
    "owner": ("责任部门", "Owning department"),
    "assisting": ("协办部门", "Assisting"),
    "claimed_by": ("研判中", "Being reviewed by"),
    "claimed_by_you": ("您正在研判（锁定至", "Claimed by you (until"),
    "claim_lost": (
        "其他人正在研判此案件，只能查看",
        "Someone else is reviewing this case: view only",
    ),
    "snapshot": ("抓拍", "Snapshot"),
    "clip": ("视频片段", "Clip"),
    "readings": ("传感器读数", "Sensor readings"),
    "rule": ("触发规则", "Rule that fired"),
    "detections": ("检测目标", "Detections"),
    "sources": ("来源", "Sources"),
    "sla": ("时限", "Time limits"),
    "history": ("处置记录", "History"),
    "due": ("截止", "due"),
    "met": ("已完成", "met"),
    "verdict": ("研判", "Verdict"),
    "confirm": ("确认派单", "Confirm (dispatch)"),
    "reject": ("误报", "Reject"),
    "merge": ("合并到", "Merge into"),
    "self_handle": ("自发自处", "Self-handled"),
    "add_note": ("添加备注", "Add note"),
    "note": ("备注", "Note"),
    "reason": ("原因", "Reason"),
    "suppress": ("同时屏蔽", "Also suppress"),
    "suppress_none": ("不屏蔽", "No suppression"),
    "suppress_mask": ("屏蔽所画区域", "Mask the drawn area"),
    "suppress_class": ("屏蔽该类目标", "Mute these classes here"),
    "suppress_hours": ("按时段屏蔽", "Mute during hours"),
    "suppress_days": ("屏蔽天数", "Days"),
    "hours": ("时段", "Hours"),
    "draw_mask": ("在抓拍上点击画出屏蔽区域", "Click on the snapshot to draw the mask"),
    "clear_mask": ("清除", "Clear"),
    "target_case": ("目标案件编号", "Target case id"),
    "sent": ("已提交，等待派单系统确认", "Sent; waiting for the dispatch worker"),
    "applied": ("已生效", "Applied"),
    "next_case": ("下一条", "Next case"),
    "no_cases": ("没有待研判的案件", "No cases to review"),
    "bulk_dismiss": ("批量误报", "Dismiss selected"),
    "suppressions": ("屏蔽规则", "Suppressions"),
    "lift": ("解除", "Lift"),
    "lifted": ("已解除", "Lifted"),
    "expires": ("到期", "Expires"),
    "created_by": ("创建人", "Created by"),
    "keys": (
        "快捷键：C 确认 R 误报 M 合并 S 自发自处 N 备注 J 下一条",
        "Keys: C confirm, R reject, M merge, S self-handled, N note, J next",
    ),
    "language": ("English", "中文"),
    "forbidden": ("无权限", "Not allowed"),
    "not_found": ("未找到", "Not found"),
    "confidence": ("置信度", "Confidence"),
    "alerts": ("告警次数", "Alerts"),
    "corroborated": ("多源印证", "Corroborated"),
    "by": ("操作人", "By"),
    "event": ("事件", "Event"),
    "time": ("时间", "Time"),
    "version": ("版本", "Version"),
}

CATEGORY: Mapping[str, tuple[str, str]] = {
    "illegal_stall": ("无序设摊", "Illegal stall"),
    "illegal_parking": ("违法停车", "Illegal parking"),
    "piled_goods": ("跨门营业/乱堆物", "Goods piled on the pavement"),
    "crowd_gathering": ("人员聚集", "Crowd gathering"),
    "disorderly_non_motor": ("非机动车乱停放", "Disorderly bikes"),
    "water_level_high": ("积水超警", "Water level high"),
    "water_level_rising": ("水位上涨", "Water level rising"),
    "smoke_alarm": ("烟感报警", "Smoke alarm"),
    "manhole_cover_open": ("井盖开启", "Manhole cover open"),
    "manhole_cover_tilted": ("井盖倾斜", "Manhole cover tilted"),
    "bin_overflow": ("垃圾满溢", "Bin overflowing"),
    "ebike_charging_overheat": ("电瓶车充电过热", "E-bike charger overheating"),
    "ebike_charging_fire": ("电瓶车充电起火", "E-bike charging fire"),
    "door_open_too_long": ("门长时间未关", "Door open too long"),
    "noise_nuisance": ("噪声扰民", "Noise nuisance"),
    "device_tamper": ("设备被破坏", "Device tampered with"),
    "device_offline": ("设备离线", "Device offline"),
    "low_battery": ("设备电量低", "Device battery low"),
    "edge_disk_low": ("边缘盒磁盘不足", "Edge box disk low"),
    "camera_offline": ("摄像机离线", "Camera offline"),
    "camera_frozen": ("摄像机画面冻结", "Camera picture frozen"),
    "camera_covered": ("摄像机遮挡/失焦", "Camera covered or out of focus"),
    "camera_moved": ("摄像机移位", "Camera moved"),
}

STATUS: Mapping[str, tuple[str, str]] = {
    CaseStatus.FILED: ("待研判", "Filed"),
    CaseStatus.DISPATCHED: ("已派单", "Dispatched"),
    CaseStatus.ON_SITE: ("已到场", "On site"),
    CaseStatus.HANDLED: ("已处置", "Handled"),
    CaseStatus.VERIFIED: ("已核查", "Verified"),
    CaseStatus.CLOSED: ("已结案", "Closed"),
    CaseStatus.REJECTED: ("误报", "Rejected"),
    CaseStatus.MERGED: ("已合并", "Merged"),
    CaseStatus.SELF_HANDLED: ("自发自处", "Self-handled"),
}

#: Why a case was rejected: the fixed words a StatusUpdate carries in ``reason``.
REASON: Mapping[str, tuple[str, str]] = {
    "wrong_object": ("目标识别错误", "Wrong object (the detector was wrong)"),
    "not_a_violation": ("不构成违规", "Not a violation"),
    "permitted": ("已审批/许可", "Permitted"),
    "duplicate": ("重复案件", "Duplicate"),
    "camera_fault": ("摄像头故障", "Camera fault"),
    "outside_area": ("不在管辖范围", "Outside our area"),
    "other": ("其他", "Other"),
}

SLA_STAGE: Mapping[str, tuple[str, str]] = {
    "dispatch": ("派单（10分钟）", "Dispatch (10 min)"),
    "on_site": ("到场（1小时）", "On site (1 h)"),
    "feedback": ("反馈（1个工作日）", "Feedback (1 working day)"),
}

SLA_LEVEL: Mapping[str, tuple[str, str]] = {
    "green": ("正常", "On time"),
    "yellow": ("预警", "Running late"),
    "red": ("超时", "Overdue"),
}

EVENT: Mapping[str, tuple[str, str]] = {
    "opened": ("立案", "Opened"),
    "updated": ("更新", "Updated"),
    "reopened": ("重新立案", "Reopened"),
    "status_changed": ("状态变更", "Status changed"),
    "noted": ("备注", "Note"),
    "sla_yellow": ("黄色预警", "Yellow warning"),
    "sla_red": ("红色预警", "Red warning"),
}

SOURCE_KIND: Mapping[str, tuple[str, str]] = {
    "camera": ("视频", "Camera"),
    "sensor": ("物联感知", "Sensor"),
    "box": ("边缘盒", "Edge box"),
}

TABLES: Mapping[str, Mapping[str, tuple[str, str]]] = {
    "ui": UI,
    "category": CATEGORY,
    "status": STATUS,
    "reason": REASON,
    "stage": SLA_STAGE,
    "level": SLA_LEVEL,
    "event": EVENT,
    "source_kind": SOURCE_KIND,
}


class Words:
    """The words of one language: ``words("ui", "queue")`` or ``words.ui("queue")``."""

    def __init__(self, language: str) -> None:
        self.language = language if language in (ZH, EN) else ZH
        self._index = 0 if self.language == ZH else 1

    def __call__(self, table: str, key: str) -> str:
        pair = TABLES[table].get(key)
        return pair[self._index] if pair else key

    def ui(self, key: str) -> str:
        return self("ui", key)
